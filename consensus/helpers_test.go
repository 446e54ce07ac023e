package consensus

import (
	"bytes"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/gpagent/gpagent/topology"
)

// goldenTime is the time stamped into the test commands.
var goldenTime = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)

func testSegment(dbid, content int, role topology.Role, host string, port int, dir string) topology.Segment {
	return topology.Segment{
		DBID: dbid, Content: content, Role: role, PreferredRole: role,
		Mode: topology.ModeNotSynced, Status: topology.StatusDown,
		Port: port, Hostname: host, Address: host, DataDir: dir,
	}
}

// initCommand initializes a coordinator and two contents with mirrors.
func initCommand() topology.Command {
	return topology.Command{
		Type: topology.CmdInit, BaseVersion: 0, Time: goldenTime,
		ClusterID: "c-test", SegPrefix: "gpseg",
		Mirrors: topology.MirrorDefaults{PortBase: 7000, DataDirs: []string{"/data/mirror"}, Placement: "group"},
		Segments: []topology.Segment{
			testSegment(1, -1, topology.RolePrimary, "cdw", 5432, "/data/coordinator/gpseg-1"),
			testSegment(2, 0, topology.RolePrimary, "sdw1", 6000, "/data/primary/gpseg0"),
			testSegment(3, 1, topology.RolePrimary, "sdw2", 6000, "/data/primary/gpseg1"),
			testSegment(4, 0, topology.RoleMirror, "sdw2", 7000, "/data/mirror/gpseg0"),
			testSegment(5, 1, topology.RoleMirror, "sdw1", 7000, "/data/mirror/gpseg1"),
		},
	}
}

// allUpCommand records every instance of initCommand up, pairs in sync.
func allUpCommand(base uint64) topology.Command {
	up := func(dbid int) topology.SegmentUpdate {
		return topology.SegmentUpdate{DBID: dbid, Status: topology.StatusUp, Mode: topology.ModeSynced, Desc: "created and in sync"}
	}
	return topology.Command{
		Type: topology.CmdUpdateSegments, BaseVersion: base, Time: goldenTime.Add(time.Minute),
		Updates: []topology.SegmentUpdate{up(1), up(2), up(3), up(4), up(5)},
	}
}

// failoverCommand promotes dbid 4 after dbid 2 was lost.
func failoverCommand(base uint64) topology.Command {
	return topology.Command{
		Type: topology.CmdUpdateSegments, BaseVersion: base, Time: goldenTime.Add(2 * time.Minute),
		Updates: []topology.SegmentUpdate{
			{DBID: 2, Role: topology.RoleMirror, Status: topology.StatusDown, Mode: topology.ModeNotSynced, Desc: "primary lost"},
			{DBID: 4, Role: topology.RolePrimary, Mode: topology.ModeNotSynced, Desc: "mirror promoted"},
		},
	}
}

func pausedCommand(base uint64, paused bool) topology.Command {
	return topology.Command{Type: topology.CmdSetPaused, BaseVersion: base, Time: goldenTime.Add(3 * time.Minute), Paused: paused}
}

func addMirrorsCommand(base uint64) topology.Command {
	return topology.Command{
		Type: topology.CmdAddMirrors, BaseVersion: base, Time: goldenTime,
		Segments: []topology.Segment{testSegment(6, 2, topology.RoleMirror, "sdw3", 7000, "/data/mirror/gpseg2")},
	}
}

// lockedBuffer collects log output from raft's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testLogger returns a logger whose output is shown only if the test
// fails, or when CONSENSUS_TEST_LOGS is set (raft logs from its own
// goroutines, which must not call t.Log after the test ends).
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	buf := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("CONSENSUS_TEST_LOGS") != "" {
			t.Logf("log output:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// waitFor polls cond until it holds or the deadline passes, then fails
// with the last thing cond saw.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, seen := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v; last seen: %s", what, timeout, seen)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
