package topology

import (
	"slices"
	"testing"
)

// A host's Since moves only with a commit that changes its view: a
// commit about another host's contents leaves it, one about a content
// with an instance on the host moves it, the coordinator's host (whole
// topology) moves with every change but history, and a change undone at
// the next version still counts (every version is seen).
func TestViewChanges_MovesOnlyWithTheHostsView(t *testing.T) {
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
	var vc ViewChanges
	var cur *Topology
	apply := func(next *Topology) {
		vc.Apply(cur, next)
		cur = next
	}
	check := func(when string, want map[string]uint64) {
		t.Helper()
		for h, w := range want {
			if got := vc.Since(h); got != w {
				t.Fatalf("%s: %s Since %d, want %d", when, h, got, w)
			}
		}
	}
	apply(top(10, 0, nil))
	check("first topology", map[string]uint64{"cdw": 10, "h1": 10, "h2": 10, "h3": 10, "h4": 10, "empty": 10})
	// Content 1's mirror goes down: h3, h4 and the coordinator's host.
	down := func(s []Segment) { s[4].Status = StatusDown }
	apply(top(11, 1, down))
	apply(top(12, 2, down)) // only history
	check("after a change of content 1", map[string]uint64{"cdw": 11, "h1": 10, "h2": 10, "h3": 11, "h4": 11, "empty": 10})
	apply(top(13, 2, func(s []Segment) { down(s); s[1].Mode = ModeNotSynced }))
	check("after a change of content 0", map[string]uint64{"cdw": 13, "h1": 13, "h2": 13, "h3": 11, "h4": 11})
	// A mirror moved to a new host: both the old and the new host.
	apply(top(14, 2, func(s []Segment) { down(s); s[1].Mode = ModeNotSynced; s[4].Hostname = "h5" }))
	check("a mirror moved", map[string]uint64{"h5": 14, "h4": 14, "h3": 14, "h1": 13})
	// A change and its undoing: sampled at 14 and 16 the view of content
	// 0 is the same, but 15 changed it, and a report made on 14 is not
	// on the topology of 16.
	mv := func(s []Segment) { down(s); s[1].Mode = ModeNotSynced; s[4].Hostname = "h5" }
	apply(top(15, 2, func(s []Segment) { mv(s); s[2].Status = StatusDown }))
	apply(top(16, 2, mv))
	check("a change undone", map[string]uint64{"h1": 16, "h2": 16, "h3": 14})
	// The dbid-keyed lists: a pending dbid moves its content's hosts.
	next := top(17, 2, mv)
	next.Pending = []int{4}
	apply(next)
	check("content 1 pending", map[string]uint64{"h3": 17, "h5": 17, "h1": 16})
	// A cluster-wide field moves every host.
	next = top(18, 2, mv)
	next.Pending = []int{4}
	next.Paused = true
	apply(next)
	check("paused", map[string]uint64{"h1": 18, "h3": 18, "empty": 18})
	// A switchover of content 0, then a recovery of dbid 5 (content 1).
	next = top(19, 2, mv)
	next.Pending, next.Paused = []int{4}, true
	next.Switchovers = []Switchover{{Content: 0, From: 2, To: 3, Version: 19}}
	apply(next)
	check("switchover of content 0", map[string]uint64{"h1": 19, "h2": 19, "h3": 18})
	next = top(20, 2, mv)
	next.Pending, next.Paused, next.Switchovers = []int{4}, true, []Switchover{{Content: 0, From: 2, To: 3, Version: 19}}
	next.Recoveries = []Recovery{{DBID: 5, Kind: RecoveryIncremental, Job: 1}}
	apply(next)
	check("recovery of dbid 5", map[string]uint64{"h1": 19, "h3": 20, "h5": 20})
}

// A host's RolesSince moves only with a commit that gives it an instance,
// takes one away or changes one's role: statuses and modes (an init's
// progress, a mirror marked down) leave it, a promotion moves both hosts
// of the pair, a mirror moved moves the old and the new host, and a role
// changed and changed back still counts.
func TestViewChanges_RolesSinceMovesOnlyWithRoles(t *testing.T) {
	segs := []Segment{
		{DBID: 2, Content: 0, Role: RolePrimary, Hostname: "h1", Status: StatusUp},
		{DBID: 3, Content: 0, Role: RoleMirror, Hostname: "h2", Status: StatusUp},
		{DBID: 4, Content: 1, Role: RolePrimary, Hostname: "h3", Status: StatusUp},
		{DBID: 5, Content: 1, Role: RoleMirror, Hostname: "h4", Status: StatusUp},
	}
	var vc ViewChanges
	var cur *Topology
	apply := func(v uint64, change func(s []Segment)) {
		next := &Topology{ConfigVersion: v, Segments: slices.Clone(segs)}
		change(next.Segments)
		vc.Apply(cur, next)
		cur, segs = next, next.Segments
	}
	check := func(when string, want map[string]uint64) {
		t.Helper()
		for h, w := range want {
			if got := vc.RolesSince(h); got != w {
				t.Fatalf("%s: %s RolesSince %d, want %d", when, h, got, w)
			}
		}
	}
	apply(10, func([]Segment) {})
	check("first topology", map[string]uint64{"h1": 10, "h2": 10, "h3": 10, "h4": 10})
	apply(11, func(s []Segment) { s[1].Status, s[0].Mode = StatusDown, ModeNotSynced })
	apply(12, func(s []Segment) { s[1].Status = StatusUp })
	check("statuses and modes only", map[string]uint64{"h1": 10, "h2": 10, "h3": 10, "h4": 10})
	if vc.Since("h1") != 12 {
		t.Fatalf("h1's view Since %d, want 12: the view moved", vc.Since("h1"))
	}
	apply(13, func(s []Segment) { s[2].Role, s[2].Status, s[3].Role = RoleMirror, StatusDown, RolePrimary })
	check("content 1 failed over", map[string]uint64{"h1": 10, "h2": 10, "h3": 13, "h4": 13})
	apply(14, func(s []Segment) { s[1].Hostname = "h5" })
	check("a mirror moved", map[string]uint64{"h1": 10, "h2": 14, "h5": 14, "h3": 13})
	apply(15, func(s []Segment) { s[0].Role = RoleMirror; s[1].Role = RolePrimary })
	apply(16, func(s []Segment) { s[0].Role = RolePrimary; s[1].Role = RoleMirror })
	check("a role changed and back", map[string]uint64{"h1": 16, "h5": 16, "h3": 13})
	apply(17, func(s []Segment) { s[2].Hostname = "h3" })
	check("nothing of roles", map[string]uint64{"h1": 16, "h3": 13, "h4": 13})
	cur = nil
	apply(18, func([]Segment) {}) // a restore: every host
	check("restore", map[string]uint64{"h1": 18, "h3": 18})
}
