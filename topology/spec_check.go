package topology

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"
)

var segPrefixPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// check validates the fields of a spec whose defaults are filled in. The
// first mistake wins, so the operator fixes one named field at a time.
func (s *Spec) check() error {
	if !segPrefixPattern.MatchString(s.SegPrefix) {
		return inputErrorf("seg_prefix", "%q: use letters, digits, '_', '-' or '.'", s.SegPrefix)
	}
	c := s.Coordinator
	if err := firstError(
		checkName("coordinator.hostname", c.Hostname),
		checkName("coordinator.address", c.Address),
		checkPort("coordinator.port", c.Port),
		checkDir("coordinator.datadir", c.DataDir),
	); err != nil {
		return err
	}
	for i, db := range c.Databases {
		// The agent names them in connection strings: keep them plain.
		if !segPrefixPattern.MatchString(db) {
			return inputErrorf(fmt.Sprintf("coordinator.databases[%d]", i), "%q: use letters, digits, '_', '-' or '.'", db)
		}
	}
	if err := s.checkHosts(); err != nil {
		return err
	}
	if err := checkPortDirs("primary", s.Primary); err != nil {
		return err
	}
	if err := s.checkHostPrimaries(); err != nil {
		return err
	}
	if m := s.Mirror; m != nil {
		if err := checkPortDirs("mirror", m.PortDirs); err != nil {
			return err
		}
		if len(m.DataDirs) != len(s.Primary.DataDirs) {
			return inputErrorf("mirror.datadirs", "has %d entries, primary.datadirs has %d: each primary of a host needs a mirror place on another",
				len(m.DataDirs), len(s.Primary.DataDirs))
		}
		switch Placement(m.Placement) {
		case PlacementGroup:
		case PlacementSpread:
			// As gpaddmirrors: each of a host's primaries needs its own other host.
			if len(s.SegmentHosts) <= len(s.Primary.DataDirs) {
				return inputErrorf("mirror.placement", "spread needs more segment hosts (%d) than primaries per host (%d)",
					len(s.SegmentHosts), len(s.Primary.DataDirs))
			}
		default:
			return inputErrorf("mirror.placement", "%q: use group or spread", m.Placement)
		}
	}
	return s.checkPortRanges()
}

// checkHosts wants at least one host, and every hostname and address to
// name exactly one host: a mirror file line is resolved by either.
func (s *Spec) checkHosts() error {
	if len(s.SegmentHosts) == 0 {
		return inputErrorf("segment_hosts", "at least one segment host is needed")
	}
	owner := map[string]int{}
	for i, h := range s.SegmentHosts {
		where := fmt.Sprintf("segment_hosts[%d]", i)
		if err := firstError(checkName(where+".hostname", h.Hostname), checkName(where+".address", h.Address)); err != nil {
			return err
		}
		for _, f := range []struct{ field, name string }{{"hostname", h.Hostname}, {"address", h.Address}} {
			if j, ok := owner[f.name]; ok && j != i {
				return inputErrorf(where+"."+f.field, "%q already names segment_hosts[%d]", f.name, j)
			}
			owner[f.name] = i
		}
	}
	return nil
}

// checkPortRanges keeps the primary, mirror and coordinator ports of one
// host apart. Every segment host holds exactly K primaries and, with
// mirrors, exactly K mirrors under both placements, so whole ranges are
// compared.
func (s *Spec) checkPortRanges() error {
	perHost := len(s.Primary.DataDirs)
	primary := portRange{s.Primary.PortBase, perHost}
	var mirror portRange
	if s.Mirror != nil {
		mirror = portRange{s.Mirror.PortBase, perHost}
		if primary.overlaps(mirror) {
			return inputErrorf("mirror.port_base", "mirror ports %s overlap primary ports %s", mirror, primary)
		}
	}
	c := s.Coordinator
	for i, h := range s.SegmentHosts {
		if c.Hostname != h.Hostname && c.Address != h.Address && c.Hostname != h.Address && c.Address != h.Hostname {
			continue
		}
		if c.Hostname != h.Hostname {
			return inputErrorf("coordinator.hostname", "%q, but the coordinator shares a name with segment_hosts[%d] (hostname %q)", c.Hostname, i, h.Hostname)
		}
		if primary.has(c.Port) {
			return inputErrorf("coordinator.port", "%d is in the primary ports %s of segment host %s", c.Port, primary, h.Hostname)
		}
		if mirror.has(c.Port) {
			return inputErrorf("coordinator.port", "%d is in the mirror ports %s of segment host %s", c.Port, mirror, h.Hostname)
		}
	}
	return nil
}

func checkPortDirs(where string, pd PortDirs) error {
	if err := checkPort(where+".port_base", pd.PortBase); err != nil {
		return err
	}
	if len(pd.DataDirs) == 0 {
		return inputErrorf(where+".datadirs", "at least one datadir is needed")
	}
	for k, dir := range pd.DataDirs {
		if err := checkDir(fmt.Sprintf("%s.datadirs[%d]", where, k), dir); err != nil {
			return err
		}
	}
	if r := (portRange{pd.PortBase, len(pd.DataDirs)}); r.last() > 65535 {
		return inputErrorf(where+".port_base", "ports %s for %d datadirs go past 65535", r, len(pd.DataDirs))
	}
	return nil
}

func checkPort(where string, port int) error {
	if port < 1 || port > 65535 {
		return inputErrorf(where, "must be 1..65535, got %d", port)
	}
	return nil
}

// checkName accepts what can stand in a host column and a mirror file
// field: no spaces, control characters or '|'.
func checkName(where, name string) error {
	if name == "" {
		return inputErrorf(where, "must not be empty")
	}
	if strings.ContainsFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == '|' }) {
		return inputErrorf(where, "%q must not contain spaces, control characters or '|'", name)
	}
	return nil
}

// checkDir wants an absolute path without control characters: the path
// ends up in postgresql.conf and in command lines.
func checkDir(where, dir string) error {
	if !filepath.IsAbs(dir) {
		return inputErrorf(where, "%q must be an absolute path", dir)
	}
	if strings.ContainsFunc(dir, unicode.IsControl) {
		return inputErrorf(where, "%q must not contain control characters", dir)
	}
	return nil
}

func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// portRange is the ports first..first+n-1; the zero value holds none.
type portRange struct{ first, n int }

func (r portRange) last() int         { return r.first + r.n - 1 }
func (r portRange) has(port int) bool { return r.n > 0 && port >= r.first && port <= r.last() }
func (r portRange) overlaps(o portRange) bool {
	return r.n > 0 && o.n > 0 && r.first <= o.last() && o.first <= r.last()
}
func (r portRange) String() string { return fmt.Sprintf("%d..%d", r.first, r.last()) }

// checkHostPrimaries keeps each host's primaries within primary.datadirs
// and, with a mirror section, the same on every host: init's placements
// (group, spread) give host i's mirrors to other hosts by position, which
// for uneven hosts could put more mirrors on a host than it has datadirs.
func (s *Spec) checkHostPrimaries() error {
	dirs := len(s.Primary.DataDirs)
	for i, h := range s.SegmentHosts {
		where := fmt.Sprintf("segment_hosts[%d].primaries", i)
		if h.Primaries < 0 || h.Primaries > dirs {
			return inputErrorf(where, "%d: want 1 to %d (the entries of primary.datadirs), or leave it out for all of them", h.Primaries, dirs)
		}
		if s.Mirror != nil && h.primaryDirs(dirs) != s.SegmentHosts[0].primaryDirs(dirs) {
			return inputErrorf(where, "%d, but segment_hosts[0] has %d: with a mirror section every host holds as many primaries; init without mirrors and add them with a mirror file (gpagent addmirrors -i)", h.primaryDirs(dirs), s.SegmentHosts[0].primaryDirs(dirs))
		}
	}
	return nil
}
