package topology

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// RecoverEntry is one line of a gprecoverseg -i file: the failed instance
// by failed_host|port|datadir, and optionally where to recover it
// (new_host|port|datadir, separated by a space).
type RecoverEntry struct {
	Line   int       `json:"line"`
	Failed Location  `json:"failed"`
	New    *Location `json:"new,omitempty"`
}

// ParseRecoverFile reads a gprecoverseg -i file. Hosts are given as an
// address or a hostname (Location.Address holds it until resolved).
// Blank lines and '#' comments are skipped; errors name the line.
func ParseRecoverFile(data []byte) ([]RecoverEntry, error) {
	var out []RecoverEntry
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		where := fmt.Sprintf("line %d", i+1)
		parts := strings.Fields(line)
		if len(parts) != 1 && len(parts) != 2 {
			return nil, inputErrorf(where, "expected failed_host|port|datadir [new_host|port|datadir], got %d space-separated parts", len(parts))
		}
		failed, err := parseLocation(where, "failed", parts[0])
		if err != nil {
			return nil, err
		}
		e := RecoverEntry{Line: i + 1, Failed: failed}
		if len(parts) == 2 {
			n, err := parseLocation(where, "new", parts[1])
			if err != nil {
				return nil, err
			}
			e.New = &n
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, inputErrorf("", "no recovery lines (only blank lines or comments)")
	}
	return out, nil
}

func parseLocation(where, which, field string) (Location, error) {
	f := strings.Split(field, "|")
	if len(f) != 3 {
		return Location{}, inputErrorf(where, "%s instance: expected host|port|datadir, got %d fields", which, len(f))
	}
	port, err := strconv.Atoi(f[1])
	if err != nil {
		return Location{}, inputErrorf(where, "%s port %q is not a number", which, f[1])
	}
	loc := Location{Address: f[0], Port: port, DataDir: filepath.Clean(f[2])}
	for _, err := range []error{checkName(which+" host", f[0]), checkPort(which+" port", port), checkDir(which+" datadir", f[2])} {
		if err != nil {
			return Location{}, inputErrorf(where, "%v", err)
		}
	}
	return loc, nil
}

// RecoveriesFromEntries matches each entry to a failed instance of t and
// checks it can be recovered where asked: errors name the line (unknown
// instance, not recoverable, target host unknown, target in use). An
// entry with a new location is a full recovery there; others take kind.
func RecoveriesFromEntries(t *Topology, hosts []Host, entries []RecoverEntry, kind RecoveryKind) ([]RecoveryRequest, error) {
	resolve := hostResolver(t, hosts)
	var out []RecoveryRequest
	var moved []newInstance
	seen := map[int]string{}
	for _, e := range entries {
		where := fmt.Sprintf("line %d", e.Line)
		host, err := resolve(e.Failed.Address)
		if err != nil {
			return nil, inputErrorf(where, "failed instance: %v", err)
		}
		var seg Segment
		found := false
		for _, s := range t.Segments {
			if s.Hostname == host && s.Port == e.Failed.Port && filepath.Clean(s.DataDir) == e.Failed.DataDir {
				seg, found = s, true
			}
		}
		if !found {
			return nil, inputErrorf(where, "no instance at %s|%d|%s", e.Failed.Address, e.Failed.Port, e.Failed.DataDir)
		}
		if other, dup := seen[seg.DBID]; dup {
			return nil, inputErrorf(where, "dbid %d listed twice (also %s)", seg.DBID, other)
		}
		seen[seg.DBID] = where
		if err := CanRecover(t, seg.DBID); err != nil {
			return nil, inputErrorf(where, "%s", strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": "))
		}
		req := RecoveryRequest{DBID: seg.DBID, Kind: kind}
		if n := e.New; n != nil {
			newHost, err := resolve(n.Address)
			if err != nil {
				return nil, inputErrorf(where, "new instance: %v", err)
			}
			req.Kind = RecoveryFull
			req.Move = &Location{Hostname: newHost, Address: n.Address, Port: n.Port, DataDir: n.DataDir}
			moved = append(moved, newInstance{where: where, Segment: Segment{DBID: seg.DBID, Content: seg.Content,
				Hostname: newHost, Address: n.Address, Port: n.Port, DataDir: n.DataDir}})
		}
		out = append(out, req)
	}
	if err := checkMoves(t, moved); err != nil {
		return nil, err
	}
	return out, nil
}

// checkMoves refuses a new location in use by another instance (the
// moved instance's own old place does not count) or that would leave a
// mirror on its primary's host:port.
func checkMoves(t *Topology, moved []newInstance) error {
	if len(moved) == 0 {
		return nil
	}
	var existing []Segment
	for _, s := range t.Segments {
		keep := true
		for _, m := range moved {
			if m.DBID == s.DBID {
				keep = false
			}
		}
		if keep {
			existing = append(existing, s)
		}
	}
	return checkConflicts(existing, moved)
}

// RecoveriesOnHost recovers every recoverable instance of t onto host
// (gprecoverseg -p): each keeps its port and data dir there. hosts gives
// the new host's address.
func RecoveriesOnHost(t *Topology, hosts []Host, host string, dbids []int) ([]RecoveryRequest, error) {
	resolve := hostResolver(t, hosts)
	hostname, err := resolve(host)
	if err != nil {
		return nil, inputErrorf("-p", "%v", err)
	}
	address := host
	for _, h := range hosts {
		if h.Hostname == hostname && h.Address != "" {
			address = h.Address
		}
	}
	if hosts == nil {
		for _, s := range t.Segments {
			if s.Hostname == hostname {
				address = s.Address
			}
		}
	}
	var out []RecoveryRequest
	var moved []newInstance
	for _, dbid := range dbids {
		s, _ := t.Segment(dbid)
		loc := Location{Hostname: hostname, Address: address, Port: s.Port, DataDir: s.DataDir}
		out = append(out, RecoveryRequest{DBID: dbid, Kind: RecoveryFull, Move: &loc})
		moved = append(moved, newInstance{where: fmt.Sprintf("dbid %d", dbid), Segment: Segment{DBID: dbid, Content: s.Content,
			Hostname: hostname, Address: address, Port: s.Port, DataDir: s.DataDir}})
	}
	if err := checkMoves(t, moved); err != nil {
		return nil, err
	}
	return out, nil
}

// RecoverableDBIDs lists every instance gprecoverseg would recover now.
func RecoverableDBIDs(t *Topology) []int {
	var out []int
	for _, s := range t.Segments {
		if s.Status == StatusDown && CanRecover(t, s.DBID) == nil {
			out = append(out, s.DBID)
		}
	}
	return out
}
