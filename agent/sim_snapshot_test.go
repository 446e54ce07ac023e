package agent

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// raft_snapshot_threshold reaches Raft: with a threshold below what an
// init of three hosts commits, every server writes a snapshot on its own
// (raft_snapshot_interval apart), under data_dir/raft/snapshots.
func TestSimRaftSnapshotThreshold(t *testing.T) {
	c := newSimCluster(t, 3, "raft_snapshot_threshold: 8\nraft_snapshot_interval: 100ms\n")
	c.initCluster(1)
	c.waitUntil("a Raft snapshot on every server", func() (bool, string) {
		var missing []string
		for _, h := range c.hosts {
			states, _ := filepath.Glob(filepath.Join(h.dir, "raft", "snapshots", "*", "state.bin"))
			if len(states) == 0 {
				missing = append(missing, h.name)
			}
		}
		return len(missing) == 0, fmt.Sprintf("no state.bin on %s", strings.Join(missing, ", "))
	})
}
