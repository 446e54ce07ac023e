package topology

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// mirrorless builds, through the spec, a cluster of nhosts hosts with
// perHost primaries each and no mirrors, and its mirror defaults.
func mirrorless(t fatalfer, nhosts, perHost int) (*Topology, []Host, MirrorDefaults) {
	t.Helper()
	s := &Spec{
		Coordinator: CoordinatorSpec{Hostname: "cdw", Port: 5432, DataDir: "/data/coordinator"},
		Primary:     PortDirs{PortBase: 6000},
		Mirror:      &MirrorSpec{PortDirs: PortDirs{PortBase: 7000}},
	}
	for i := range nhosts {
		s.SegmentHosts = append(s.SegmentHosts, Host{Hostname: fmt.Sprintf("sdw%d", i+1), Address: fmt.Sprintf("sdw%d-1", i+1)})
	}
	for k := range perHost {
		s.Primary.DataDirs = append(s.Primary.DataDirs, fmt.Sprintf("/data/p%d", k))
		s.Mirror.DataDirs = append(s.Mirror.DataDirs, fmt.Sprintf("/data/m%d", k))
	}
	segs, err := s.Segments(false)
	if err != nil {
		t.Fatalf("Segments: %v", err)
	}
	return &Topology{ConfigVersion: 1, Segments: segs, SegPrefix: "gpseg"}, s.withDefaults().SegmentHosts, s.MirrorDefaults()
}

// fatalfer is what the helpers need of *testing.T and *rapid.T.
type fatalfer interface {
	Helper()
	Fatalf(format string, args ...any)
}

func snapshot(t *Topology) string {
	b, err := json.Marshal(t)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func hostIndexOf(hosts []Host, name string) int {
	for i, h := range hosts {
		if h.Hostname == name {
			return i
		}
	}
	return -1
}

// checkMirrors checks what every placement promises: one new mirror per
// unmirrored content, in content order with fresh dbids, role m, down, not
// in sync, never on its primary's host when there is more than one host,
// and a topology that still passes Validate.
func checkMirrors(t fatalfer, topo *Topology, hosts []Host, mirrors []Segment) {
	t.Helper()
	want := unmirroredPrimaries(topo)
	if len(mirrors) != len(want) {
		t.Fatalf("%d mirrors for %d unmirrored contents", len(mirrors), len(want))
	}
	for i, m := range mirrors {
		p := want[i]
		if m.Content != p.Content || m.DBID != topo.MaxDBID()+1+i {
			t.Fatalf("mirror %d is %s, want content %d dbid %d", i, m, p.Content, topo.MaxDBID()+1+i)
		}
		if m.Role != RoleMirror || m.PreferredRole != RoleMirror || m.Status != StatusDown || m.Mode != ModeNotSynced {
			t.Fatalf("mirror %s has role %s preferred %s status %s mode %s", m, m.Role, m.PreferredRole, m.Status, m.Mode)
		}
		if len(hosts) > 1 && m.Hostname == p.Hostname {
			t.Fatalf("mirror %s shares its primary's host", m)
		}
		if h := hostIndexOf(hosts, m.Hostname); h < 0 || hosts[h].Address != m.Address {
			t.Fatalf("mirror %s: host or address not from the host list", m)
		}
	}
	next := topo.Clone()
	next.Segments = append(next.Segments, mirrors...)
	if err := Validate(next); err != nil {
		t.Fatalf("topology with mirrors: %v", err)
	}
	if err := checkConflicts(nil, asNew(next.Segments)); err != nil {
		t.Fatalf("topology with mirrors: %v", err)
	}
}

func asNew(segs []Segment) []newInstance {
	out := make([]newInstance, len(segs))
	for i, s := range segs {
		out[i] = newInstance{Segment: s, where: s.String()}
	}
	return out
}

func perHostCounts(segs []Segment) map[string]int {
	n := map[string]int{}
	for _, s := range segs {
		n[s.Hostname]++
	}
	return n
}

func TestPlaceMirrors_Hosts(t *testing.T) {
	for _, placement := range []Placement{PlacementGroup, PlacementSpread} {
		for nhosts := 1; nhosts <= 4; nhosts++ {
			for perHost := 1; perHost <= 3; perHost++ {
				name := fmt.Sprintf("%s/%d hosts/%d per host", placement, nhosts, perHost)
				t.Run(name, func(t *testing.T) {
					topo, hosts, d := mirrorless(t, nhosts, perHost)
					before := snapshot(topo)
					mirrors, err := PlaceMirrors(topo, hosts, placement, d)
					if snapshot(topo) != before {
						t.Fatal("PlaceMirrors changed its topology")
					}
					if placement == PlacementSpread && nhosts <= perHost {
						if err == nil || !strings.Contains(err.Error(), "spread mirroring needs more segment hosts") {
							t.Fatalf("spread on %d hosts with %d per host: err = %v", nhosts, perHost, err)
						}
						return
					}
					if err != nil {
						t.Fatalf("PlaceMirrors: %v", err)
					}
					checkMirrors(t, topo, hosts, mirrors)
					for h, n := range perHostCounts(mirrors) {
						if n != perHost {
							t.Fatalf("host %s got %d mirrors, want %d", h, n, perHost)
						}
					}
					for _, m := range mirrors {
						p, _ := topo.Primary(m.Content)
						i, j := hostIndexOf(hosts, p.Hostname), m.Content%perHost
						want := (i + 1) % nhosts
						if placement == PlacementSpread {
							want = (i + 1 + j) % nhosts
						}
						if got := hostIndexOf(hosts, m.Hostname); got != want {
							t.Fatalf("mirror of content %d (host %d, #%d) on host %d, want %d", m.Content, i, j, got, want)
						}
					}
				})
			}
		}
	}
}

func TestPlaceMirrors_Errors(t *testing.T) {
	cases := []struct {
		name      string
		nhosts    int
		perHost   int
		hosts     func([]Host) []Host
		placement Placement
		defaults  func(*MirrorDefaults)
		topo      func(*Topology)
		want      string
	}{
		{name: "no mirror settings", defaults: func(d *MirrorDefaults) { *d = MirrorDefaults{} },
			want: "invalid topology: no mirror port base and datadirs known: give the mirror settings (port_base, datadirs) or a mirror file (-i)"},
		{name: "no mirror datadirs", defaults: func(d *MirrorDefaults) { d.DataDirs = nil }, want: "mirror file (-i)"},
		{name: "unknown placement", placement: "ring", want: `mirror placement "ring": use group or spread`},
		{name: "unknown placement in defaults", defaults: func(d *MirrorDefaults) { d.Placement = "ring" }, want: `mirror placement "ring"`},
		{name: "spread on one host", nhosts: 1, perHost: 1, placement: PlacementSpread, want: "spread mirroring needs more segment hosts (1) than primaries per host (1)"},
		{name: "spread from the defaults", nhosts: 2, defaults: func(d *MirrorDefaults) { d.Placement = "spread" }, want: "spread mirroring needs more segment hosts (2) than primaries per host (2)"},
		{name: "not enough datadirs", defaults: func(d *MirrorDefaults) { d.DataDirs = d.DataDirs[:1] }, want: "host sdw2 gets more than 1 mirrors, but only 1 mirror datadirs are set"},
		{name: "relative datadir", defaults: func(d *MirrorDefaults) { d.DataDirs[1] = "m" }, want: `mirror.datadirs[1]: "m" must be an absolute path`},
		{name: "ports past 65535", defaults: func(d *MirrorDefaults) { d.PortBase = 65535 }, want: "mirror.port_base: ports 65535..65536"},
		{name: "port of a primary", defaults: func(d *MirrorDefaults) { d.PortBase = 6001 },
			want: "mirror of content 0: port 6001 on sdw2 is also used by dbid 5 (content 3, sdw2:6001 /data/p1/gpseg3)"},
		{name: "one host, datadir of a primary", nhosts: 1, defaults: func(d *MirrorDefaults) { d.DataDirs = []string{"/data/p0", "/data/p1"} },
			want: "mirror of content 0: datadir /data/p0/gpseg0 on sdw1 is also used by dbid 2"},
		{name: "datadir inside a primary's", defaults: func(d *MirrorDefaults) { d.DataDirs[0] = "/data/p0/gpseg2" },
			want: "mirror of content 0: datadir /data/p0/gpseg2/gpseg0 on sdw2 lies inside the datadir of dbid 4"},
		{name: "two mirrors in one datadir", defaults: func(d *MirrorDefaults) { d.DataDirs[1] = "/data/m0/gpseg0" },
			want: "mirror of content 1: datadir /data/m0/gpseg0/gpseg1 on sdw2 lies inside the datadir of mirror of content 0"},
		{name: "primary host not listed", hosts: func(h []Host) []Host { return h[1:] }, want: "the primary of content 0 is on sdw1, which is not among the segment hosts"},
		{name: "host listed twice", hosts: func(h []Host) []Host { return append(h, h[0]) }, want: "segment host sdw1 listed twice (0 and 2)"},
		{name: "host without name", hosts: func(h []Host) []Host { return append(h, Host{}) }, want: "segment host 2 has no hostname"},
		{name: "every content mirrored", topo: func(t *Topology) {
			for _, p := range unmirroredPrimaries(t) {
				m := p
				m.DBID, m.Role, m.PreferredRole, m.Port = p.DBID+100, RoleMirror, RoleMirror, p.Port+1000
				m.DataDir += "m"
				t.Segments = append(t.Segments, m)
			}
		}, want: "every segment already has a mirror"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nhosts, perHost := tc.nhosts, tc.perHost
			if nhosts == 0 {
				nhosts = 2
			}
			if perHost == 0 {
				perHost = 2
			}
			topo, hosts, d := mirrorless(t, nhosts, perHost)
			if tc.hosts != nil {
				hosts = tc.hosts(hosts)
			}
			if tc.defaults != nil {
				tc.defaults(&d)
			}
			if tc.topo != nil {
				tc.topo(topo)
			}
			_, err := PlaceMirrors(topo, hosts, tc.placement, d)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("PlaceMirrors error = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestPlaceMirrors_HostsFromTopology(t *testing.T) {
	topo, hosts, d := mirrorless(t, 3, 2)
	explicit, err := PlaceMirrors(topo, hosts, PlacementSpread, d)
	if err != nil {
		t.Fatal(err)
	}
	derived, err := PlaceMirrors(topo, nil, PlacementSpread, d)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(explicit) != fmt.Sprint(derived) {
		t.Fatalf("hosts from the topology give\n%s\nthe spec's hosts give\n%s", segmentLines(derived), segmentLines(explicit))
	}
}

func TestPlaceMirrors_OnlyUnmirroredContents(t *testing.T) {
	topo, hosts, d := mirrorless(t, 2, 2)
	first, err := PlaceMirrors(topo, hosts, PlacementGroup, d)
	if err != nil {
		t.Fatal(err)
	}
	// Keep the mirror of content 1 only; the others are placed again.
	topo.Segments = append(topo.Segments, first[1])
	rest, err := PlaceMirrors(topo, hosts, PlacementGroup, MirrorDefaults{PortBase: 8000, DataDirs: []string{"/data/n0", "/data/n1"}})
	if err != nil {
		t.Fatal(err)
	}
	checkMirrors(t, topo, hosts, rest)
	for _, m := range rest {
		if m.Content == 1 {
			t.Fatalf("content 1 got a second mirror %s", m)
		}
	}
}

func TestPlaceMirrors_DoesNotChangeHosts(t *testing.T) {
	topo, _, d := mirrorless(t, 2, 1)
	hosts := []Host{{Hostname: "sdw1"}, {Hostname: "sdw2"}}
	mirrors, err := PlaceMirrors(topo, hosts, "", d)
	if err != nil {
		t.Fatal(err)
	}
	if hosts[0].Address != "" || mirrors[0].Address != "sdw2" {
		t.Fatalf("hosts after = %+v, mirror address %q", hosts, mirrors[0].Address)
	}
}

// TestPlaceMirrors_Property: for any number of hosts and primaries per
// host, both placements (spread where it applies) give one mirror per
// content off its primary's host, and a topology that passes Validate.
func TestPlaceMirrors_Property(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		nhosts := rapid.IntRange(1, 6).Draw(rt, "hosts")
		perHost := rapid.IntRange(1, 4).Draw(rt, "perHost")
		placements := []Placement{PlacementGroup}
		if nhosts > perHost {
			placements = append(placements, PlacementSpread)
		}
		placement := rapid.SampledFrom(placements).Draw(rt, "placement")
		topo, hosts, d := mirrorless(rt, nhosts, perHost)
		if rapid.Bool().Draw(rt, "hostsFromTopology") {
			hosts = nil
		}
		// Mirrors in the primaries' parent directories clash only when they
		// share their primaries' host.
		sameDirs := rapid.Bool().Draw(rt, "sameDirs")
		if sameDirs {
			d.DataDirs = nil
			for k := range perHost {
				d.DataDirs = append(d.DataDirs, fmt.Sprintf("/data/p%d", k))
			}
		}
		d.PortBase = rapid.IntRange(1024, 9000).Draw(rt, "mirrorPortBase")
		portsClash := d.PortBase < 6000+perHost && 6000 < d.PortBase+perHost
		before := snapshot(topo)
		mirrors, err := PlaceMirrors(topo, hosts, placement, d)
		if snapshot(topo) != before {
			rt.Fatalf("PlaceMirrors changed its topology")
		}
		if portsClash || (sameDirs && nhosts == 1) {
			if err == nil {
				rt.Fatalf("mirrors placed over primaries' ports or dirs: %v", mirrors)
			}
			return
		}
		if err != nil {
			rt.Fatalf("PlaceMirrors: %v", err)
		}
		if hosts == nil {
			hosts = primaryHosts(topo)
		}
		checkMirrors(rt, topo, hosts, mirrors)
		if placement == PlacementSpread {
			for h, n := range perHostCounts(mirrors) {
				if n != perHost {
					rt.Fatalf("spread: host %s got %d mirrors, want %d", h, n, perHost)
				}
			}
		}
	})
}
