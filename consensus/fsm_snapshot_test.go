package consensus

import (
	"bytes"
	"io"
	"os"
	"reflect"
	"testing"

	"github.com/gpagent/gpagent/topology"
)

// TestSnapshot_GoldenV1 restores a format 1 snapshot written by the first
// version of this package. The file is never regenerated: if this test
// fails, an old snapshot no longer restores, and agents upgraded over one
// would lose the topology. Add a new format instead of changing this one.
func TestSnapshot_GoldenV1(t *testing.T) {
	data, err := os.ReadFile("testdata/snapshot-v1.golden")
	if err != nil {
		t.Fatal(err)
	}
	f := newFSM()
	if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatalf("restore golden snapshot: %v", err)
	}
	got := f.current()

	t.Run("fields", func(t *testing.T) {
		if got.ClusterID != "c-test" || got.SegPrefix != "gpseg" || got.ConfigVersion != 4 || !got.Paused {
			t.Fatalf("cluster fields: %+v", got)
		}
		if len(got.Segments) != 5 || len(got.History) != 13 {
			t.Fatalf("%d segments and %d history rows, want 5 and 13", len(got.Segments), len(got.History))
		}
		want := topology.Segment{DBID: 4, Content: 0, Role: topology.RolePrimary, PreferredRole: topology.RoleMirror,
			Mode: topology.ModeNotSynced, Status: topology.StatusUp, Port: 7000, Hostname: "sdw2", Address: "sdw2", DataDir: "/data/mirror/gpseg0"}
		if p, _ := got.Primary(0); p != want {
			t.Fatalf("content 0 primary %+v, want %+v", p, want)
		}
		if h := got.History[10]; h.DBID != 2 || h.Desc != "primary lost" || !h.Time.Equal(goldenTime.Add(2*60e9)) {
			t.Fatalf("history row 10: %+v", h)
		}
		if m := got.Mirrors; m.PortBase != 7000 || m.Placement != "group" || !reflect.DeepEqual(m.DataDirs, []string{"/data/mirror"}) {
			t.Fatalf("mirror defaults: %+v", m)
		}
		if err := topology.Validate(got); err != nil {
			t.Fatalf("restored topology is invalid: %v", err)
		}
	})

	t.Run("same value as the commands produce", func(t *testing.T) {
		want := &topology.Topology{}
		for _, cmd := range []topology.Command{initCommand(), allUpCommand(1), failoverCommand(2), pausedCommand(3, true)} {
			if want, err = topology.Apply(want, cmd); err != nil {
				t.Fatal(err)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("golden restores to\n%+v\nthe commands give\n%+v", got, want)
		}
	})

	t.Run("applies continue from the restored version", func(t *testing.T) {
		if next := mustApply(t, f, 100, pausedCommand(4, false)); next.ConfigVersion != 5 || next.Paused {
			t.Fatalf("after resume: version %d paused %v", next.ConfigVersion, next.Paused)
		}
	})
}
