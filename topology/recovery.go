package topology

import (
	"fmt"
	"slices"
)

// RecoveryKind is how a failed instance is brought back as a mirror.
type RecoveryKind string

const (
	// RecoveryIncremental rewinds the instance's own data (pg_rewind)
	// against its content's acting primary: fast, grows with the change.
	RecoveryIncremental RecoveryKind = "incremental"
	// RecoveryFull copies the acting primary into a clean data dir (a
	// parallel file copy through the primary's agent, or pg_basebackup):
	// always possible while the primary is up.
	RecoveryFull RecoveryKind = "full"
)

// Recovery is one instance being recovered, recorded in the topology so
// that it survives the loss of the leader or of the agent doing the copy:
// the next leader sees it, and the agent re-runs the step when it comes
// back. At most Topology.RecoveryParallel are Active at once.
type Recovery struct {
	DBID   int          `json:"dbid"`
	Kind   RecoveryKind `json:"kind"`
	Job    int          `json:"job"`
	Active bool         `json:"active"`
	Auto   bool         `json:"auto,omitempty"` // started by auto_recover
}

// RecoveryRequest asks for one instance's recovery; Move, when set,
// recovers it onto another host, port or data dir (always a full copy).
type RecoveryRequest struct {
	DBID int          `json:"dbid"`
	Kind RecoveryKind `json:"kind"`
	Move *Location    `json:"move,omitempty"`
}

// Location is where an instance lives.
type Location struct {
	Hostname string `json:"hostname"`
	Address  string `json:"address"`
	Port     int    `json:"port"`
	DataDir  string `json:"datadir"`
}

// DefaultRecoveryParallel is how many recoveries run at once when the
// operator does not say (gprecoverseg -B).
const DefaultRecoveryParallel = 4

// Recovering returns the recovery of dbid in progress, if any.
func (t *Topology) Recovering(dbid int) (Recovery, bool) {
	for _, r := range t.Recoveries {
		if r.DBID == dbid {
			return r, true
		}
	}
	return Recovery{}, false
}

// CanRecover says why dbid cannot be recovered now, or nil. Only a mirror
// recorded down can be: a down primary (a double fault) holds the only
// copy of its content and is restarted in place instead, and a content
// whose primary is down has no source to recover from.
func CanRecover(t *Topology, dbid int) error {
	s, ok := t.Segment(dbid)
	switch {
	case !ok:
		return fmt.Errorf("%w: recover: no instance with dbid %d", ErrInvalid, dbid)
	case s.Status == StatusUp:
		return fmt.Errorf("%w: recover: dbid %d is up", ErrInvalid, dbid)
	case s.Role == RolePrimary:
		return fmt.Errorf("%w: recover: dbid %d is the primary of content %d and holds its only copy: it is restarted in place, not recovered", ErrInvalid, dbid, s.Content)
	case t.IsPending(dbid) || t.IsRejoining(dbid):
		return fmt.Errorf("%w: recover: dbid %d is being created", ErrInvalid, dbid)
	}
	if _, busy := t.Recovering(dbid); busy {
		return fmt.Errorf("%w: recover: dbid %d is already being recovered", ErrInvalid, dbid)
	}
	if p, ok := t.Primary(s.Content); !ok || p.Status != StatusUp {
		return fmt.Errorf("%w: recover: content %d has no primary up to recover dbid %d from", ErrInvalid, s.Content, dbid)
	}
	return nil
}

func applyRecover(t *Topology, cmd Command) error {
	if len(cmd.Recover) == 0 {
		return fmt.Errorf("%w: recover with nothing to recover", ErrInvalid)
	}
	if cmd.Parallel > 0 {
		t.RecoveryParallel = cmd.Parallel
	}
	t.RecoveryJob++
	for _, req := range cmd.Recover {
		if err := CanRecover(t, req.DBID); err != nil {
			return err
		}
		kind := req.Kind
		if kind != RecoveryIncremental && kind != RecoveryFull {
			return fmt.Errorf("%w: recover dbid %d: kind %q is not incremental or full", ErrInvalid, req.DBID, kind)
		}
		i := t.index(req.DBID)
		s := &t.Segments[i]
		where := ""
		if m := req.Move; m != nil {
			s.Hostname, s.Address, s.Port, s.DataDir = m.Hostname, m.Address, m.Port, m.DataDir
			kind = RecoveryFull // nothing of it is there to rewind
			where = fmt.Sprintf(" onto %s:%d %s", m.Hostname, m.Port, m.DataDir)
		}
		t.Recoveries = append(t.Recoveries, Recovery{DBID: req.DBID, Kind: kind, Job: t.RecoveryJob, Auto: cmd.Auto})
		by := "gprecoverseg"
		if cmd.Auto {
			by = "auto_recover"
		}
		t.record(cmd.Time, req.DBID, fmt.Sprintf("%s: %s recovery of dbid %d (content %d)%s queued", by, kind, req.DBID, s.Content, where))
	}
	t.activateRecoveries()
	return nil
}

// activateRecoveries starts queued recoveries, in the order they were
// asked for, while fewer than RecoveryParallel run.
func (t *Topology) activateRecoveries() {
	limit := t.RecoveryParallel
	if limit <= 0 {
		limit = DefaultRecoveryParallel
	}
	active := 0
	for _, r := range t.Recoveries {
		if r.Active {
			active++
		}
	}
	for i := range t.Recoveries {
		if active >= limit {
			return
		}
		if !t.Recoveries[i].Active {
			t.Recoveries[i].Active = true
			active++
		}
	}
}

// endRecoveries drops the recoveries whose instance is up (done) or that
// an update ended (failed), and remembers instances whose automatic
// recovery failed so auto_recover does not loop on them.
func (t *Topology) endRecoveries(failed []int) {
	t.Recoveries = slices.DeleteFunc(t.Recoveries, func(r Recovery) bool {
		s, _ := t.Segment(r.DBID)
		if slices.Contains(failed, r.DBID) {
			if !slices.Contains(t.NoAutoRecover, r.DBID) {
				t.NoAutoRecover = append(t.NoAutoRecover, r.DBID)
			}
			return true
		}
		return s.Status == StatusUp
	})
	t.NoAutoRecover = slices.DeleteFunc(t.NoAutoRecover, func(d int) bool {
		s, _ := t.Segment(d)
		return s.Status == StatusUp
	})
	t.activateRecoveries()
}
