package topology

import (
	"fmt"
	"path/filepath"
	"strings"
)

// newInstance is an instance about to be added, with where the operator
// asked for it (a spec field, a mirror file line), so a conflict points at
// the input to fix rather than at a dbid the operator never chose.
type newInstance struct {
	Segment
	where string
}

func (n newInstance) describe() string {
	return fmt.Sprintf("%s (content %d, %s:%d %s)", n.where, n.Content, n.Hostname, n.Port, n.DataDir)
}

// checkConflicts reports the first new instance that shares a host:port or
// a datadir with an existing or an earlier new instance, or whose datadir
// lies inside another's or holds one: initdb and pg_basebackup need the
// directory to themselves, and removing one instance must not remove
// another. Validate checks only equal host:port and datadir; nesting is
// checked here, on operator input, and not in Validate, because Validate
// runs inside Apply and tightening it would make replicas reject log
// entries they once accepted.
func checkConflicts(existing []Segment, added []newInstance) error {
	type placed struct {
		seg  Segment
		dir  string
		desc string
	}
	byHost := map[string][]placed{}
	for _, s := range existing {
		byHost[s.Hostname] = append(byHost[s.Hostname], placed{s, filepath.Clean(s.DataDir), s.String()})
	}
	for _, n := range added {
		dir := filepath.Clean(n.DataDir)
		for _, o := range byHost[n.Hostname] {
			if msg := conflict(n.Segment, dir, o.seg, o.dir, o.desc); msg != "" {
				return inputErrorf(n.where, "%s", msg)
			}
		}
		byHost[n.Hostname] = append(byHost[n.Hostname], placed{n.Segment, dir, n.describe()})
	}
	return nil
}

// conflict says why s cannot sit beside o on the same host, or "".
func conflict(s Segment, sdir string, o Segment, odir, odesc string) string {
	switch {
	case s.Port == o.Port:
		return fmt.Sprintf("port %d on %s is also used by %s", s.Port, s.Hostname, odesc)
	case sdir == odir:
		return fmt.Sprintf("datadir %s on %s is also used by %s", sdir, s.Hostname, odesc)
	case within(sdir, odir):
		return fmt.Sprintf("datadir %s on %s lies inside the datadir of %s", sdir, s.Hostname, odesc)
	case within(odir, sdir):
		return fmt.Sprintf("datadir %s on %s holds the datadir of %s", sdir, s.Hostname, odesc)
	}
	return ""
}

// within reports whether the clean path dir lies below the clean path parent.
func within(dir, parent string) bool {
	return dir != parent && strings.HasPrefix(dir, strings.TrimSuffix(parent, "/")+"/")
}
