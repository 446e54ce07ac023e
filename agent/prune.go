package agent

import "github.com/gpagent/gpagent/topology"

// pruneReports forgets the reports of instances no longer in the
// topology (removed, or replaced by a recovery that moved them to a new
// dbid). Nothing reads them, and without this the map only grows for as
// long as this agent leads.
func (l *leader) pruneReports(t *topology.Topology) {
	// One pass over the topology: t.Segment per report would scan every
	// segment once per report, quadratic in the cluster's size.
	known := make(map[int]struct{}, len(t.Segments))
	for _, s := range t.Segments {
		known[s.DBID] = struct{}{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for dbid := range l.reports {
		if _, ok := known[dbid]; !ok {
			delete(l.reports, dbid)
		}
	}
}
