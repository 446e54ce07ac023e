package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpagent/gpagent/topology"
)

// TestSimWipedAgentRejoinsFresh: an agent whose data dir was wiped comes
// back with a new Raft server id; the leader replaces the member it was
// by the new one (never letting it vote in the old one's place with an
// empty log), the cluster keeps its committed topology, and what users
// see names agents, never server ids.
func TestSimWipedAgentRejoinsFresh(t *testing.T) {
	// The wiped agent must be back, a Raft member again and renewing,
	// within its lease, or its watchdog rightly kills its primary and
	// the pair waits for a recovery this test does not run: under a
	// loaded suite the sim's 1.5 s lease was too short for that (as for
	// TestSimRestartEveryAgent).
	c := newSimCluster(t, 3, "lease: 15s\n")
	c.initCluster(1)
	lead := c.waitLeader()
	var h *simHost
	for _, x := range c.hosts[1:] { // hosts[0] bootstraps: it would start a new cluster
		if x != lead {
			h = x
			break
		}
	}
	oldID := c.agent(h).node.ID()
	if !strings.HasPrefix(oldID, h.name+"#") {
		t.Fatalf("server id of %s is %q, want %s#<random>", h.name, oldID, h.name)
	}
	if b, err := os.ReadFile(filepath.Join(h.dir, "raft", "server-id")); err != nil || strings.TrimSpace(string(b)) != oldID {
		t.Fatalf("raft/server-id of %s: %q, %v; want %q", h.name, b, err, oldID)
	}
	v := c.state().ConfigVersion

	c.stop(h)
	if err := os.RemoveAll(h.dir); err != nil {
		t.Fatal(err)
	}
	c.start(h)
	newID := c.agent(h).node.ID()
	if newID == oldID {
		t.Fatalf("the wiped agent %s came back with its old server id %s", h.name, oldID)
	}
	c.waitUntil("the leader replaced the old member by the new one", func() (bool, string) {
		l := c.waitLeader()
		servers, err := c.agent(l).node.Servers()
		if err != nil {
			return false, err.Error()
		}
		var ids []string
		hasNew, hasOld := false, false
		for _, s := range servers {
			ids = append(ids, fmt.Sprintf("%s(voter=%v)", s.ID, s.Voter))
			hasNew = hasNew || s.ID == newID
			hasOld = hasOld || s.ID == oldID
		}
		return hasNew && !hasOld && len(servers) == 3, strings.Join(ids, " ")
	})
	c.waitUntil("the wiped agent applied the committed topology", func() (bool, string) {
		got := c.agent(h).node.Topology().ConfigVersion
		return got >= v, fmt.Sprint(got)
	})
	c.waitUntil("every agent a Raft member, named without its id suffix", func() (bool, string) {
		m, err := c.client().Members(context.Background())
		if err != nil {
			return false, err.Error()
		}
		if strings.Contains(m.Leader, "#") || m.Leader == "" {
			return false, "leader " + m.Leader
		}
		var roles []string
		for _, x := range m.Members {
			if x.RaftRole == "none" || x.RaftRole == "" || strings.Contains(x.Name, "#") {
				return false, x.Name + "=" + x.RaftRole
			}
			roles = append(roles, x.Name+"="+x.RaftRole)
		}
		return len(m.Members) == 3, strings.Join(roles, " ")
	})
	// The wiped agent's record of its lease went with its data dir, and
	// a missing record grants no lease: its fence watchdog may kill its
	// primary before the new agent renews one (rightly: the watchdog
	// cannot know the host was not cut off meanwhile). Then the pair
	// fails over and the old primary waits for a recovery, which an
	// operator runs (CI, under load, hit that window once).
	down := 0
	c.waitUntil("every pair in sync, or the wiped host's killed primary failed over", func() (bool, string) {
		s, err := c.client().State(context.Background())
		if err != nil {
			return false, err.Error()
		}
		down = 0
		synced := true
		for _, seg := range s.Segments {
			if seg.Content < 0 {
				continue
			}
			switch {
			case seg.Status == topology.StatusUp:
				synced = synced && seg.Mode == topology.ModeSynced
			case seg.Hostname == h.name && seg.Role == topology.RoleMirror:
				down++ // the killed primary, demoted: recoverable
			default:
				return false, seg.String() // not failed over yet
			}
		}
		if down == 0 && !synced {
			return false, "catching up"
		}
		return true, fmt.Sprintf("%d down", down)
	})
	if down > 0 {
		t.Logf("the wiped host's watchdog killed %d primary (no lease record): recovering it", down)
		c.recoverAll(false)
		return
	}
	c.waitInSync("after the wiped agent rejoined")
}
