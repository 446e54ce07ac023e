package agent

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/gpagent/gpagent/api"
)

// The state without reports (GET /v1/state?reports=false, the CLI's
// summary and --json) holds the same segments as the full state and no
// instance report; the full state holds a report of every instance.
func TestSimStateWithoutReports(t *testing.T) {
	c := newSimCluster(t, 3, "")
	c.initCluster(1)
	full := c.state()
	if len(full.Instances) < len(full.Segments)-1 { // the coordinator's own may lag a round
		t.Fatalf("full state: %d reports for %d segments", len(full.Instances), len(full.Segments))
	}
	ctx, cancel := context.WithTimeout(context.Background(), simWait)
	defer cancel()
	segs, err := c.client().Segments(ctx)
	if err != nil {
		t.Fatalf("segments: %v", err)
	}
	if len(segs.Instances) != 0 {
		t.Fatalf("state without reports holds %d reports", len(segs.Instances))
	}
	if segs.ConfigVersion == full.ConfigVersion && !slices.Equal(segs.Segments, full.Segments) {
		t.Fatalf("segments differ at config version %d: %+v against %+v", segs.ConfigVersion, segs.Segments, full.Segments)
	}
	if len(segs.Segments) != len(full.Segments) {
		t.Fatalf("%d segments without reports, %d with", len(segs.Segments), len(full.Segments))
	}
	// Indented by the agent (indent=true, what gpagent state --json
	// asks): the same state, decoded.
	raw, err := c.client().SegmentsJSON(ctx)
	if err != nil {
		t.Fatalf("segments json: %v", err)
	}
	if len(raw) < 2 || raw[1] != '\n' {
		t.Fatalf("state asked indented is not: %.40q", raw)
	}
	var indented api.State
	if err := json.Unmarshal(raw, &indented); err != nil {
		t.Fatalf("indented state: %v", err)
	}
	if indented.ConfigVersion == segs.ConfigVersion && !slices.Equal(indented.Segments, segs.Segments) {
		t.Fatalf("indented segments differ at config version %d", segs.ConfigVersion)
	}
}
