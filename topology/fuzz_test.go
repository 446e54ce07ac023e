package topology

import (
	"errors"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzParseSpec: no input panics; every error is an ErrInvalid on one
// line; a spec that parses lays out into a valid topology, with and
// without its mirrors, and survives a YAML round trip unchanged.
func FuzzParseSpec(f *testing.F) {
	f.Add([]byte(goodSpecYAML))
	f.Add([]byte(strings.Replace(goodSpecYAML, "port_base: 7000", "port_base: 7000\n  placement: spread", 1)))
	f.Add([]byte("coordinator: {hostname: h, port: 5432, datadir: /c}\nsegment_hosts: [{hostname: h}]\nprimary: {port_base: 6000, datadirs: [/p, /p]}\nmirror: {port_base: 7000, datadirs: [/m, /m]}\n"))
	f.Add([]byte("coordinator: {hostname: h, port: 6000, datadir: /c}\nsegment_hosts: [{hostname: h}]\nprimary: {port_base: 6000, datadirs: [/p]}\n"))
	f.Add([]byte("seg_prefix: x\nfoo: 1\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSpec(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q spans lines", err)
			}
			return
		}
		for _, withMirrors := range []bool{false, s.Mirror != nil} {
			segs, err := s.Segments(withMirrors)
			if err != nil {
				t.Fatalf("parsed spec, but Segments(%v): %v", withMirrors, err)
			}
			if err := Validate(&Topology{Segments: segs}); err != nil {
				t.Fatalf("parsed spec, but its layout: %v", err)
			}
			if err := checkConflicts(nil, asNew(segs)); err != nil {
				t.Fatalf("parsed spec, but its layout: %v", err)
			}
		}
		out, err := yaml.Marshal(s)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		again, err := ParseSpec(out)
		if err != nil {
			t.Fatalf("re-parse of\n%s: %v", out, err)
		}
		if !specEqual(s, again) {
			t.Fatalf("round trip changed the spec:\n%s", out)
		}
	})
}

// FuzzParseMirrorFile: no input panics; errors are ErrInvalid and name a
// line; entries that parse are well formed, and MirrorsFromEntries on a
// real cluster either refuses them or yields mirrors that keep it valid.
func FuzzParseMirrorFile(f *testing.F) {
	f.Add([]byte("0|sdw2|7000|/m/gpseg0\n1|sdw2|7001|/m/gpseg1\n2|sdw1|7000|/m/gpseg2\n3|sdw1-1|7001|/m/gpseg3\n"))
	f.Add([]byte("# c\n\nsdw2|7000|/m/gpseg0\nsdw2|7001|/m/gpseg1\r\n"))
	f.Add([]byte("0|sdw1|6000|/data/p0/gpseg0\n"))
	f.Add([]byte("0|sdw2|7000|/data/p0/gpseg2/x\n"))
	f.Add([]byte("x|y\n"))
	topo, _, _ := mirrorless(f, 2, 2)
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := ParseMirrorFile(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			if !strings.HasPrefix(err.Error(), "line ") && !strings.HasPrefix(err.Error(), "no mirror lines") {
				t.Fatalf("error %q names no line", err)
			}
			return
		}
		implicit := entries[0].Content == ContentNotGiven
		for i, e := range entries {
			if e.Line < 1 || (i > 0 && e.Line <= entries[i-1].Line) {
				t.Fatalf("entry %d: line %d out of order", i, e.Line)
			}
			if (e.Content == ContentNotGiven) != implicit || (!implicit && e.Content < 0) {
				t.Fatalf("entry %d: content %d", i, e.Content)
			}
			if e.Port < 1 || e.Port > 65535 || !strings.HasPrefix(e.DataDir, "/") || e.Address == "" {
				t.Fatalf("entry %d not well formed: %+v", i, e)
			}
		}
		before := snapshot(topo)
		mirrors, err := MirrorsFromEntries(topo, nil, entries)
		if snapshot(topo) != before {
			t.Fatal("MirrorsFromEntries changed its topology")
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		next := topo.Clone()
		next.Segments = append(next.Segments, mirrors...)
		if err := Validate(next); err != nil {
			t.Fatalf("mirrors from %q: %v", data, err)
		}
		if err := checkConflicts(nil, asNew(next.Segments)); err != nil {
			t.Fatalf("mirrors from %q: %v", data, err)
		}
	})
}
