package agent

import (
	"log/slog"
	"slices"
	"testing"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

func TestLeader_PruneReports(t *testing.T) {
	l := newLeader(&Agent{log: slog.New(slog.DiscardHandler), clock: SystemClock{}})
	l.accept("sdw1", []api.InstanceReport{{DBID: 2}, {DBID: 3}, {DBID: 9}}, 0)
	top := &topology.Topology{Segments: []topology.Segment{{DBID: 1}, {DBID: 2}, {DBID: 3}}}
	l.pruneReports(top)
	var got []int
	for _, r := range l.instances() {
		got = append(got, r.DBID)
	}
	if want := []int{2, 3}; !slices.Equal(got, want) {
		t.Fatalf("reports kept for dbids %v, want %v (9 is not in the topology)", got, want)
	}
}
