package consensus

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/gpagent/gpagent/topology"
)

// cluster is a set of in-process nodes on loopback, talking over raft's
// TCP transport. Under load leadership may move at any time, so the
// helpers find the leader each time and retry where a real client would:
// on ErrNotLeader.
type cluster map[string]*Node

func (c cluster) describe() string {
	s := ""
	for _, id := range slices.Sorted(maps.Keys(c)) {
		n := c[id]
		l, _ := n.Leader()
		s += fmt.Sprintf("%s: leader=%v knows %q, version %d; ", id, n.IsLeader(), l, n.Topology().ConfigVersion)
	}
	return s
}

// leader waits until one node leads and returns it.
func (c cluster) leader(t *testing.T) *Node {
	t.Helper()
	var leader *Node
	waitFor(t, waitTimeout, "a leader", func() (bool, string) {
		leader = nil
		for _, n := range c {
			if n.IsLeader() {
				leader = n
			}
		}
		return leader != nil, c.describe()
	})
	return leader
}

// onLeader runs op on the current leader, and on the next one when the
// leadership moves under it, until op succeeds or the deadline passes.
func (c cluster) onLeader(t *testing.T, what string, op func(ctx context.Context, n *Node) error) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		n := c.leader(t)
		ctx, cancel := context.WithDeadline(t.Context(), deadline)
		err := op(ctx, n)
		cancel()
		if err == nil {
			return
		}
		if !errors.Is(err, ErrNotLeader) || time.Now().After(deadline) {
			t.Fatalf("%s: %v (%s)", what, err, c.describe())
		}
	}
}

// applyVersion brings the cluster to config version want with the
// command mk computes from version want-1, the way the leader loop does:
// Barrier, read the committed version, decide, apply. An earlier attempt
// that committed despite ErrNotLeader is found by the next Barrier.
func (c cluster) applyVersion(t *testing.T, want uint64, mk func(base uint64) topology.Command) {
	t.Helper()
	c.onLeader(t, fmt.Sprintf("apply version %d", want), func(ctx context.Context, n *Node) error {
		if err := n.Barrier(ctx); err != nil {
			return err
		}
		v := n.Topology().ConfigVersion
		if v >= want {
			return nil
		}
		if v != want-1 {
			return fmt.Errorf("leader at version %d, want %d", v, want-1)
		}
		got, err := n.Apply(ctx, mk(v))
		if err == nil && got.ConfigVersion != want {
			return fmt.Errorf("applied version %d, want %d", got.ConfigVersion, want)
		}
		return err
	})
}

func (c cluster) waitVersion(t *testing.T, want uint64) {
	t.Helper()
	waitFor(t, waitTimeout, fmt.Sprintf("every node at version %d", want), func() (bool, string) {
		for _, n := range c {
			if n.Topology().ConfigVersion != want {
				return false, c.describe()
			}
		}
		return true, ""
	})
}

func TestNode_ThreeNodeCluster(t *testing.T) {
	// n1 keeps a single log entry after a snapshot, so the others are
	// brought up to date by InstallSnapshot, which exercises Persist and
	// Restore over the transport.
	c := cluster{
		"n1": openNode(t, "n1", t.TempDir(), true, func(c *Config) { c.TrailingLogs = 1 }),
		"n2": openNode(t, "n2", t.TempDir(), false, nil),
		"n3": openNode(t, "n3", t.TempDir(), false, nil),
	}
	n1 := c["n1"]
	waitLeading(t, n1)
	if _, err := n1.Apply(ctxTimeout(t), initCommand()); err != nil {
		t.Fatal(err)
	}
	if err := n1.Snapshot(); err != nil {
		t.Fatal(err)
	}

	// Each step builds on the one before: stop at the first that fails.
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	step("voters join and receive the snapshot", func(t *testing.T) {
		// One at a time, each caught up before the next: a voter counts
		// towards the quorum from the moment it is added.
		for _, id := range []string{"n2", "n3"} {
			c.onLeader(t, "add voter "+id, func(ctx context.Context, n *Node) error {
				return n.AddVoter(ctx, c[id].ID(), c[id].Addr())
			})
			waitFor(t, waitTimeout, id+" restored the snapshot", func() (bool, string) {
				return c[id].Topology().ConfigVersion == 1, c.describe()
			})
		}
		c.onLeader(t, "list servers", func(ctx context.Context, n *Node) error {
			servers, err := n.Servers()
			if err != nil {
				return err
			}
			leaders := 0
			for _, s := range servers {
				if m, ok := c[s.Name]; !ok || s.ID != m.ID() || !s.Voter || s.Address != m.Addr() {
					return fmt.Errorf("server %+v", s)
				}
				if s.Leader {
					leaders++
				}
			}
			if len(servers) != 3 || leaders > 1 {
				return fmt.Errorf("servers %+v", servers)
			}
			return nil
		})
	})

	step("a command replicates", func(t *testing.T) {
		c.applyVersion(t, 2, allUpCommand)
		c.waitVersion(t, 2)
		for id, n := range c {
			if !reflect.DeepEqual(n.Topology(), n1.Topology()) {
				t.Fatalf("%s holds a different topology than n1", id)
			}
		}
	})

	step("a follower refuses leader-only calls", func(t *testing.T) {
		// A stale command, so that nothing changes should the follower
		// have become leader meanwhile.
		waitFor(t, waitTimeout, "a follower answers ErrNotLeader", func() (bool, string) {
			for id, n := range c {
				if n.IsLeader() {
					continue
				}
				ctx := ctxTimeout(t)
				_, applyErr := n.Apply(ctx, allUpCommand(0))
				verifyErr := n.VerifyLeader()
				removeErr := n.RemoveServer(ctx, "ghost")
				if errors.Is(applyErr, ErrNotLeader) && errors.Is(verifyErr, ErrNotLeader) && errors.Is(removeErr, ErrNotLeader) {
					return true, ""
				}
				return false, fmt.Sprintf("%s: apply %v; verify %v; remove %v", id, applyErr, verifyErr, removeErr)
			}
			return false, "no follower: " + c.describe()
		})
		c.waitVersion(t, 2)
	})

	step("leader loss elects a new leader that applies", func(t *testing.T) {
		old := c.leader(t)
		oldID := ""
		for id, n := range c {
			if n == old {
				oldID = id
			}
		}
		oldRaftID := old.ID()
		if err := old.Close(); err != nil {
			t.Fatal(err)
		}
		delete(c, oldID)
		c.applyVersion(t, 3, func(base uint64) topology.Command { return pausedCommand(base, true) })
		c.waitVersion(t, 3)
		leader := c.leader(t)
		if got := leader.Topology(); !got.Paused {
			t.Fatalf("new leader's topology not paused: %+v", got)
		}
		// The transitions it was sent end in its current state.
		var changes []bool
		waitFor(t, waitTimeout, "the new leader hears it leads", func() (bool, string) {
			changes = append(changes, drainLeaderChanges(leader)...)
			ok := len(changes) > 0 && changes[len(changes)-1] == leader.IsLeader()
			return ok, fmt.Sprintf("changes %v, leads %v", changes, leader.IsLeader())
		})

		t.Run("membership changes", func(t *testing.T) {
			c.onLeader(t, "remove "+oldID, func(ctx context.Context, n *Node) error {
				return n.RemoveServer(ctx, oldRaftID)
			})
			n4 := openNode(t, "n4", t.TempDir(), false, nil)
			c.onLeader(t, "add nonvoter n4", func(ctx context.Context, n *Node) error {
				return n.AddNonvoter(ctx, n4.ID(), n4.Addr())
			})
			waitVersion(t, n4, "n4", 3)
			c.onLeader(t, "list servers", func(ctx context.Context, n *Node) error {
				servers, err := n.Servers()
				if err != nil {
					return err
				}
				voters := map[string]bool{}
				for _, s := range servers {
					voters[s.Name] = s.Voter
				}
				for id := range c {
					if !voters[id] {
						return fmt.Errorf("%s is not a voter: %+v", id, servers)
					}
				}
				if len(voters) != 3 || voters["n4"] {
					return fmt.Errorf("servers %+v", servers)
				}
				return nil
			})
		})
	})
}

// drainLeaderChanges returns the transitions waiting on n.LeaderChanges.
func drainLeaderChanges(n *Node) []bool {
	var out []bool
	for {
		select {
		case v := <-n.LeaderChanges():
			out = append(out, v)
		default:
			return out
		}
	}
}
