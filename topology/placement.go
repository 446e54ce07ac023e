package topology

import (
	"fmt"
	"path/filepath"
	"slices"
)

// Placement is how gpaddmirrors spreads a host's mirrors over other hosts.
type Placement string

const (
	// PlacementGroup puts all mirrors of host i's primaries on host i+1:
	// losing a host doubles the load of exactly one other.
	PlacementGroup Placement = "group"
	// PlacementSpread puts the j-th primary of host i on host i+1+j, so a
	// lost host's load spreads over several; it needs more hosts than
	// primaries per host.
	PlacementSpread Placement = "spread"
)

// PlaceMirrors returns new mirrors, as gpaddmirrors places them, for every
// segment content of t that has a primary and no mirror. hosts are the
// segment hosts in order; nil means the hosts of t's segment primaries in
// content order. An empty placement means d.Placement, then group.
//
// Mirror on host h gets port d.PortBase+n and datadir
// d.DataDirs[n]/<prefix><content>, n its index among the mirrors placed on
// h. With more than one host, no mirror shares its primary's host. The
// mirrors are role and preferred role m, down and not in sync (they hold
// nothing yet, so nothing may be promoted to them), with dbids from
// t.MaxDBID()+1 in content order. t is not changed.
func PlaceMirrors(t *Topology, hosts []Host, placement Placement, d MirrorDefaults) ([]Segment, error) {
	if t == nil {
		t = &Topology{}
	}
	if placement == "" {
		placement = Placement(d.Placement)
	}
	if placement == "" {
		placement = PlacementGroup
	}
	if placement != PlacementGroup && placement != PlacementSpread {
		return nil, fmt.Errorf("%w: mirror placement %q: use group or spread", ErrInvalid, placement)
	}
	if d.PortBase == 0 || len(d.DataDirs) == 0 {
		return nil, fmt.Errorf("%w: no mirror port base and datadirs known: give the mirror settings (port_base, datadirs) or a mirror file (-i)", ErrInvalid)
	}
	if err := checkPortDirs("mirror", PortDirs{PortBase: d.PortBase, DataDirs: d.DataDirs}); err != nil {
		return nil, err
	}
	if hosts == nil {
		hosts = primaryHosts(t)
	}
	hosts = withDefaultAddresses(hosts)
	hostIndex, err := indexHosts(hosts)
	if err != nil {
		return nil, err
	}
	primaries := unmirroredPrimaries(t)
	if len(primaries) == 0 {
		return nil, fmt.Errorf("%w: every segment already has a mirror", ErrInvalid)
	}
	targets, err := mirrorHosts(primaries, hostIndex, len(hosts), placement)
	if err != nil {
		return nil, err
	}
	prefix := t.SegPrefix
	if prefix == "" {
		prefix = DefaultSegPrefix
	}
	placed := make([]int, len(hosts)) // mirrors placed so far, per host
	firstDBID := t.MaxDBID() + 1
	added := make([]newInstance, 0, len(primaries))
	for i, p := range primaries {
		h := hosts[targets[i]]
		n := placed[targets[i]]
		placed[targets[i]]++
		if n >= len(d.DataDirs) {
			return nil, fmt.Errorf("%w: host %s gets more than %d mirrors, but only %d mirror datadirs are set",
				ErrInvalid, h.Hostname, n, len(d.DataDirs))
		}
		added = append(added, newInstance{where: fmt.Sprintf("mirror of content %d", p.Content), Segment: Segment{
			DBID: firstDBID + i, Content: p.Content, Role: RoleMirror, PreferredRole: RoleMirror,
			Mode: ModeNotSynced, Status: StatusDown, Port: d.PortBase + n,
			Hostname: h.Hostname, Address: h.Address,
			DataDir: filepath.Join(d.DataDirs[n], instanceDirName(prefix, p.Content)),
		}})
	}
	return finishMirrors(t, added)
}

// mirrorHosts returns, for each primary, the index of the host its mirror
// goes to.
func mirrorHosts(primaries []Segment, hostIndex map[string]int, nhosts int, placement Placement) ([]int, error) {
	seen := make([]int, nhosts) // primaries met so far, per host
	targets := make([]int, len(primaries))
	for n, p := range primaries {
		i, ok := hostIndex[p.Hostname]
		if !ok {
			return nil, fmt.Errorf("%w: the primary of content %d is on %s, which is not among the segment hosts", ErrInvalid, p.Content, p.Hostname)
		}
		j := seen[i]
		seen[i]++
		switch placement {
		case PlacementGroup:
			targets[n] = (i + 1) % nhosts
		case PlacementSpread:
			targets[n] = (i + 1 + j) % nhosts
		}
	}
	if placement == PlacementSpread {
		if most := slices.Max(seen); nhosts <= most {
			return nil, fmt.Errorf("%w: spread mirroring needs more segment hosts (%d) than primaries per host (%d)", ErrInvalid, nhosts, most)
		}
	}
	return targets, nil
}

// finishMirrors checks the new mirrors against t and each other, and
// returns them as Segments.
func finishMirrors(t *Topology, added []newInstance) ([]Segment, error) {
	if err := checkConflicts(t.Segments, added); err != nil {
		return nil, err
	}
	next := t.Clone()
	out := make([]Segment, len(added))
	for i, n := range added {
		out[i] = n.Segment
	}
	next.Segments = append(next.Segments, out...)
	if err := Validate(next); err != nil {
		return nil, err
	}
	return out, nil
}

// unmirroredPrimaries returns the primaries of the segment contents that
// have no mirror, in content order.
func unmirroredPrimaries(t *Topology) []Segment {
	var out []Segment
	for _, c := range t.Contents() {
		if c == CoordinatorContent {
			continue
		}
		p, ok := t.Primary(c)
		if _, mirrored := t.Mirror(c); ok && !mirrored {
			out = append(out, p)
		}
	}
	return out
}

// primaryHosts returns the hosts of the segment primaries, in content
// order, each once.
func primaryHosts(t *Topology) []Host {
	var hosts []Host
	seen := map[string]bool{}
	for _, c := range t.Contents() {
		p, ok := t.Primary(c)
		if c == CoordinatorContent || !ok || seen[p.Hostname] {
			continue
		}
		seen[p.Hostname] = true
		hosts = append(hosts, Host{Hostname: p.Hostname, Address: p.Address})
	}
	return hosts
}

// withDefaultAddresses returns a copy of hosts with Address defaulting to
// Hostname.
func withDefaultAddresses(hosts []Host) []Host {
	out := slices.Clone(hosts)
	for i := range out {
		if out[i].Address == "" {
			out[i].Address = out[i].Hostname
		}
	}
	return out
}

// indexHosts maps each hostname to its index in hosts.
func indexHosts(hosts []Host) (map[string]int, error) {
	if len(hosts) == 0 {
		return nil, fmt.Errorf("%w: no segment hosts", ErrInvalid)
	}
	index := map[string]int{}
	for i, h := range hosts {
		if h.Hostname == "" {
			return nil, fmt.Errorf("%w: segment host %d has no hostname", ErrInvalid, i)
		}
		if j, dup := index[h.Hostname]; dup {
			return nil, fmt.Errorf("%w: segment host %s listed twice (%d and %d)", ErrInvalid, h.Hostname, j, i)
		}
		index[h.Hostname] = i
	}
	return index, nil
}
