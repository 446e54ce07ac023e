package topology

import "slices"

// HostViews returns, for one topology, a function giving a host's view
// of it: the segments of every content with an instance on that host
// (both of a pair, so an instance finds its primary or mirror), the
// lists keyed by dbid or content cut to those, and every other field as
// is. A client agent acts on its host's instances only, and learns the
// topology by a blocking query after every commit: a thousand clients
// fetching the whole topology on every commit is quadratic in the host
// count, their views are not.
//
// A host with a coordinator or standby instance (content -1) gets the
// whole topology: its agent keeps the coordinator's catalog of every
// segment. The index is built once (one pass over the segments); each
// view costs only its own contents.
func HostViews(t *Topology) func(host string) *Topology {
	contentsOf := map[string][]int{}
	byContent := map[int][]Segment{}
	hostOf := make(map[int]string, len(t.Segments))
	full := map[string]bool{}
	for _, s := range t.Segments {
		if list := contentsOf[s.Hostname]; len(list) == 0 || list[len(list)-1] != s.Content {
			contentsOf[s.Hostname] = append(list, s.Content)
		}
		byContent[s.Content] = append(byContent[s.Content], s)
		hostOf[s.DBID] = s.Hostname
		if s.Content == CoordinatorContent {
			full[s.Hostname] = true
		}
	}
	// The lists keyed by dbid, cut once into each host's share: each
	// dbid goes to the hosts whose views hold its content. Cutting them
	// per view instead cost a pass over every list per host (Pending
	// holds every instance during an init: 16,000 dbids x 1,000 hosts
	// per commit).
	contentOf := make(map[int]int, len(t.Segments))
	for _, s := range t.Segments {
		contentOf[s.DBID] = s.Content
	}
	viewers := func(dbid int) []string {
		c, ok := contentOf[dbid]
		if !ok {
			return nil
		}
		var hosts []string
		for _, s := range byContent[c] {
			if !slices.Contains(hosts, s.Hostname) {
				hosts = append(hosts, s.Hostname)
			}
		}
		return hosts
	}
	type share struct {
		pending, rejoin, noAuto []int
		recoveries              []Recovery
	}
	shares := map[string]*share{}
	shareOf := func(host string) *share {
		sh := shares[host]
		if sh == nil {
			sh = &share{}
			shares[host] = sh
		}
		return sh
	}
	for _, id := range t.Pending {
		for _, h := range viewers(id) {
			shareOf(h).pending = append(shareOf(h).pending, id)
		}
	}
	for _, id := range t.Rejoin {
		for _, h := range viewers(id) {
			shareOf(h).rejoin = append(shareOf(h).rejoin, id)
		}
	}
	for _, id := range t.NoAutoRecover {
		for _, h := range viewers(id) {
			shareOf(h).noAuto = append(shareOf(h).noAuto, id)
		}
	}
	for _, r := range t.Recoveries {
		for _, h := range viewers(r.DBID) {
			shareOf(h).recoveries = append(shareOf(h).recoveries, r)
		}
	}
	return func(host string) *Topology {
		if full[host] {
			return t
		}
		contents := slices.Clone(contentsOf[host])
		slices.Sort(contents)
		contents = slices.Compact(contents)
		v := *t
		v.History = nil
		v.Segments = nil
		// By content, each content's segments in the topology's order.
		for _, c := range contents {
			v.Segments = append(v.Segments, byContent[c]...)
		}
		v.Pending, v.Rejoin, v.NoAutoRecover, v.Recoveries = nil, nil, nil, nil
		if sh := shares[host]; sh != nil {
			v.Pending, v.Rejoin, v.NoAutoRecover, v.Recoveries = sh.pending, sh.rejoin, sh.noAuto, sh.recoveries
		}
		v.Switchovers = nil
		for _, sw := range t.Switchovers {
			if _, ok := slices.BinarySearch(contents, sw.Content); ok {
				v.Switchovers = append(v.Switchovers, sw)
			}
		}
		return &v
	}
}
