package topology

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
)

// ErrInvalid marks a topology (or a change to one) that breaks a structural
// rule. Callers test for it with errors.Is.
var ErrInvalid = errors.New("invalid topology")

// Validate checks the structural rules every committed topology keeps:
// unique dbids, at most one primary and one mirror per content, roles and
// letters known, and no two instances on one host:port or one host's datadir.
func Validate(t *Topology) error {
	// Every replica validates the whole topology on every Apply: keyed
	// by structs and sized up front, not by a Sprintf'd string per
	// segment into growing maps (36 % of a 47-agent process's CPU in
	// gpbench scale before).
	n := len(t.Segments)
	type hostPort struct {
		host string
		port int
	}
	type hostDir struct{ host, dir string }
	dbids := make(map[int]bool, n)
	ports := make(map[hostPort]int, n)
	dirs := make(map[hostDir]int, n)
	roles := newContentRoles(n)
	for _, s := range t.Segments {
		if err := validateSegment(s); err != nil {
			return err
		}
		if dbids[s.DBID] {
			return fmt.Errorf("%w: dbid %d used twice", ErrInvalid, s.DBID)
		}
		dbids[s.DBID] = true
		hp := hostPort{s.Hostname, s.Port}
		if other, ok := ports[hp]; ok {
			return fmt.Errorf("%w: dbid %d and dbid %d both use port %s", ErrInvalid, other, s.DBID, fmt.Sprintf("%s:%d", s.Hostname, s.Port))
		}
		ports[hp] = s.DBID
		hd := hostDir{s.Hostname, filepath.Clean(s.DataDir)}
		if other, ok := dirs[hd]; ok {
			return fmt.Errorf("%w: dbid %d and dbid %d both use datadir %s", ErrInvalid, other, s.DBID, hd.host+":"+hd.dir)
		}
		dirs[hd] = s.DBID
		if err := roles.add(s); err != nil {
			return err
		}
	}
	return roles.check()
}

// contentRoles checks that a content has at most one primary and one
// mirror, and no mirror without a primary.
type contentRoles struct{ primaries, mirrors map[int]int }

func newContentRoles(n int) contentRoles {
	return contentRoles{primaries: make(map[int]int, n), mirrors: make(map[int]int, n)}
}

func (r contentRoles) add(s Segment) error {
	switch s.Role {
	case RolePrimary:
		if other, ok := r.primaries[s.Content]; ok {
			return fmt.Errorf("%w: content %d has two primaries (dbid %d and dbid %d)", ErrInvalid, s.Content, other, s.DBID)
		}
		r.primaries[s.Content] = s.DBID
	case RoleMirror:
		if other, ok := r.mirrors[s.Content]; ok {
			return fmt.Errorf("%w: content %d has two mirrors (dbid %d and dbid %d)", ErrInvalid, s.Content, other, s.DBID)
		}
		r.mirrors[s.Content] = s.DBID
	}
	return nil
}

// check runs in content order, so every replica rejects a command with
// the same message (map order is random).
func (r contentRoles) check() error {
	for _, c := range slices.Sorted(maps.Keys(r.mirrors)) {
		if _, ok := r.primaries[c]; !ok {
			return fmt.Errorf("%w: content %d has a mirror (dbid %d) and no primary", ErrInvalid, c, r.mirrors[c])
		}
	}
	return nil
}

func validateSegment(s Segment) error {
	switch {
	case s.DBID <= 0:
		return fmt.Errorf("%w: dbid %d: must be positive", ErrInvalid, s.DBID)
	case s.Content < CoordinatorContent:
		return fmt.Errorf("%w: dbid %d: content %d below -1", ErrInvalid, s.DBID, s.Content)
	case s.Role != RolePrimary && s.Role != RoleMirror:
		return fmt.Errorf("%w: dbid %d: role %q is not p or m", ErrInvalid, s.DBID, s.Role)
	case s.PreferredRole != RolePrimary && s.PreferredRole != RoleMirror:
		return fmt.Errorf("%w: dbid %d: preferred_role %q is not p or m", ErrInvalid, s.DBID, s.PreferredRole)
	case s.Mode != ModeSynced && s.Mode != ModeNotSynced:
		return fmt.Errorf("%w: dbid %d: mode %q is not s or n", ErrInvalid, s.DBID, s.Mode)
	case s.Status != StatusUp && s.Status != StatusDown:
		return fmt.Errorf("%w: dbid %d: status %q is not u or d", ErrInvalid, s.DBID, s.Status)
	case s.Port < 1 || s.Port > 65535:
		return fmt.Errorf("%w: dbid %d: port %d out of range", ErrInvalid, s.DBID, s.Port)
	case s.Hostname == "":
		return fmt.Errorf("%w: dbid %d: empty hostname", ErrInvalid, s.DBID)
	case s.Address == "":
		return fmt.Errorf("%w: dbid %d: empty address", ErrInvalid, s.DBID)
	case !filepath.IsAbs(s.DataDir):
		return fmt.Errorf("%w: dbid %d: datadir %q is not an absolute path", ErrInvalid, s.DBID, s.DataDir)
	}
	return nil
}

// updatedContents are the contents of the segments updates names (the
// dbids are known to exist: applyUpdateSegments checked them).
func updatedContents(t *Topology, updates []SegmentUpdate) map[int]bool {
	dbids := make(map[int]bool, len(updates))
	for _, u := range updates {
		dbids[u.DBID] = true
	}
	out := map[int]bool{}
	for _, s := range t.Segments {
		if dbids[s.DBID] {
			out[s.Content] = true
		}
	}
	return out
}

// validateContents is Validate for the segments of contents only: every
// rule Validate checks per segment or per content. The rules across
// contents (dbids, ports and data directories unique) hold for a command
// that changes no dbid, host, port or directory, which an update does not.
func validateContents(t *Topology, contents map[int]bool) error {
	roles := newContentRoles(len(contents))
	for _, s := range t.Segments {
		if !contents[s.Content] {
			continue
		}
		if err := validateSegment(s); err != nil {
			return err
		}
		if err := roles.add(s); err != nil {
			return err
		}
	}
	return roles.check()
}
