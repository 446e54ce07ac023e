package agent

import (
	"testing"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

// A view that changes only in its config version (a commit on other
// hosts) does not wake the executor, and a report made on the old
// version counts as made on the new one; a real change does both the
// other way.
func TestClientNode_UnchangedViewIsEquivalent(t *testing.T) {
	seg := topology.Segment{DBID: 2, Content: 0, Role: topology.RolePrimary, Hostname: "h1"}
	view := func(v uint64, s topology.Segment) *api.TopologyView {
		return &api.TopologyView{Leader: "srv1", Topology: &topology.Topology{ConfigVersion: v, Segments: []topology.Segment{s}}}
	}
	c := newClientNode(false)
	c.update(view(5, seg))
	<-c.Changes()
	c.update(view(9, seg))
	select {
	case <-c.Changes():
		t.Fatal("a version-only change woke the executor")
	default:
	}
	if got := c.Topology().ConfigVersion; got != 9 {
		t.Fatalf("view at version %d, want 9", got)
	}
	if got := c.equivalent(5); got != 9 {
		t.Fatalf("equivalent(5) = %d, want 9 (same view since 5)", got)
	}
	if got := c.equivalent(4); got != 4 {
		t.Fatalf("equivalent(4) = %d, want 4 (before the view was this one)", got)
	}
	moved := seg
	moved.Role = topology.RoleMirror
	c.update(view(10, moved))
	select {
	case <-c.Changes():
	default:
		t.Fatal("a change of the host's segments did not wake the executor")
	}
	if got := c.equivalent(9); got != 9 {
		t.Fatalf("equivalent(9) = %d after a real change at 10, want 9", got)
	}
	c.update(view(8, seg)) // a lagging server's older answer
	if got := c.Topology().ConfigVersion; got != 10 {
		t.Fatalf("an older answer replaced the view: version %d", got)
	}
	if name, _ := c.Leader(); name != "srv1" {
		t.Fatalf("leader %q, want srv1", name)
	}
}
