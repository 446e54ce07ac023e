package topology

import (
	"cmp"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ContentNotGiven is MirrorEntry.Content for an address|port|datadir line,
// whose content is its position among the file's lines.
const ContentNotGiven = -2

// MirrorEntry is one line of a gpaddmirrors -i file. DataDir is the
// instance's own directory, not a parent.
type MirrorEntry struct {
	Line    int    `json:"line"`
	Content int    `json:"content"`
	Address string `json:"address"`
	Port    int    `json:"port"`
	DataDir string `json:"datadir"`
}

// ParseMirrorFile reads a gpaddmirrors -i file: lines
// content|address|port|datadir (Greenplum 7) or address|port|datadir (in
// content order 0..N-1), not mixed; blank lines and lines starting with
// '#' are skipped. Errors name the line.
func ParseMirrorFile(data []byte) ([]MirrorEntry, error) {
	var out []MirrorEntry
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		e, err := parseMirrorLine(i+1, line)
		if err != nil {
			return nil, err
		}
		if len(out) > 0 && (e.Content == ContentNotGiven) != (out[0].Content == ContentNotGiven) {
			return nil, inputErrorf(fmt.Sprintf("line %d", e.Line),
				"has %s fields, line %d has %s: use one format for the whole file",
				formatOf(e), out[0].Line, formatOf(out[0]))
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, inputErrorf("", "no mirror lines (only blank lines or comments)")
	}
	return out, nil
}

func formatOf(e MirrorEntry) string {
	if e.Content == ContentNotGiven {
		return "address|port|datadir"
	}
	return "content|address|port|datadir"
}

func parseMirrorLine(n int, line string) (MirrorEntry, error) {
	where := fmt.Sprintf("line %d", n)
	f := strings.Split(line, "|")
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	e := MirrorEntry{Line: n, Content: ContentNotGiven}
	switch len(f) {
	case 4:
		c, err := strconv.Atoi(f[0])
		if err != nil {
			return e, inputErrorf(where, "content %q is not a number", f[0])
		}
		if c < 0 {
			return e, inputErrorf(where, "content %d: only segments (content 0 and up) take mirrors here", c)
		}
		e.Content, f = c, f[1:]
	case 3:
	default:
		return e, inputErrorf(where, "expected content|address|port|datadir or address|port|datadir, got %d fields", len(f))
	}
	port, err := strconv.Atoi(f[1])
	if err != nil {
		return e, inputErrorf(where, "port %q is not a number", f[1])
	}
	e.Address, e.Port, e.DataDir = f[0], port, f[2]
	return e, checkEntry(where, e)
}

// checkEntry checks one entry's own fields; MirrorsFromEntries checks it
// against the cluster.
func checkEntry(where string, e MirrorEntry) error {
	if e.Content < 0 && e.Content != ContentNotGiven {
		return inputErrorf(where, "content %d: only segments (content 0 and up) take mirrors here", e.Content)
	}
	for _, err := range []error{checkName("address", e.Address), checkPort("port", e.Port), checkDir("datadir", e.DataDir)} {
		if err != nil {
			return inputErrorf(where, "%v", err)
		}
	}
	return nil
}

// MirrorsFromEntries turns mirror file entries into new mirrors of t, as
// PlaceMirrors would return them (role m, down, not in sync, dbids from
// t.MaxDBID()+1 in content order). Each address is resolved to a hostname
// through hosts (an entry may give a host's address or its hostname); nil
// hosts means the hosts of t's segments. An entry may put a mirror on its
// primary's host, as gpaddmirrors allows, but never on a host:port or
// datadir in use. Errors name the entry's line. t is not changed.
func MirrorsFromEntries(t *Topology, hosts []Host, entries []MirrorEntry) ([]Segment, error) {
	if t == nil {
		t = &Topology{}
	}
	if len(entries) == 0 {
		return nil, inputErrorf("", "no mirror entries")
	}
	resolve := hostResolver(t, hosts)
	implicit := entries[0].Content == ContentNotGiven
	listed := map[int]string{}
	added := make([]newInstance, 0, len(entries))
	for i, e := range entries {
		where := fmt.Sprintf("line %d", e.Line)
		if e.Line <= 0 {
			where = fmt.Sprintf("entry %d", i+1)
		}
		if err := checkEntry(where, e); err != nil {
			return nil, err
		}
		content := e.Content
		if implicit != (content == ContentNotGiven) {
			return nil, inputErrorf(where, "mixes entries with and without a content")
		}
		if implicit {
			content = i
		}
		if other, dup := listed[content]; dup {
			return nil, inputErrorf(where, "content %d listed twice (also %s)", content, other)
		}
		listed[content] = where
		if _, ok := t.Primary(content); !ok {
			return nil, inputErrorf(where, "content %d is not a segment of the cluster", content)
		}
		if m, ok := t.Mirror(content); ok {
			return nil, inputErrorf(where, "content %d already has a mirror, %s", content, m)
		}
		hostname, err := resolve(e.Address)
		if err != nil {
			return nil, inputErrorf(where, "%v", err)
		}
		added = append(added, newInstance{where: where, Segment: Segment{
			Content: content, Role: RoleMirror, PreferredRole: RoleMirror,
			Mode: ModeNotSynced, Status: StatusDown, Port: e.Port,
			Hostname: hostname, Address: e.Address, DataDir: filepath.Clean(e.DataDir),
		}})
	}
	slices.SortStableFunc(added, func(a, b newInstance) int { return cmp.Compare(a.Content, b.Content) })
	first := t.MaxDBID() + 1
	for i := range added {
		added[i].DBID = first + i
	}
	return finishMirrors(t, added)
}

// hostResolver maps a host's address or hostname to its hostname. A name
// that two hosts share cannot be resolved.
func hostResolver(t *Topology, hosts []Host) func(string) (string, error) {
	if hosts == nil {
		for _, s := range t.Segments {
			if s.Content != CoordinatorContent {
				hosts = append(hosts, Host{Hostname: s.Hostname, Address: s.Address})
			}
		}
	}
	names := map[string]string{}
	ambiguous := map[string]bool{}
	for _, h := range hosts {
		for _, name := range []string{h.Hostname, h.Address} {
			if name == "" {
				continue
			}
			if prev, ok := names[name]; ok && prev != h.Hostname {
				ambiguous[name] = true
			}
			names[name] = h.Hostname
		}
	}
	return func(address string) (string, error) {
		if ambiguous[address] {
			return "", fmt.Errorf("%q names more than one segment host", address)
		}
		hostname, ok := names[address]
		if !ok {
			return "", fmt.Errorf("unknown host %q: not the hostname or address of a segment host", address)
		}
		return hostname, nil
	}
}
