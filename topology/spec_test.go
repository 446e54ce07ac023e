package topology

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const goodSpecYAML = `# two hosts, two primaries each, group mirrors
seg_prefix: gpseg
coordinator:
  hostname: cdw
  port: 5432
  datadir: /data/coordinator
segment_hosts:
  - hostname: sdw1
  - hostname: sdw2
    address: sdw2-1
primary:
  port_base: 6000
  datadirs: [/data/p1, /data/p2]
mirror:
  port_base: 7000
  datadirs: [/data/m1, /data/m2]
`

// goodSpec is goodSpecYAML as a value, defaults filled in.
func goodSpec() *Spec {
	return &Spec{
		SegPrefix:    "gpseg",
		Coordinator:  CoordinatorSpec{Hostname: "cdw", Address: "cdw", Port: 5432, DataDir: "/data/coordinator"},
		SegmentHosts: []Host{{Hostname: "sdw1", Address: "sdw1"}, {Hostname: "sdw2", Address: "sdw2-1"}},
		Primary:      PortDirs{PortBase: 6000, DataDirs: []string{"/data/p1", "/data/p2"}},
		Mirror:       &MirrorSpec{PortDirs: PortDirs{PortBase: 7000, DataDirs: []string{"/data/m1", "/data/m2"}}, Placement: "group"},
	}
}

func TestParseSpec_Good(t *testing.T) {
	got, err := ParseSpec([]byte(goodSpecYAML))
	if err != nil {
		t.Fatalf("ParseSpec: %v", err)
	}
	want := goodSpec()
	if !specEqual(got, want) {
		t.Fatalf("ParseSpec =\n%+v\nwant\n%+v", got, want)
	}
}

// What Spec.YAML writes, ParseSpec reads back as the same spec, with and
// without a mirror section.
func TestSpecYAML_RoundTrip(t *testing.T) {
	mirrorless := goodSpec()
	mirrorless.Mirror = nil
	for name, want := range map[string]*Spec{"mirrored": goodSpec(), "mirrorless": mirrorless} {
		t.Run(name, func(t *testing.T) {
			data, err := want.YAML()
			if err != nil {
				t.Fatalf("YAML: %v", err)
			}
			got, err := ParseSpec(data)
			if err != nil {
				t.Fatalf("ParseSpec of\n%s: %v", data, err)
			}
			if !specEqual(got, want) {
				t.Fatalf("round trip of\n%s\n= %+v, want %+v", data, got, want)
			}
		})
	}
}

func TestParseSpec_Defaults(t *testing.T) {
	got, err := ParseSpec([]byte(`
coordinator: {hostname: cdw, port: 5432, datadir: /c}
segment_hosts: [{hostname: sdw1}]
primary: {port_base: 6000, datadirs: [/p]}
mirror: {port_base: 7000, datadirs: [/m]}
`))
	if err != nil {
		t.Fatalf("ParseSpec: %v", err)
	}
	if got.SegPrefix != "gpseg" || got.Coordinator.Address != "cdw" || got.SegmentHosts[0].Address != "sdw1" || got.Mirror.Placement != "group" {
		t.Fatalf("defaults not filled in: %+v, mirror %+v", got, got.Mirror)
	}
}

func TestParseSpec_Errors(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		want string // prefix of the error
	}{
		{"empty", "", "spec is empty"},
		{"only comments", "# nothing\n", "spec is empty"},
		{"unknown top-level field", goodSpecYAML + "foo: 1\n", "line 17: field foo not found"},
		{"unknown nested field", strings.Replace(goodSpecYAML, "port_base: 6000", "porta_base: 6000", 1), "line 12: field porta_base not found"},
		{"wrong type", strings.Replace(goodSpecYAML, "port: 5432", "port: abc", 1), "line 5: cannot unmarshal !!str `abc` into int"},
		{"repeated key", goodSpecYAML + "seg_prefix: x\n", "line 17: mapping key \"seg_prefix\" already defined at line 2"},
		{"two documents", goodSpecYAML + "---\nseg_prefix: x\n", "spec holds more than one YAML document"},
		{"syntax", "coordinator: [", "line 1: did not find expected node content"},
		{"not a mapping", "- a\n", "line 1: cannot unmarshal !!seq into topology.Spec"},
		{"validation runs", strings.Replace(goodSpecYAML, "port_base: 6000", "port_base: 0", 1), "primary.port_base: must be 1..65535, got 0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSpec([]byte(tc.yaml))
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("ParseSpec error = %v, want prefix %q", err, tc.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q spans lines", err)
			}
		})
	}
}

// TestSpecValidate_NamesField checks that every validation error starts
// with the field to fix, through Validate and through ParseSpec.
func TestSpecValidate_NamesField(t *testing.T) {
	cases := []struct {
		name   string
		change func(s *Spec)
		want   string
	}{
		{"seg_prefix with slash", func(s *Spec) { s.SegPrefix = "a/b" }, "seg_prefix: "},
		{"coordinator without hostname", func(s *Spec) { s.Coordinator.Hostname, s.Coordinator.Address = "", "" }, "coordinator.hostname: must not be empty"},
		{"coordinator address with space", func(s *Spec) { s.Coordinator.Address = "c dw" }, "coordinator.address: "},
		{"coordinator port 0", func(s *Spec) { s.Coordinator.Port = 0 }, "coordinator.port: must be 1..65535, got 0"},
		{"coordinator port too big", func(s *Spec) { s.Coordinator.Port = 70000 }, "coordinator.port: must be 1..65535, got 70000"},
		{"coordinator datadir relative", func(s *Spec) { s.Coordinator.DataDir = "data" }, "coordinator.datadir: \"data\" must be an absolute path"},
		{"no segment hosts", func(s *Spec) { s.SegmentHosts = nil }, "segment_hosts: at least one segment host is needed"},
		{"host without hostname", func(s *Spec) { s.SegmentHosts[1] = Host{} }, "segment_hosts[1].hostname: must not be empty"},
		{"host with pipe", func(s *Spec) { s.SegmentHosts[1].Address = "a|b" }, "segment_hosts[1].address: "},
		{"duplicate hostname", func(s *Spec) { s.SegmentHosts[1] = Host{Hostname: "sdw1"} }, "segment_hosts[1].hostname: \"sdw1\" already names segment_hosts[0]"},
		{"address names another host", func(s *Spec) { s.SegmentHosts[1].Address = "sdw1" }, "segment_hosts[1].address: \"sdw1\" already names segment_hosts[0]"},
		{"primary port_base 0", func(s *Spec) { s.Primary.PortBase = 0 }, "primary.port_base: must be 1..65535"},
		{"primary ports past 65535", func(s *Spec) { s.Primary.PortBase = 65535 }, "primary.port_base: ports 65535..65536 for 2 datadirs go past 65535"},
		{"primary without datadirs", func(s *Spec) { s.Primary.DataDirs = nil }, "primary.datadirs: at least one datadir is needed"},
		{"primary datadir relative", func(s *Spec) { s.Primary.DataDirs[1] = "p2" }, "primary.datadirs[1]: \"p2\" must be an absolute path"},
		{"primary datadir inside another", func(s *Spec) { s.Primary.DataDirs[1] = "/data/p1/gpseg0" }, "primary.datadirs[1]: datadir /data/p1/gpseg0/gpseg1 on sdw1 lies inside the datadir of primary.datadirs[0]"},
		{"mirror port_base 0", func(s *Spec) { s.Mirror.PortBase = 0 }, "mirror.port_base: must be 1..65535"},
		{"mirror datadir relative", func(s *Spec) { s.Mirror.DataDirs[0] = "m" }, "mirror.datadirs[0]: \"m\" must be an absolute path"},
		{"mirror datadirs count", func(s *Spec) { s.Mirror.DataDirs = s.Mirror.DataDirs[:1] }, "mirror.datadirs: has 1 entries, primary.datadirs has 2"},
		{"unknown placement", func(s *Spec) { s.Mirror.Placement = "ring" }, "mirror.placement: \"ring\": use group or spread"},
		{"spread on too few hosts", func(s *Spec) { s.Mirror.Placement = "spread" }, "mirror.placement: spread needs more segment hosts (2) than primaries per host (2)"},
		{"mirror ports overlap primary ports", func(s *Spec) { s.Mirror.PortBase = 6001 }, "mirror.port_base: mirror ports 6001..6002 overlap primary ports 6000..6001"},
		{"coordinator port among primaries", func(s *Spec) {
			s.Coordinator.Hostname, s.Coordinator.Address, s.Coordinator.Port = "sdw1", "sdw1", 6001
		}, "coordinator.port: 6001 is in the primary ports 6000..6001 of segment host sdw1"},
		{"coordinator port among mirrors", func(s *Spec) { s.Coordinator.Hostname, s.Coordinator.Address, s.Coordinator.Port = "sdw2", "", 7000 }, "coordinator.port: 7000 is in the mirror ports 7000..7001 of segment host sdw2"},
		{"coordinator hostname differs on a segment host", func(s *Spec) { s.Coordinator.Address = "sdw2-1" }, "coordinator.hostname: \"cdw\", but the coordinator shares a name with segment_hosts[1]"},
		{"coordinator datadir holds a primary", func(s *Spec) {
			s.Coordinator.Hostname, s.Coordinator.Address, s.Coordinator.DataDir = "sdw1", "", "/data"
			s.Primary.DataDirs[0] = "/data/gpseg-1"
		}, "primary.datadirs[0]: datadir /data/gpseg-1/gpseg0 on sdw1 lies inside the datadir of coordinator.datadir"},
		{"one host: mirror dirs are primary dirs", func(s *Spec) {
			s.SegmentHosts = s.SegmentHosts[:1]
			s.Mirror.DataDirs = s.Primary.DataDirs
		}, "mirror: mirror of content 0: datadir /data/p1/gpseg0 on sdw1 is also used by dbid 2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := goodSpec()
			tc.change(s)
			err := s.Validate()
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("Validate error = %v, want prefix %q", err, tc.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			data, merr := yaml.Marshal(s)
			if merr != nil {
				t.Fatal(merr)
			}
			if _, perr := ParseSpec(data); perr == nil || perr.Error() != err.Error() {
				t.Fatalf("ParseSpec error = %v, want %v", perr, err)
			}
		})
	}
}

func TestSpecValidate_DoesNotChangeSpec(t *testing.T) {
	s := &Spec{
		Coordinator:  CoordinatorSpec{Hostname: "cdw", Port: 5432, DataDir: "/c"},
		SegmentHosts: []Host{{Hostname: "sdw1"}},
		Primary:      PortDirs{PortBase: 6000, DataDirs: []string{"/p"}},
		Mirror:       &MirrorSpec{PortDirs: PortDirs{PortBase: 7000, DataDirs: []string{"/m"}}},
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Segments(true); err != nil {
		t.Fatal(err)
	}
	if s.SegPrefix != "" || s.Coordinator.Address != "" || s.SegmentHosts[0].Address != "" || s.Mirror.Placement != "" {
		t.Fatalf("Validate or Segments filled defaults into the caller's spec: %+v", s)
	}
}

func seg(dbid, content int, role Role, port int, host, addr, dir string) Segment {
	return Segment{DBID: dbid, Content: content, Role: role, PreferredRole: role, Mode: ModeNotSynced,
		Status: StatusUp, Port: port, Hostname: host, Address: addr, DataDir: dir}
}

func TestSpecSegments_Layout(t *testing.T) {
	primaries := []Segment{
		seg(1, -1, RolePrimary, 5432, "cdw", "cdw", "/data/coordinator/gpseg-1"),
		seg(2, 0, RolePrimary, 6000, "sdw1", "sdw1", "/data/p1/gpseg0"),
		seg(3, 1, RolePrimary, 6001, "sdw1", "sdw1", "/data/p2/gpseg1"),
		seg(4, 2, RolePrimary, 6000, "sdw2", "sdw2-1", "/data/p1/gpseg2"),
		seg(5, 3, RolePrimary, 6001, "sdw2", "sdw2-1", "/data/p2/gpseg3"),
	}
	groupMirrors := []Segment{
		seg(6, 0, RoleMirror, 7000, "sdw2", "sdw2-1", "/data/m1/gpseg0"),
		seg(7, 1, RoleMirror, 7001, "sdw2", "sdw2-1", "/data/m2/gpseg1"),
		seg(8, 2, RoleMirror, 7000, "sdw1", "sdw1", "/data/m1/gpseg2"),
		seg(9, 3, RoleMirror, 7001, "sdw1", "sdw1", "/data/m2/gpseg3"),
	}
	threeHosts := func(s *Spec) {
		s.SegPrefix = "demo"
		s.SegmentHosts = append(s.SegmentHosts, Host{Hostname: "sdw3", Address: "sdw3"})
		s.Mirror.Placement = "spread"
	}
	spread := []Segment{
		seg(1, -1, RolePrimary, 5432, "cdw", "cdw", "/data/coordinator/demo-1"),
		seg(2, 0, RolePrimary, 6000, "sdw1", "sdw1", "/data/p1/demo0"),
		seg(3, 1, RolePrimary, 6001, "sdw1", "sdw1", "/data/p2/demo1"),
		seg(4, 2, RolePrimary, 6000, "sdw2", "sdw2-1", "/data/p1/demo2"),
		seg(5, 3, RolePrimary, 6001, "sdw2", "sdw2-1", "/data/p2/demo3"),
		seg(6, 4, RolePrimary, 6000, "sdw3", "sdw3", "/data/p1/demo4"),
		seg(7, 5, RolePrimary, 6001, "sdw3", "sdw3", "/data/p2/demo5"),
		// host i's j-th primary goes to host i+1+j; each host numbers its
		// mirrors in content order.
		seg(8, 0, RoleMirror, 7000, "sdw2", "sdw2-1", "/data/m1/demo0"),
		seg(9, 1, RoleMirror, 7000, "sdw3", "sdw3", "/data/m1/demo1"),
		seg(10, 2, RoleMirror, 7001, "sdw3", "sdw3", "/data/m2/demo2"),
		seg(11, 3, RoleMirror, 7000, "sdw1", "sdw1", "/data/m1/demo3"),
		seg(12, 4, RoleMirror, 7001, "sdw1", "sdw1", "/data/m2/demo4"),
		seg(13, 5, RoleMirror, 7001, "sdw2", "sdw2-1", "/data/m2/demo5"),
	}
	cases := []struct {
		name        string
		change      func(s *Spec)
		withMirrors bool
		want        []Segment
	}{
		{"no mirrors", func(*Spec) {}, false, primaries},
		{"group mirrors", func(*Spec) {}, true, append(slices.Clone(primaries), groupMirrors...)},
		{"spread mirrors on three hosts", threeHosts, true, spread},
		{"one host, mirrors beside their primaries", func(s *Spec) { s.SegmentHosts = s.SegmentHosts[:1] }, true, []Segment{
			primaries[0], primaries[1], primaries[2],
			seg(4, 0, RoleMirror, 7000, "sdw1", "sdw1", "/data/m1/gpseg0"),
			seg(5, 1, RoleMirror, 7001, "sdw1", "sdw1", "/data/m2/gpseg1"),
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := goodSpec()
			tc.change(s)
			got, err := s.Segments(tc.withMirrors)
			if err != nil {
				t.Fatalf("Segments: %v", err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Segments =\n%s\nwant\n%s", segmentLines(got), segmentLines(tc.want))
			}
		})
	}
}

func TestSpecSegments_MirrorsWithoutMirrorSection(t *testing.T) {
	s := goodSpec()
	s.Mirror = nil
	if _, err := s.Segments(true); err == nil || !strings.HasPrefix(err.Error(), "mirror: not set") {
		t.Fatalf("Segments(true) without a mirror section: err = %v", err)
	}
	if _, err := s.Segments(false); err != nil {
		t.Fatalf("Segments(false): %v", err)
	}
}

func TestSpecMirrorDefaults(t *testing.T) {
	s := goodSpec()
	s.Mirror.Placement = ""
	d := s.MirrorDefaults()
	if d.PortBase != 7000 || !slices.Equal(d.DataDirs, []string{"/data/m1", "/data/m2"}) || d.Placement != "group" {
		t.Fatalf("MirrorDefaults = %+v", d)
	}
	d.DataDirs[0] = "/elsewhere"
	if s.Mirror.DataDirs[0] != "/data/m1" {
		t.Fatal("MirrorDefaults shares its datadirs with the spec")
	}
	s.Mirror = nil
	if d := s.MirrorDefaults(); d.PortBase != 0 || d.DataDirs != nil {
		t.Fatalf("MirrorDefaults without mirror = %+v", d)
	}
}

func specEqual(a, b *Spec) bool {
	x, _ := yaml.Marshal(a)
	y, _ := yaml.Marshal(b)
	return string(x) == string(y)
}

func segmentLines(segs []Segment) string {
	var b strings.Builder
	for _, s := range segs {
		b.WriteString("  " + s.String() + " " + string(s.Role) + string(s.PreferredRole) + string(s.Mode) + string(s.Status) + " " + s.Address + "\n")
	}
	return b.String()
}

// A host may hold fewer primaries than primary.datadirs (gpbench scale's
// light real hosts among simulated ones): contents stay numbered in host
// order without gaps, and an uneven cluster is refused with a mirror
// section, whose placements assume even hosts.
func TestSpecSegments_HostPrimaries(t *testing.T) {
	s := goodSpec()
	s.Mirror = nil
	s.SegmentHosts[0].Primaries = 1
	got, err := s.Segments(false)
	if err != nil {
		t.Fatalf("Segments: %v", err)
	}
	want := []Segment{
		seg(1, -1, RolePrimary, 5432, "cdw", "cdw", "/data/coordinator/gpseg-1"),
		seg(2, 0, RolePrimary, 6000, "sdw1", "sdw1", "/data/p1/gpseg0"),
		seg(3, 1, RolePrimary, 6000, "sdw2", "sdw2-1", "/data/p1/gpseg1"),
		seg(4, 2, RolePrimary, 6001, "sdw2", "sdw2-1", "/data/p2/gpseg2"),
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Segments =\n%s\nwant\n%s", segmentLines(got), segmentLines(want))
	}

	even := goodSpec()
	even.SegmentHosts[0].Primaries, even.SegmentHosts[1].Primaries = 1, 1
	if got, err := even.Segments(true); err != nil || len(got) != 5 {
		t.Fatalf("one primary on each host, group mirrors: %d segments, err %v; want 5", len(got), err)
	}

	for _, tc := range []struct {
		name   string
		change func(s *Spec)
		want   string
	}{
		{"more than datadirs", func(s *Spec) { s.Mirror = nil; s.SegmentHosts[1].Primaries = 3 }, "segment_hosts[1].primaries: 3: want 1 to 2"},
		{"negative", func(s *Spec) { s.SegmentHosts[0].Primaries = -1 }, "segment_hosts[0].primaries: -1"},
		{"uneven with mirrors", func(s *Spec) { s.SegmentHosts[1].Primaries = 1 }, "segment_hosts[1].primaries: 1, but segment_hosts[0] has 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := goodSpec()
			tc.change(s)
			err := s.Validate()
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want prefix %q", err, tc.want)
			}
		})
	}
}
