package topology

import "slices"

// Index finds a topology's segments by dbid and by host without a scan:
// Segment and OnHost look through every segment, which is fine for a
// command and not for the leader's report handler, which runs a thousand
// times a second at a thousand hosts and looked up each of 16 instances
// among 16,000 segments (gpbench scale, 1,000 agents: the leader's
// largest cost after the topology queries). Build one per committed
// topology, which is never changed after its commit.
type Index struct {
	t      *Topology
	byDBID map[int]int      // position in t.Segments
	byHost map[string][]int // positions, in t.Segments order
	hosts  []string         // sorted
}

// NewIndex indexes t in one pass.
func NewIndex(t *Topology) *Index {
	x := &Index{t: t, byDBID: make(map[int]int, len(t.Segments)), byHost: map[string][]int{}}
	for i, s := range t.Segments {
		x.byDBID[s.DBID] = i
		if _, ok := x.byHost[s.Hostname]; !ok {
			x.hosts = append(x.hosts, s.Hostname)
		}
		x.byHost[s.Hostname] = append(x.byHost[s.Hostname], i)
	}
	slices.Sort(x.hosts)
	return x
}

// Hosts is t.Hosts(): the hosts that hold instances, sorted. The caller
// must not change it.
func (x *Index) Hosts() []string { return x.hosts }

// Topology is the topology indexed.
func (x *Index) Topology() *Topology { return x.t }

// Segment is t.Segment(dbid).
func (x *Index) Segment(dbid int) (Segment, bool) {
	i, ok := x.byDBID[dbid]
	if !ok {
		return Segment{}, false
	}
	return x.t.Segments[i], true
}

// OnHost is t.OnHost(host).
func (x *Index) OnHost(host string) []Segment {
	var out []Segment
	for _, i := range x.byHost[host] {
		out = append(out, x.t.Segments[i])
	}
	return out
}
