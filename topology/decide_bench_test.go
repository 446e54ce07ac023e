package topology

import (
	"fmt"
	"testing"
)

// BenchmarkDecide_8000Contents is one reconcile of a steady cluster of
// Greenplum's size (1,000 hosts, 8 primaries and 8 mirrors each), every
// instance reporting up: the work the leader does on each report.
func BenchmarkDecide_8000Contents(b *testing.B) {
	t := greenplumSize(StatusUp, ModeSynced, false)
	obs := map[int]Observation{}
	for _, s := range t.Segments {
		obs[s.DBID] = Observation{DBID: s.DBID, Up: true, InRecovery: s.Role == RoleMirror, Streaming: s.Role == RoleMirror, ConfigVersion: 1}
	}
	b.ResetTimer()
	for b.Loop() {
		if u := Decide(t, obs); len(u) != 0 {
			b.Fatalf("a steady cluster got %d updates", len(u))
		}
	}
}

// greenplumSize is a topology of Greenplum's size at version 1: 1,000
// hosts, 8 primaries each on ports 6000-6007, their mirrors spread over
// the next 8 hosts on ports 7000-7007, every segment in status and mode,
// and every instance pending if pending.
func greenplumSize(status Status, mode Mode, pending bool) *Topology {
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
				Mode: mode, Status: status, Port: port, Hostname: fmt.Sprintf("sdw%d", host+1),
				Address: fmt.Sprintf("sdw%d", host+1), DataDir: fmt.Sprintf("/data/%d", dbid)})
			if pending {
				t.Pending = append(t.Pending, dbid)
			}
			dbid++
		}
	}
	return t
}

// BenchmarkApply_8000Contents is one reconcile's entry applied right
// after init at Greenplum's size: every instance still pending, one
// recorded up. Every Raft replica runs this on every entry.
func BenchmarkApply_8000Contents(b *testing.B) {
	t := greenplumSize(StatusDown, ModeNotSynced, true)
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
	t := greenplumSize(StatusDown, ModeNotSynced, true)
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
