package topology

import "slices"

// ViewChanges records, from every topology applied in order, the last
// config version at which each host's view (HostViews) changed: the
// leader's side of the client's unchanged-view rule. A report made on a
// version at or past a host's Since was made on the topology that host
// acts on today, however many commits that touched only other hosts came
// after it: the lease rule (RenewsLease) and Decide's vouch check ("made
// on the current topology") keep their meaning, and a burst of commits
// elsewhere no longer makes every report stale (gpbench scale, 100
// agents: the leader committed 12-15 entries a second through init, a
// probe round took 1-2.5 s, and no report of any host renewed).
//
// It is exact where a comparison of views sampled now and then is not:
// it sees every version, so a change undone a version later still moves
// the hosts it touched (a mirror marked down and rebuilt between two
// samples looked unchanged, and a primary's vouch for it from before the
// rebuild would have counted). It costs one pass over the segments per
// apply, no encoding. The zero value is ready; Apply must be given every
// topology in version order (the FSM's apply, and its restore).
type ViewChanges struct {
	version uint64            // the latest applied
	all     uint64            // every view changed (a cluster-wide field, a restore)
	any     uint64            // anything but the history changed (the full views)
	host    map[string]uint64 // a host's view changed
	roles   map[string]uint64 // a host's roles changed (RolesSince)
	full    map[string]bool   // hosts whose view is the whole topology (HostViews)
}

// Apply records next, applied after prev (nil: a first topology or a
// restore, which changes every view).
func (v *ViewChanges) Apply(prev, next *Topology) {
	if next == nil {
		return
	}
	at := next.ConfigVersion
	v.version = at
	if v.host == nil {
		v.host, v.roles = map[string]uint64{}, map[string]uint64{}
	}
	v.full = map[string]bool{}
	for _, s := range next.Segments {
		if s.Content == CoordinatorContent {
			v.full[s.Hostname] = true
		}
	}
	if prev == nil || !sameClusterFields(prev, next) {
		v.all, v.any = at, at
		return
	}
	touched := changedContents(prev, next)
	if len(touched) == 0 {
		return
	}
	v.any = at
	type place struct {
		host string
		role Role
	}
	before := map[int]place{}
	for _, t := range []*Topology{prev, next} {
		for _, s := range t.Segments {
			if touched[s.Content] {
				v.host[s.Hostname] = at
			}
		}
	}
	for _, s := range prev.Segments {
		if touched[s.Content] {
			before[s.DBID] = place{s.Hostname, s.Role}
		}
	}
	for _, s := range next.Segments {
		if !touched[s.Content] {
			continue
		}
		b, ok := before[s.DBID]
		if !ok || b != (place{s.Hostname, s.Role}) {
			v.roles[s.Hostname] = at
			if ok {
				v.roles[b.host] = at
			}
		}
		delete(before, s.DBID)
	}
	for _, b := range before { // removed
		v.roles[b.host] = at
	}
}

// Since is the version from which host's view in the latest topology
// applied has been what it is: the last version that changed it.
func (v *ViewChanges) Since(host string) uint64 {
	since := v.all
	if v.full[host] {
		since = max(since, v.any)
	} else {
		since = max(since, v.host[host])
	}
	return min(since, v.version)
}

// RolesSince is the version from which host's roles in the latest
// topology applied have been what they are: the last version that gave
// it an instance, took one away, or changed one's role. It is what a
// lease acknowledgement names (rule 5): a report made at or after it was
// made on the primaries the host holds today, whatever else changed in
// its view since (an instance created, marked up or down, a pair in
// sync). A report made before a demotion never renews the lease of the
// demoted primary's host. The whole view's version (Since) made every
// report in flight stale at each commit that touched the host: through
// a 1,000-host init every commit touched every host, report round trips
// took seconds, and no lease was renewed.
func (v *ViewChanges) RolesSince(host string) uint64 {
	return min(max(v.all, v.roles[host]), v.version)
}

// sameClusterFields: every field a host's view holds as is, unchanged.
func sameClusterFields(a, b *Topology) bool {
	return a.ClusterID == b.ClusterID && a.SegPrefix == b.SegPrefix && slices.Equal(a.Databases, b.Databases) &&
		a.Mirrors.PortBase == b.Mirrors.PortBase && slices.Equal(a.Mirrors.DataDirs, b.Mirrors.DataDirs) && a.Mirrors.Placement == b.Mirrors.Placement &&
		a.Paused == b.Paused && a.RecoveryParallel == b.RecoveryParallel && a.RecoveryJob == b.RecoveryJob
}

// changedContents are the contents whose part of a view differs between a
// and b: their segments, or their dbids' place in the lists the views cut.
func changedContents(a, b *Topology) map[int]bool {
	out := map[int]bool{}
	contentOf := make(map[int]int, len(b.Segments))
	old := make(map[int]Segment, len(a.Segments))
	for _, s := range a.Segments {
		old[s.DBID] = s
		contentOf[s.DBID] = s.Content
	}
	for _, s := range b.Segments {
		contentOf[s.DBID] = s.Content
		if o, ok := old[s.DBID]; !ok || o != s {
			out[s.Content] = true
			if ok {
				out[o.Content] = true
			}
		}
		delete(old, s.DBID)
	}
	for _, s := range old { // removed
		out[s.Content] = true
	}
	mark := func(dbid int) {
		if c, ok := contentOf[dbid]; ok {
			out[c] = true
		}
	}
	for _, pair := range [][2][]int{{a.Pending, b.Pending}, {a.Rejoin, b.Rejoin}, {a.NoAutoRecover, b.NoAutoRecover}} {
		if slices.Equal(pair[0], pair[1]) {
			continue
		}
		for _, id := range symmetricDifference(pair[0], pair[1]) {
			mark(id)
		}
	}
	for _, id := range changedKeys(a.Recoveries, b.Recoveries, func(r Recovery) int { return r.DBID }) {
		mark(id)
	}
	for _, c := range changedKeys(a.Switchovers, b.Switchovers, func(s Switchover) int { return s.Content }) {
		out[c] = true
	}
	return out
}

// changedKeys are the keys whose entry differs between the lists a and b
// (added, removed or changed), each list holding one entry per key.
func changedKeys[V comparable](a, b []V, key func(V) int) []int {
	if slices.Equal(a, b) {
		return nil
	}
	ka, kb := map[int]V{}, map[int]V{}
	for _, v := range a {
		ka[key(v)] = v
	}
	for _, v := range b {
		kb[key(v)] = v
	}
	var out []int
	for k, v := range ka {
		if w, ok := kb[k]; !ok || w != v {
			out = append(out, k)
		}
	}
	for k := range kb {
		if _, ok := ka[k]; !ok {
			out = append(out, k)
		}
	}
	return out
}

// symmetricDifference: the ids in exactly one of a and b.
func symmetricDifference(a, b []int) []int {
	in := map[int]int{}
	for _, id := range a {
		in[id] |= 1
	}
	for _, id := range b {
		in[id] |= 2
	}
	var out []int
	for id, m := range in {
		if m != 3 {
			out = append(out, id)
		}
	}
	return out
}
