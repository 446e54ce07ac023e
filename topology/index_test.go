package topology

import (
	"fmt"
	"slices"
	"testing"
)

// The index answers as the scans do, for every dbid and host, and for
// ones the topology does not hold.
func TestIndex_AgreesWithTheScans(t *testing.T) {
	var top Topology
	for i := range 40 {
		top.Segments = append(top.Segments, Segment{DBID: i + 2, Content: i / 2, Role: []Role{RolePrimary, RoleMirror}[i%2], Hostname: fmt.Sprintf("h%d", i%7)})
	}
	x := NewIndex(&top)
	for dbid := range 45 {
		want, wok := top.Segment(dbid)
		got, gok := x.Segment(dbid)
		if got != want || gok != wok {
			t.Fatalf("Segment(%d) = %v %v, the scan %v %v", dbid, got, gok, want, wok)
		}
	}
	if got, want := x.Hosts(), top.Hosts(); !slices.Equal(got, want) {
		t.Fatalf("Hosts() = %v, the scan %v", got, want)
	}
	for h := range 8 {
		host := fmt.Sprintf("h%d", h)
		if got, want := x.OnHost(host), top.OnHost(host); !slices.Equal(got, want) {
			t.Fatalf("OnHost(%s) = %v, the scan %v", host, got, want)
		}
	}
}
