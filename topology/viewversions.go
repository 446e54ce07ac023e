package topology

import "encoding/json"

// ViewVersions follows, for each host, the config version from which its
// view of the topology (HostViews) has been what it is in the latest
// topology seen: the leader's side of the client's unchanged-view rule.
//
// A report made on a version at or past a host's Since was made on the
// topology that host acts on today, however many commits that touched
// only other hosts came after it. The lease rule (RenewsLease) asks that
// an agent act on the current topology before it renews; comparing its
// report's version with Since rather than with the leader's committed
// version keeps that meaning and stops a burst of commits elsewhere from
// making every report stale (gpbench scale, 100 agents: the leader
// committed 12-15 entries a second through init, a probe round took 1-2.5
// s, and no report of any host renewed).
//
// Advance must be given every topology the caller acts on before it asks
// Since, in version order (an older one is ignored). A version skipped
// between two Advances whose view of a host differed from both is not
// seen (a change and its undoing): the client's view, fed by a query that
// skips versions too, makes the same approximation; a change that stays
// is always seen. The zero value is ready; a nil topology is ignored.
type ViewVersions struct {
	t     *Topology
	views func(host string) *Topology
	since map[string]uint64
	keys  map[string]string
}

// Advance moves to t: every host followed whose view in t differs from
// its view in the topology before gets t's version as its Since, and so
// does a host first seen in t.
func (v *ViewVersions) Advance(t *Topology) {
	if t == nil || (v.t != nil && t.ConfigVersion <= v.t.ConfigVersion) {
		return
	}
	v.t, v.views = t, HostViews(t)
	if v.since == nil {
		v.since, v.keys = map[string]uint64{}, map[string]string{}
	}
	for host, old := range v.keys {
		if k := viewKey(v.views(host)); k != old || k == "" {
			v.keys[host], v.since[host] = k, t.ConfigVersion
		}
	}
	// Every host with instances is followed from the first version it is
	// seen in (a host with none, once it asks: Since).
	for _, host := range t.Hosts() {
		if _, ok := v.keys[host]; !ok {
			v.keys[host], v.since[host] = viewKey(v.views(host)), t.ConfigVersion
		}
	}
}

// Since returns the version from which host's view has been the one in
// the latest topology advanced to (0 before any Advance). A host not
// followed yet starts to be followed at that version: with no earlier
// view to compare, it is the earliest version known to hold this one.
func (v *ViewVersions) Since(host string) uint64 {
	if v.t == nil {
		return 0
	}
	if s, ok := v.since[host]; ok {
		return s
	}
	v.keys[host], v.since[host] = viewKey(v.views(host)), v.t.ConfigVersion
	return v.t.ConfigVersion
}

// viewKey is a view encoded without its config version; "" if it cannot
// be encoded (then every version counts as a change).
func viewKey(t *Topology) string {
	k := *t
	k.ConfigVersion = 0
	k.History = nil
	b, err := json.Marshal(&k)
	if err != nil {
		return ""
	}
	return string(b)
}
