package agent

import (
	"sync/atomic"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

// eventCounts are the events /metrics counts since this agent started
// (Prometheus' rate() copes with the reset at a restart). Each is raised
// where the event happens: failovers by the leader that committed them,
// fences and recoveries by the agent whose instances they touched.
type eventCounts struct {
	failovers atomic.Uint64
	fences    atomic.Uint64
	// recoveries and their bytes, by kind: incremental (pg_rewind) and
	// full (a copy of the primary).
	rewinds, copies          atomic.Uint64
	rewindBytes, copiedBytes atomic.Uint64
	// Reports received as leader: full ones, heartbeats, and heartbeats
	// answered resend (naming a full report not held).
	fullReports, heartbeats, resends atomic.Uint64
	// reconciles this agent ran as leader: decided, or skipped as quiet
	// (leader.quietInputs).
	reconcilesDecided, reconcilesSkipped atomic.Uint64
}

// recovered counts one finished recovery of kind and the bytes its last
// progress report gave (nil: none were reported).
func (c *eventCounts) recovered(kind topology.RecoveryKind, p *api.Progress) {
	var n uint64
	if p != nil && p.Done > 0 {
		n = uint64(p.Done)
	}
	if kind == topology.RecoveryIncremental {
		c.rewinds.Add(1)
		c.rewindBytes.Add(n)
		return
	}
	c.copies.Add(1)
	c.copiedBytes.Add(n)
}

// failovers counts the updates that make a mirror of t its content's
// primary: promotions, not switchovers (they take another command).
func failovers(t *topology.Topology, updates []topology.SegmentUpdate) int {
	n := 0
	for _, u := range updates {
		if u.Role != topology.RolePrimary {
			continue
		}
		if s, ok := t.Segment(u.DBID); ok && s.Role == topology.RoleMirror {
			n++
		}
	}
	return n
}
