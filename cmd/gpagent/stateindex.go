package main

import (
	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

// stateIndex finds a state's segments, pairs and reports without a scan:
// at Greenplum's size (16,000 instances) a scan per segment made
// `state`, `state -s` and `-c` quadratic, seconds of CPU in the CLI.
type stateIndex struct {
	s       *api.State
	seg     map[int]topology.Segment // by dbid
	primary map[int]topology.Segment // by content
	mirror  map[int]topology.Segment // by content
	reports map[int]int              // dbid -> position in s.Instances
	pending map[int]bool
}

func newStateIndex(s *api.State) *stateIndex {
	ix := &stateIndex{s: s, seg: make(map[int]topology.Segment, len(s.Segments)), primary: map[int]topology.Segment{},
		mirror: map[int]topology.Segment{}, reports: make(map[int]int, len(s.Instances)), pending: make(map[int]bool, len(s.Pending))}
	for _, x := range s.Segments {
		ix.seg[x.DBID] = x
		if x.Role == topology.RolePrimary {
			ix.primary[x.Content] = x
		} else {
			ix.mirror[x.Content] = x
		}
	}
	for i, r := range s.Instances {
		ix.reports[r.DBID] = i
	}
	for _, d := range s.Pending {
		ix.pending[d] = true
	}
	return ix
}

// report is dbid's latest report, if the state holds one.
func (ix *stateIndex) report(dbid int) (api.InstanceReport, bool) {
	i, ok := ix.reports[dbid]
	if !ok {
		return api.InstanceReport{}, false
	}
	return ix.s.Instances[i], true
}

func (ix *stateIndex) hasMirror(content int) bool {
	_, ok := ix.mirror[content]
	return ok
}
