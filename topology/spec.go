package topology

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DefaultSegPrefix names instance directories when the spec does not:
// gpseg-1 for the coordinator, gpseg0.. for the segments, as gpinitsystem.
const DefaultSegPrefix = "gpseg"

// Spec is the cluster spec, what gpinitsystem_config is to Greenplum: where
// the coordinator and the segments go. Datadir entries are parent
// directories; each instance gets <datadir>/<seg_prefix><content> below one.
type Spec struct {
	SegPrefix    string          `yaml:"seg_prefix" json:"seg_prefix"`
	Coordinator  CoordinatorSpec `yaml:"coordinator" json:"coordinator"`
	SegmentHosts []Host          `yaml:"segment_hosts" json:"segment_hosts"`
	Primary      PortDirs        `yaml:"primary" json:"primary"`
	// Mirror is optional: without it the cluster starts mirrorless and
	// mirrors come later from gpagent addmirrors -i.
	Mirror *MirrorSpec `yaml:"mirror,omitempty" json:"mirror,omitempty"`
}

// Host is one segment host. Address defaults to Hostname.
type Host struct {
	Hostname string `yaml:"hostname" json:"hostname"`
	Address  string `yaml:"address" json:"address"`
	// Primaries, if set, gives this host only the first Primaries of
	// primary.datadirs (default: one primary per entry, as on every
	// host). A lighter host in a cluster of uniform ones: gpbench scale
	// runs a few real hosts with one primary among simulated ones with
	// eight. With a mirror section, every host must hold the same number
	// (gpaddmirrors' placements assume it); mirrors of uneven hosts come
	// from addmirrors with a mirror file.
	Primaries int `yaml:"primaries,omitempty" json:"primaries,omitempty"`
}

// primaryDirs is how many of dirs (primary.datadirs) host h gets.
func (h Host) primaryDirs(dirs int) int {
	if h.Primaries > 0 && h.Primaries < dirs {
		return h.Primaries
	}
	return dirs
}

// CoordinatorSpec places the coordinator (content -1). Address defaults to
// Hostname; DataDir is the parent of <seg_prefix>-1.
type CoordinatorSpec struct {
	Hostname string `yaml:"hostname" json:"hostname"`
	Address  string `yaml:"address" json:"address"`
	Port     int    `yaml:"port" json:"port"`
	DataDir  string `yaml:"datadir" json:"datadir"`
	// Databases are the coordinator's databases that get the gp catalog
	// schema (gp.gp_segment_configuration, ...); default [postgres].
	Databases []string `yaml:"databases,omitempty" json:"databases,omitempty"`
}

// PortDirs gives, per host, the k-th instance port PortBase+k and parent
// directory DataDirs[k]; len(DataDirs) is the number of instances per host.
type PortDirs struct {
	PortBase int      `yaml:"port_base" json:"port_base"`
	DataDirs []string `yaml:"datadirs" json:"datadirs"`
}

// MirrorSpec is PortDirs for mirrors plus how they are spread over hosts.
type MirrorSpec struct {
	PortDirs  `yaml:",inline"`
	Placement string `yaml:"placement" json:"placement"` // "group" (default) or "spread"
}

// ParseSpec decodes a YAML spec strictly (an unknown or repeated field is
// an error: a misspelt key must not silently fall back to a default),
// fills in defaults and validates it. Errors name the field or line.
func ParseSpec(data []byte) (*Spec, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var s Spec
	if err := dec.Decode(&s); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, inputErrorf("", "spec is empty")
		}
		return nil, yamlError(err)
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		return nil, inputErrorf("", "spec holds more than one YAML document")
	}
	s = s.withDefaults()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// YAML writes the spec as ParseSpec reads it, so a program that builds a
// spec (the demo, the namespace tests) writes what the operator would,
// field names and all, rather than a hand-formatted copy of them.
func (s *Spec) YAML() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(s); err != nil {
		return nil, fmt.Errorf("encode spec: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode spec: %w", err)
	}
	return buf.Bytes(), nil
}

var yamlTypeSuffix = regexp.MustCompile(` in type [A-Za-z0-9_.*\[\]]+$`)

// yamlError keeps yaml's line-numbered messages, dropping its "yaml:"
// prefix and the Go type names operators cannot act on.
func yamlError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			msgs[i] = yamlTypeSuffix.ReplaceAllString(m, "")
		}
		return inputErrorf("", "%s", oneLine.Replace(strings.Join(msgs, "; ")))
	}
	return inputErrorf("", "%s", oneLine.Replace(strings.TrimPrefix(err.Error(), "yaml: ")))
}

// oneLine escapes the line breaks yaml quotes from the input, so an error
// stays the one-line reason the CLI prints.
var oneLine = strings.NewReplacer("\n", `\n`, "\r", `\r`)

// withDefaults returns a deep copy with the defaults filled in, so Validate
// and Segments can apply them without changing the caller's value.
func (s *Spec) withDefaults() Spec {
	d := *s
	if d.SegPrefix == "" {
		d.SegPrefix = DefaultSegPrefix
	}
	if d.Coordinator.Address == "" {
		d.Coordinator.Address = d.Coordinator.Hostname
	}
	d.SegmentHosts = withDefaultAddresses(s.SegmentHosts)
	d.Primary.DataDirs = slices.Clone(s.Primary.DataDirs)
	if s.Mirror != nil {
		m := *s.Mirror
		m.DataDirs = slices.Clone(s.Mirror.DataDirs)
		if m.Placement == "" {
			m.Placement = string(PlacementGroup)
		}
		d.Mirror = &m
	}
	return d
}

// MirrorDefaults is the mirror half of the spec as the topology keeps it
// for a later gpagent addmirrors (the zero value when there is none).
func (s *Spec) MirrorDefaults() MirrorDefaults {
	if s.Mirror == nil {
		return MirrorDefaults{}
	}
	d := s.withDefaults()
	return MirrorDefaults{PortBase: d.Mirror.PortBase, DataDirs: d.Mirror.DataDirs, Placement: d.Mirror.Placement}
}

// Validate checks the spec as given (defaults applied to a copy) and that
// the cluster it describes, with its mirrors if it has a mirror section,
// passes topology.Validate.
func (s *Spec) Validate() error {
	if s == nil {
		return inputErrorf("", "no spec")
	}
	d := s.withDefaults()
	_, err := d.layout(d.Mirror != nil)
	return err
}

// Segments lays the cluster out as gpinitsystem does: the coordinator is
// dbid 1, content -1; host i's k-th primary is content i*K+k on port
// primary.port_base+k, dbids 2.. in content order; mirrors, when asked
// for, are placed by PlaceMirrors and numbered after the primaries. Every
// instance starts up (u) and not in sync (n): a pair becomes s only once
// its mirror has caught up.
func (s *Spec) Segments(withMirrors bool) ([]Segment, error) {
	if s == nil {
		return nil, inputErrorf("", "no spec")
	}
	d := s.withDefaults()
	if withMirrors && d.Mirror == nil {
		return nil, inputErrorf("mirror", "not set: mirrors were asked for but the spec has no mirror section")
	}
	return d.layout(withMirrors)
}

func (s *Spec) layout(withMirrors bool) ([]Segment, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	c := s.Coordinator
	added := []newInstance{{where: "coordinator.datadir", Segment: Segment{
		DBID: 1, Content: CoordinatorContent, Role: RolePrimary, PreferredRole: RolePrimary,
		Mode: ModeNotSynced, Status: StatusUp, Port: c.Port, Hostname: c.Hostname, Address: c.Address,
		DataDir: filepath.Join(c.DataDir, instanceDirName(s.SegPrefix, CoordinatorContent)),
	}}}
	content := 0
	for _, h := range s.SegmentHosts {
		for k, dir := range s.Primary.DataDirs[:h.primaryDirs(len(s.Primary.DataDirs))] {
			added = append(added, newInstance{where: fmt.Sprintf("primary.datadirs[%d]", k), Segment: Segment{
				DBID: content + 2, Content: content, Role: RolePrimary, PreferredRole: RolePrimary,
				Mode: ModeNotSynced, Status: StatusUp, Port: s.Primary.PortBase + k,
				Hostname: h.Hostname, Address: h.Address,
				DataDir: filepath.Join(dir, instanceDirName(s.SegPrefix, content)),
			}})
			content++
		}
	}
	if err := checkConflicts(nil, added); err != nil {
		return nil, err
	}
	t := &Topology{SegPrefix: s.SegPrefix}
	for _, n := range added {
		t.Segments = append(t.Segments, n.Segment)
	}
	if withMirrors {
		mirrors, err := PlaceMirrors(t, s.SegmentHosts, Placement(s.Mirror.Placement), s.MirrorDefaults())
		if err != nil {
			return nil, inputErrorf("mirror", "%v", err)
		}
		for i := range mirrors {
			mirrors[i].Status = StatusUp // built by init itself, unlike gpaddmirrors
		}
		t.Segments = append(t.Segments, mirrors...)
	}
	// A backstop: the checks above should leave nothing for it to find.
	if err := Validate(t); err != nil {
		return nil, inputErrorf("", "%v", err)
	}
	return t.Segments, nil
}

// instanceDirName is the last element of an instance's datadir.
func instanceDirName(prefix string, content int) string {
	return prefix + strconv.Itoa(content)
}
