package consensus

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/gpagent/gpagent/topology"
)

const waitTimeout = 10 * time.Second

func openNode(t *testing.T, id, dir string, bootstrap bool, tune func(*Config)) *Node {
	t.Helper()
	cfg := Config{NodeID: id, DataDir: dir, BindAddr: "127.0.0.1:0", Bootstrap: bootstrap, Logger: testLogger(t)}
	if tune != nil {
		tune(&cfg)
	}
	n, err := Open(cfg)
	if err != nil {
		t.Fatalf("open %s: %v", id, err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

func waitLeading(t *testing.T, n *Node) {
	t.Helper()
	if err := n.WaitLeader(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitTimeout, "node leads", func() (bool, string) {
		id, addr := n.Leader()
		return n.IsLeader(), fmt.Sprintf("leader %q at %q", id, addr)
	})
}

func waitVersion(t *testing.T, n *Node, name string, v uint64) {
	t.Helper()
	waitFor(t, waitTimeout, name+" reaches config version "+fmt.Sprint(v), func() (bool, string) {
		got := n.Topology().ConfigVersion
		return got == v, fmt.Sprintf("version %d", got)
	})
}

func nextLeaderChange(t *testing.T, n *Node) bool {
	t.Helper()
	select {
	case v := <-n.LeaderChanges():
		return v
	case <-time.After(waitTimeout):
		t.Fatal("no leadership change delivered")
		return false
	}
}

func TestNode_SingleNodeRestart(t *testing.T) {
	dir := t.TempDir()
	n := openNode(t, "a1", dir, true, nil)
	if got := n.Topology(); got == nil || got.Initialized() {
		t.Fatalf("topology before init: %+v", got)
	}
	waitLeading(t, n)
	if !nextLeaderChange(t, n) {
		t.Fatal("first leadership change is false, want true")
	}
	if id, addr := n.Leader(); id != "a1" || addr != n.Addr() {
		t.Fatalf("leader %q at %q, want a1 at %q", id, addr, n.Addr())
	}
	ctx := ctxTimeout(t)

	t.Run("apply stamps the time and returns the new topology", func(t *testing.T) {
		cmd := initCommand()
		cmd.Time = time.Time{}
		before := time.Now().UTC()
		got, err := n.Apply(ctx, cmd)
		if err != nil {
			t.Fatal(err)
		}
		if got.ConfigVersion != 1 || got != n.Topology() {
			t.Fatalf("apply returned version %d (stored: %v)", got.ConfigVersion, got == n.Topology())
		}
		if at := got.History[0].Time; at.Before(before.Add(-time.Second)) || at.Location() != time.UTC {
			t.Fatalf("history time %v not stamped by the leader", at)
		}
		select {
		case <-n.Changes():
		default:
			t.Fatal("Changes not signalled")
		}
	})

	t.Run("stale command is rejected and changes nothing", func(t *testing.T) {
		before := n.Topology()
		_, err := n.Apply(ctx, allUpCommand(0))
		if !errors.Is(err, topology.ErrStale) {
			t.Fatalf("error %v, want ErrStale", err)
		}
		if n.Topology() != before {
			t.Fatal("a stale command changed the topology")
		}
	})

	t.Run("invalid command is rejected", func(t *testing.T) {
		bad := topology.Command{Type: topology.CmdUpdateSegments, BaseVersion: 1, Updates: []topology.SegmentUpdate{{DBID: 42, Status: topology.StatusUp}}}
		if _, err := n.Apply(ctx, bad); !errors.Is(err, topology.ErrInvalid) {
			t.Fatalf("error %v, want ErrInvalid", err)
		}
	})

	// A snapshot, then one more entry: the reopened node needs both the
	// snapshot and the log after it.
	if _, err := n.Apply(ctx, allUpCommand(1)); err != nil {
		t.Fatal(err)
	}
	if err := n.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Apply(ctx, pausedCommand(2, true)); err != nil {
		t.Fatal(err)
	}
	want, addr := n.Topology(), n.Addr()
	if err := n.VerifyLeader(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if nextLeaderChange(t, n) {
		t.Fatal("closing the leader did not deliver leadership false")
	}
	if _, err := n.Apply(ctx, pausedCommand(3, false)); !errors.Is(err, raft.ErrRaftShutdown) {
		t.Fatalf("apply after close: %v, want raft.ErrRaftShutdown", err)
	}

	t.Run("reopen keeps the topology and leads again", func(t *testing.T) {
		// Same address: the raft configuration in the log names it.
		r := openNode(t, "a1", dir, true, func(c *Config) { c.BindAddr = addr })
		waitLeading(t, r)
		if err := r.Barrier(ctxTimeout(t)); err != nil {
			t.Fatal(err)
		}
		if got := r.Topology(); !reflect.DeepEqual(got, want) {
			t.Fatalf("after reopen\n%+v\nwant\n%+v", got, want)
		}
		if id, a := r.Leader(); id != "a1" || a != addr {
			t.Fatalf("leader %q at %q, want a1 at %q", id, a, addr)
		}
		if s := r.Stats(); s["config_version"] != "3" || s["state"] != "Leader" {
			t.Fatalf("stats: config_version %q state %q", s["config_version"], s["state"])
		}
		got, err := r.Apply(ctxTimeout(t), pausedCommand(3, false))
		if err != nil || got.ConfigVersion != 4 {
			t.Fatalf("apply after reopen: %v", err)
		}
	})
}

func TestOpen_RejectsBadConfig(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
	}{
		{"no node id", Config{DataDir: t.TempDir(), BindAddr: "127.0.0.1:0"}},
		{"no data dir", Config{NodeID: "a", BindAddr: "127.0.0.1:0"}},
		{"no bind address", Config{NodeID: "a", DataDir: t.TempDir()}},
		{"unadvertisable bind", Config{NodeID: "a", DataDir: t.TempDir(), BindAddr: "0.0.0.0:0"}},
		{"lease longer than heartbeat", Config{NodeID: "a", DataDir: t.TempDir(), BindAddr: "127.0.0.1:0",
			HeartbeatTimeout: 100 * time.Millisecond, LeaderLeaseTimeout: time.Second}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if n, err := Open(tc.cfg); err == nil {
				n.Close()
				t.Fatal("Open succeeded")
			}
		})
	}
}

func TestOpen_AdvertiseAddress(t *testing.T) {
	n := openNode(t, "a", t.TempDir(), false, func(c *Config) { c.Advertise = "127.0.0.1:7999" })
	if n.Addr() != "127.0.0.1:7999" {
		t.Fatalf("addr %q, want the advertised one", n.Addr())
	}
}

func TestOpen_DataDirInUse(t *testing.T) {
	dir := t.TempDir()
	n := openNode(t, "a", dir, false, nil)
	second, err := Open(Config{NodeID: "a", DataDir: dir, BindAddr: "127.0.0.1:0"})
	if !errors.Is(err, ErrDataDirInUse) {
		if second != nil {
			second.Close()
		}
		t.Fatalf("second open of one data dir: %v, want ErrDataDirInUse", err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	again := openNode(t, "a", dir, false, nil)
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}
}

// The leader heartbeats at LeaderHeartbeatTimeout (twice HeartbeatTimeout
// by default); a node that does not lead times out after HeartbeatTimeout.
func TestRoleTiming(t *testing.T) {
	n := openNode(t, "a", t.TempDir(), true, nil)
	waitLeading(t, n)
	waitFor(t, waitTimeout, "leader heartbeat timeout", func() (bool, string) {
		rc := n.raft.ReloadableConfig()
		return rc.HeartbeatTimeout == 2*DefaultHeartbeatTimeout && rc.ElectionTimeout == 2*DefaultHeartbeatTimeout,
			fmt.Sprintf("heartbeat %s, election %s", rc.HeartbeatTimeout, rc.ElectionTimeout)
	})
	n.setRoleTiming(false)
	if rc := n.raft.ReloadableConfig(); rc.HeartbeatTimeout != DefaultHeartbeatTimeout || rc.ElectionTimeout != DefaultElectionTimeout {
		t.Fatalf("after stepping down: heartbeat %s, election %s", rc.HeartbeatTimeout, rc.ElectionTimeout)
	}
	c := Config{HeartbeatTimeout: time.Second, LeaderHeartbeatTimeout: 500 * time.Millisecond}
	if rc := c.reloadable(raft.ReloadableConfig{}, true); rc.HeartbeatTimeout != time.Second {
		t.Fatalf("a LeaderHeartbeatTimeout below HeartbeatTimeout was used: %s", rc.HeartbeatTimeout)
	}
}
