package consensus

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// The snapshot defaults the agent's config shows are raft's own.
func TestSnapshotDefaults_AreRafts(t *testing.T) {
	rc := raft.DefaultConfig()
	if rc.SnapshotThreshold != DefaultSnapshotThreshold || rc.SnapshotInterval != DefaultSnapshotInterval {
		t.Fatalf("raft's defaults are %d entries and %s, ours %d and %s", rc.SnapshotThreshold, rc.SnapshotInterval, DefaultSnapshotThreshold, DefaultSnapshotInterval)
	}
	if rc := (Config{}).raftConfig(); rc.SnapshotThreshold != DefaultSnapshotThreshold || rc.SnapshotInterval != DefaultSnapshotInterval {
		t.Fatalf("zero Config gives %d entries and %s", rc.SnapshotThreshold, rc.SnapshotInterval)
	}
}

// A node with a low SnapshotThreshold snapshots on its own, without
// Node.Snapshot, once that many entries are in its log: state.bin appears
// under DataDir/raft/snapshots (where gpbench scale looks for it).
func TestNode_SnapshotsAfterThreshold(t *testing.T) {
	const threshold = 8
	dir := t.TempDir()
	n := openNode(t, "a1", dir, true, func(c *Config) {
		c.SnapshotThreshold = threshold
		c.SnapshotInterval = 50 * time.Millisecond
	})
	waitLeading(t, n)
	ctx := ctxTimeout(t)
	if _, err := n.Apply(ctx, initCommand()); err != nil {
		t.Fatal(err)
	}
	// Each Apply is two entries (the command and its barrier).
	for v := uint64(1); v <= threshold; v++ {
		if _, err := n.Apply(ctx, pausedCommand(v, v%2 == 1)); err != nil {
			t.Fatal(err)
		}
	}
	last, _ := strconv.ParseUint(n.Stats()["last_log_index"], 10, 64)
	if last < threshold {
		t.Fatalf("only %d log entries after %d commands", last, threshold+1)
	}
	// raft checks every interval plus up to one interval of jitter.
	waitFor(t, waitTimeout, "a snapshot taken on its own", func() (bool, string) {
		idx, _ := strconv.ParseUint(n.Stats()["last_snapshot_index"], 10, 64)
		return idx > 0, fmt.Sprintf("last_snapshot_index %d", idx)
	})
	states, err := filepath.Glob(filepath.Join(dir, "raft", "snapshots", "*", "state.bin"))
	if err != nil || len(states) == 0 {
		t.Fatalf("no state.bin under %s/raft/snapshots: %v", dir, err)
	}
	if fi, err := os.Stat(states[0]); err != nil || fi.Size() == 0 {
		t.Fatalf("state.bin %s: %v", states[0], err)
	}
}
