package topology

import (
	"slices"
	"testing"
)

func TestHostViews_ContentsOfTheHostOnly(t *testing.T) {
	top := &Topology{ClusterID: "c", ConfigVersion: 9,
		Segments: []Segment{
			{DBID: 1, Content: -1, Role: RolePrimary, Hostname: "cdw"},
			{DBID: 2, Content: 0, Role: RolePrimary, Hostname: "h1"},
			{DBID: 3, Content: 1, Role: RolePrimary, Hostname: "h2"},
			{DBID: 4, Content: 2, Role: RolePrimary, Hostname: "h3"},
			{DBID: 5, Content: 0, Role: RoleMirror, Hostname: "h2"},
			{DBID: 6, Content: 1, Role: RoleMirror, Hostname: "h3"},
			{DBID: 7, Content: 2, Role: RoleMirror, Hostname: "h1"},
		},
		History:     []HistoryEntry{{DBID: 2, Desc: "x"}},
		Pending:     []int{2, 3, 4},
		Switchovers: []Switchover{{Content: 1, From: 3, To: 6}},
		Recoveries:  []Recovery{{DBID: 5}, {DBID: 6}},
	}
	view := HostViews(top)
	v := view("h1")
	var got []int
	for _, s := range v.Segments {
		got = append(got, s.DBID)
	}
	slices.Sort(got)
	if want := []int{2, 4, 5, 7}; !slices.Equal(got, want) {
		t.Fatalf("h1's view has dbids %v, want %v (contents 0 and 2, both instances of each)", got, want)
	}
	if v.ConfigVersion != 9 || v.ClusterID != "c" || v.History != nil {
		t.Fatalf("view: version %d cluster %q history %v; want 9, c, none", v.ConfigVersion, v.ClusterID, v.History)
	}
	if !slices.Equal(v.Pending, []int{2, 4}) || len(v.Switchovers) != 0 || len(v.Recoveries) != 1 || v.Recoveries[0].DBID != 5 {
		t.Fatalf("h1's lists: pending %v switchovers %v recoveries %v", v.Pending, v.Switchovers, v.Recoveries)
	}
	if p, ok := v.Primary(2); !ok || p.DBID != 4 {
		t.Fatalf("h1's view: content 2's primary %v %v, want dbid 4", p, ok)
	}
	if v := view("cdw"); v != top {
		t.Fatal("the coordinator's host gets the whole topology")
	}
	if v := view("nobody"); len(v.Segments) != 0 || v.Initialized() {
		t.Fatalf("a host with no instance: %v", v.Segments)
	}
	if len(top.Segments) != 7 || len(top.Pending) != 3 || top.History == nil {
		t.Fatal("HostViews changed the topology")
	}
}
