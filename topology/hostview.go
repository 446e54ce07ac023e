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
	// A content holds at most a primary and a mirror (Validate), so its
	// segments are two positions, kept in the topology's order; no slice
	// per content or per dbid: at 16,000 segments the allocations, not
	// the work, were the cost (the leader built this on every commit).
	type pair [2]int32 // positions in t.Segments, -1 for none
	byContent := make(map[int]pair, len(t.Segments)/2+1)
	posOf := make(map[int]int32, len(t.Segments))
	perHost := map[string]int{}
	full := map[string]bool{}
	for i, s := range t.Segments {
		posOf[s.DBID] = int32(i)
		p, ok := byContent[s.Content]
		if !ok {
			p = pair{-1, -1}
		}
		switch {
		case p[0] < 0:
			p[0] = int32(i)
		case p[1] < 0:
			p[1] = int32(i)
		default:
			// Not a valid topology (Validate): the whole of it to every
			// host rather than a view that drops a segment.
			return func(string) *Topology { return t }
		}
		byContent[s.Content] = p
		perHost[s.Hostname]++
		if s.Content == CoordinatorContent {
			full[s.Hostname] = true
		}
	}
	contentsOf := make(map[string][]int, len(perHost))
	for _, s := range t.Segments {
		list, ok := contentsOf[s.Hostname]
		if !ok {
			list = make([]int, 0, perHost[s.Hostname])
		}
		contentsOf[s.Hostname] = append(list, s.Content)
	}
	// viewers are the hosts whose views hold dbid's content (at most two).
	viewers := func(dbid int) (hosts [2]string, n int) {
		i, ok := posOf[dbid]
		if !ok {
			return hosts, 0
		}
		for _, j := range byContent[t.Segments[i].Content] {
			if j < 0 {
				continue
			}
			if h := t.Segments[j].Hostname; n == 0 || hosts[0] != h {
				hosts[n] = h
				n++
			}
		}
		return hosts, n
	}
	// The lists keyed by dbid, cut once into each host's share: each
	// dbid goes to the hosts whose views hold its content. Cutting them
	// per view instead cost a pass over every list per host (Pending
	// holds every instance during an init: 16,000 dbids x 1,000 hosts
	// per commit).
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
	cut := func(ids []int, add func(*share, int)) {
		for _, id := range ids {
			hosts, n := viewers(id)
			for _, h := range hosts[:n] {
				add(shareOf(h), id)
			}
		}
	}
	cut(t.Pending, func(sh *share, id int) { sh.pending = append(sh.pending, id) })
	cut(t.Rejoin, func(sh *share, id int) { sh.rejoin = append(sh.rejoin, id) })
	cut(t.NoAutoRecover, func(sh *share, id int) { sh.noAuto = append(sh.noAuto, id) })
	for _, r := range t.Recoveries {
		hosts, n := viewers(r.DBID)
		for _, h := range hosts[:n] {
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
		v.Segments = make([]Segment, 0, 2*len(contents))
		// By content, each content's segments in the topology's order.
		for _, c := range contents {
			for _, j := range byContent[c] {
				if j >= 0 {
					v.Segments = append(v.Segments, t.Segments[j])
				}
			}
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
