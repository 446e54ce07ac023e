package topology

import (
	"fmt"
	"testing"
)

// BenchmarkDecide_8000Contents is one reconcile of a steady cluster of
// Greenplum's size (1,000 hosts, 8 primaries and 8 mirrors each), every
// instance reporting up: the work the leader does on each report.
func BenchmarkDecide_8000Contents(b *testing.B) {
	const hosts, perHost = 1000, 8
	t := &Topology{ConfigVersion: 1}
	obs := map[int]Observation{}
	dbid := 1
	for c := range hosts * perHost {
		h := c / perHost
		for _, r := range []Role{RolePrimary, RoleMirror} {
			host := h
			if r == RoleMirror {
				host = (h + 1 + c%perHost) % hosts
			}
			t.Segments = append(t.Segments, Segment{DBID: dbid, Content: c, Role: r, PreferredRole: r,
				Mode: ModeSynced, Status: StatusUp, Port: 6000 + c%perHost, Hostname: fmt.Sprintf("sdw%d", host+1),
				Address: fmt.Sprintf("sdw%d", host+1), DataDir: fmt.Sprintf("/data/%d", dbid)})
			obs[dbid] = Observation{DBID: dbid, Up: true, InRecovery: r == RoleMirror, Streaming: r == RoleMirror, ConfigVersion: 1}
			dbid++
		}
	}
	b.ResetTimer()
	for b.Loop() {
		if u := Decide(t, obs); len(u) != 0 {
			b.Fatalf("a steady cluster got %d updates", len(u))
		}
	}
}
