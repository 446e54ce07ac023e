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
	full := map[string]bool{}
	for _, s := range t.Segments {
		if list := contentsOf[s.Hostname]; len(list) == 0 || list[len(list)-1] != s.Content {
			contentsOf[s.Hostname] = append(list, s.Content)
		}
		byContent[s.Content] = append(byContent[s.Content], s)
		if s.Content == CoordinatorContent {
			full[s.Hostname] = true
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
		dbids := map[int]bool{}
		// By content, each content's segments in the topology's order.
		for _, c := range contents {
			for _, s := range byContent[c] {
				v.Segments = append(v.Segments, s)
				dbids[s.DBID] = true
			}
		}
		keep := func(ids []int) []int {
			var out []int
			for _, id := range ids {
				if dbids[id] {
					out = append(out, id)
				}
			}
			return out
		}
		v.Pending, v.Rejoin, v.NoAutoRecover = keep(t.Pending), keep(t.Rejoin), keep(t.NoAutoRecover)
		v.Switchovers = nil
		for _, sw := range t.Switchovers {
			if slices.Contains(contents, sw.Content) {
				v.Switchovers = append(v.Switchovers, sw)
			}
		}
		v.Recoveries = nil
		for _, r := range t.Recoveries {
			if dbids[r.DBID] {
				v.Recoveries = append(v.Recoveries, r)
			}
		}
		return &v
	}
}
