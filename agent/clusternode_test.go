package agent

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

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

// A server holds a client's topology query while that host's view is
// unchanged (a commit about other hosts is no news to it), but answers at
// once a query that needs a version it holds: the leader acknowledged the
// client's report at that version, and the lease renews only once the
// client's view reaches it. Without Need such a client waited out the
// whole query with its lease run out (gpbench scale, 100 agents).
func TestTopologyQuery_HeldUntilTheViewChangesOrIsNeeded(t *testing.T) {
	segs := []topology.Segment{
		{DBID: 2, Content: 0, Role: topology.RolePrimary, Hostname: "h1", Status: topology.StatusUp},
		{DBID: 3, Content: 0, Role: topology.RoleMirror, Hostname: "h2", Status: topology.StatusUp},
		{DBID: 4, Content: 1, Role: topology.RolePrimary, Hostname: "h3", Status: topology.StatusUp},
		{DBID: 5, Content: 1, Role: topology.RoleMirror, Hostname: "h4", Status: topology.StatusUp},
	}
	// A server's committed state, every commit followed (as its FSM
	// does); it leads, but its leader loop is not running: it answers
	// from its log's view versions, as a follower does.
	node := &fakeLeaderNode{clientNode: newClientNode(false)}
	a := &Agent{cfg: &Config{Name: "srv2"}, log: slog.New(slog.NewTextHandler(io.Discard, nil)), node: node}
	commit := func(v uint64) *topology.Topology {
		top := &topology.Topology{ConfigVersion: v, Segments: slices.Clone(segs)}
		node.commit(top)
		return top
	}
	if !a.viewNewerThan(commit(10), "h1", 9) {
		t.Fatal("h1's query at 9 held at 10")
	}
	segs[3].Status = topology.StatusDown // content 1 only: h3 and h4
	t11 := commit(11)
	if a.viewNewerThan(t11, "h1", 10) {
		t.Error("h1's query answered for a commit that did not touch its view")
	}
	if !a.viewNewerThan(t11, "h3", 10) {
		t.Error("h3's query held though its view changed")
	}
	if !a.viewNewerThan(t11, "", 10) {
		t.Error("a query for the whole topology held at a new version")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := httptest.NewRequest("GET", "/v1/topology?index=10&need=11&host=h1&wait=1m", nil).WithContext(ctx)
	b, err := a.topologyAnswer(req)
	if err != nil {
		t.Fatalf("query with need=11: %v (held while the server holds 11?)", err)
	}
	var v api.TopologyView
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if v.Topology.ConfigVersion != 11 {
		t.Fatalf("answered at version %d, want 11", v.Topology.ConfigVersion)
	}
	for _, s := range v.Topology.Segments {
		if s.Hostname != "h1" && s.Hostname != "h2" {
			t.Fatalf("h1's view holds %s's dbid %d", s.Hostname, s.DBID)
		}
	}
}
