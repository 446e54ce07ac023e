package agent

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpagent/gpagent/consensus"
)

// TestSimCorruptRaftDirFences: an agent whose Raft state cannot be read
// cannot run; it must not leave its postmasters running unsupervised and
// writable. It fences the primaries its last instances.json lists and
// fails with one line that says what happened and what to do.
func TestSimCorruptRaftDirFences(t *testing.T) {
	c := newSimCluster(t, 3, "")
	c.initCluster(1)
	host, p, _ := c.primaryOffLeader()
	path := filepath.Join(host.dir, instancesFile)
	c.waitUntil("instances.json lists the primary", func() (bool, string) {
		b, err := os.ReadFile(path)
		if err != nil {
			return false, err.Error()
		}
		var rec instancesRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			return false, err.Error()
		}
		for _, s := range rec.Instances {
			if s.DBID == p.DBID && s.Role == p.Role {
				return true, ""
			}
		}
		return false, string(b)
	})
	c.stop(host)
	if st := c.world.State(p.Address, p.Port); !st.Running || st.ReadOnly {
		t.Fatalf("the primary before the restart: %+v", st)
	}
	if err := os.WriteFile(filepath.Join(host.dir, "raft", "raft.db"), []byte(strings.Repeat("not a bolt database\n", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig([]byte(host.cfgDoc))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Token == "" && !cfg.Insecure {
		cfg.Token = c.token
	}
	if len(cfg.GossipKeys) == 0 && !cfg.Insecure {
		cfg.GossipKeys = [][]byte{c.gossipKey}
	}
	a, err := NewWith(cfg, Deps{Logger: c.log, Driver: c.world.Host(host.name), Clock: host.clock, Network: c.net.Host(host.ip)})
	if err == nil {
		a.node.Close()
		t.Fatal("the agent started on a corrupt raft.db")
	}
	if !errors.Is(err, consensus.ErrStateUnreadable) || !strings.Contains(err.Error(), "raft.db") || !strings.Contains(err.Error(), "fenced") || strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q: want one line naming raft.db and saying the primaries were fenced", err)
	}
	t.Logf("the agent said: %v", err)
	st := c.world.State(p.Address, p.Port)
	if st.Running && !st.ReadOnly {
		t.Fatalf("the primary %s runs on writable after its agent failed on a corrupt raft dir: %+v", p, st)
	}
}
