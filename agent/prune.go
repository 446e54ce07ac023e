package agent

import "github.com/gpagent/gpagent/topology"

// pruneReports forgets the reports of instances no longer in the
// topology (removed, or replaced by a recovery that moved them to a new
// dbid). Nothing reads them, and without this the map only grows for as
// long as this agent leads.
func (l *leader) pruneReports(t *topology.Topology) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for dbid := range l.reports {
		if _, ok := t.Segment(dbid); !ok {
			delete(l.reports, dbid)
		}
	}
}
