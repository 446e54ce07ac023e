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

// BenchmarkApply_8000Contents is one reconcile's entry applied right
// after init at Greenplum's size: every instance still pending, one
// recorded up. Every Raft replica runs this on every entry.
func BenchmarkApply_8000Contents(b *testing.B) {
	const hosts, perHost = 1000, 8
	t := &Topology{ConfigVersion: 1}
	dbid := 1
	for c := range hosts * perHost {
		h := c / perHost
		for _, r := range []Role{RolePrimary, RoleMirror} {
			host, port := h, 6000+c%perHost
			if r == RoleMirror {
				host, port = (h+1+c%perHost)%hosts, 7000+c%perHost
			}
			t.Segments = append(t.Segments, Segment{DBID: dbid, Content: c, Role: r, PreferredRole: r,
				Mode: ModeNotSynced, Status: StatusDown, Port: port, Hostname: fmt.Sprintf("sdw%d", host+1),
				Address: fmt.Sprintf("sdw%d", host+1), DataDir: fmt.Sprintf("/data/%d", dbid)})
			t.Pending = append(t.Pending, dbid)
			dbid++
		}
	}
	if err := Validate(t); err != nil {
		b.Fatal(err)
	}
	cmd := Command{Type: CmdUpdateSegments, BaseVersion: 1, Updates: []SegmentUpdate{{DBID: 1, Status: StatusUp}}}
	b.ResetTimer()
	for b.Loop() {
		if _, err := Apply(t, cmd); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHostViews_8000Contents is the leader's answers to one commit
// right after init at Greenplum's size: every host's view cut from one
// topology with every instance pending (HostViews once, then a view per
// host, as the thousand clients' queries ask for them).
func BenchmarkHostViews_8000Contents(b *testing.B) {
	const hosts, perHost = 1000, 8
	t := &Topology{ConfigVersion: 1}
	dbid := 1
	for c := range hosts * perHost {
		h := c / perHost
		for _, r := range []Role{RolePrimary, RoleMirror} {
			host := h
			if r == RoleMirror {
				host = (h + 1 + c%perHost) % hosts
			}
			t.Segments = append(t.Segments, Segment{DBID: dbid, Content: c, Role: r, PreferredRole: r,
				Mode: ModeNotSynced, Status: StatusDown, Port: 6000 + c%perHost, Hostname: fmt.Sprintf("sdw%d", host+1),
				Address: fmt.Sprintf("sdw%d", host+1), DataDir: fmt.Sprintf("/data/%d", dbid)})
			t.Pending = append(t.Pending, dbid)
			dbid++
		}
	}
	b.ResetTimer()
	for b.Loop() {
		views := HostViews(t)
		for h := range hosts {
			if v := views(fmt.Sprintf("sdw%d", h+1)); len(v.Segments) != 2*2*perHost {
				b.Fatalf("sdw%d sees %d segments, want %d", h+1, len(v.Segments), 4*perHost)
			}
		}
	}
}
