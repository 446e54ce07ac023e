package topology

import (
	"slices"
	"testing"
)

// A host's Since moves only with a commit that changes its view: a
// commit about another host's contents leaves it, one about a content
// with an instance on the host moves it, and the coordinator's host
// (whole topology) moves with every change but history.
func TestViewVersions_MovesOnlyWithTheHostsView(t *testing.T) {
	segs := []Segment{
		{DBID: 1, Content: -1, Role: RolePrimary, Hostname: "cdw", Status: StatusUp},
		{DBID: 2, Content: 0, Role: RolePrimary, Hostname: "h1", Status: StatusUp},
		{DBID: 3, Content: 0, Role: RoleMirror, Hostname: "h2", Status: StatusUp},
		{DBID: 4, Content: 1, Role: RolePrimary, Hostname: "h3", Status: StatusUp},
		{DBID: 5, Content: 1, Role: RoleMirror, Hostname: "h4", Status: StatusUp},
	}
	top := func(v uint64, history int, change func(s []Segment)) *Topology {
		s := slices.Clone(segs)
		if change != nil {
			change(s)
		}
		return &Topology{ConfigVersion: v, Segments: s, History: make([]HistoryEntry, history)}
	}
	var vv ViewVersions
	if got := vv.Since("h1"); got != 0 {
		t.Fatalf("before any topology: Since %d, want 0", got)
	}
	vv.Advance(top(10, 0, nil))
	for _, h := range []string{"cdw", "h1", "h2", "h3", "h4", "empty"} {
		if got := vv.Since(h); got != 10 {
			t.Fatalf("first topology: %s Since %d, want 10", h, got)
		}
	}
	// Content 1's mirror goes down: h3, h4 and the coordinator's host.
	down := func(s []Segment) { s[4].Status = StatusDown }
	vv.Advance(top(11, 1, down))
	vv.Advance(top(12, 2, down)) // only history
	want := map[string]uint64{"cdw": 11, "h1": 10, "h2": 10, "h3": 11, "h4": 11, "empty": 10}
	for h, w := range want {
		if got := vv.Since(h); got != w {
			t.Fatalf("after a change of content 1: %s Since %d, want %d", h, got, w)
		}
	}
	vv.Advance(top(11, 1, down)) // older: ignored
	vv.Advance(top(13, 2, func(s []Segment) { down(s); s[1].Mode = ModeNotSynced }))
	want = map[string]uint64{"cdw": 13, "h1": 13, "h2": 13, "h3": 11, "h4": 11, "empty": 10}
	for h, w := range want {
		if got := vv.Since(h); got != w {
			t.Fatalf("after a change of content 0: %s Since %d, want %d", h, got, w)
		}
	}
	// A host new in the topology is followed from the version it
	// appears in.
	vv.Advance(top(14, 2, func(s []Segment) { down(s); s[1].Mode = ModeNotSynced; s[4].Hostname = "h5" }))
	if got := vv.Since("h5"); got != 14 {
		t.Fatalf("a new host: Since %d, want 14", got)
	}
}
