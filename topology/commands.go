package topology

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// CommandType numbers the topology commands kept in the Raft log. Numbers
// are only ever appended: an entry written by an old agent must decode the
// same way forever.
type CommandType uint8

const (
	CmdInit           CommandType = 1
	CmdAddMirrors     CommandType = 2
	CmdUpdateSegments CommandType = 3
	CmdSetPaused      CommandType = 4
	CmdSwitchover     CommandType = 5
	CmdRecover        CommandType = 6
)

func (c CommandType) String() string {
	switch c {
	case CmdInit:
		return "init"
	case CmdAddMirrors:
		return "add_mirrors"
	case CmdUpdateSegments:
		return "update_segments"
	case CmdSetPaused:
		return "set_paused"
	case CmdSwitchover:
		return "switchover"
	case CmdRecover:
		return "recover"
	}
	return fmt.Sprintf("command(%d)", uint8(c))
}

// ErrStale is returned when a command was computed from another config
// version than the one it would apply to: the leader acted on an old view,
// so the command changes nothing and the leader recomputes.
var ErrStale = errors.New("stale config version")

// Command is one topology change. The leader stamps Time and BaseVersion
// before it goes to Raft, so applying it is deterministic on every replica.
type Command struct {
	Type        CommandType `json:"type"`
	BaseVersion uint64      `json:"base_version"`
	Time        time.Time   `json:"time"`

	// CmdInit
	ClusterID string         `json:"cluster_id,omitempty"`
	SegPrefix string         `json:"seg_prefix,omitempty"`
	Databases []string       `json:"databases,omitempty"`
	Mirrors   MirrorDefaults `json:"mirrors,omitzero"`
	// CmdInit and CmdAddMirrors: the instances to add.
	Segments []Segment `json:"segments,omitempty"`
	// CmdUpdateSegments
	Updates []SegmentUpdate `json:"updates,omitempty"`
	// CmdSetPaused
	Paused bool `json:"paused,omitempty"`
	// CmdSwitchover: the content whose roles to swap.
	Content int `json:"content,omitempty"`
	// CmdRecover: what to recover, how many at once (0: keep), and
	// whether auto_recover asked.
	Recover  []RecoveryRequest `json:"recover,omitempty"`
	Parallel int               `json:"parallel,omitempty"`
	Auto     bool              `json:"auto,omitempty"`
}

// SegmentUpdate changes the role, status or mode of one instance; an empty
// field is left as it is. Desc becomes the history row.
type SegmentUpdate struct {
	DBID   int    `json:"dbid"`
	Role   Role   `json:"role,omitempty"`
	Status Status `json:"status,omitempty"`
	Mode   Mode   `json:"mode,omitempty"`
	// Rejoin: the instance (a mirror now) starts as a standby of its
	// content's primary from the data it has, with no copy.
	Rejoin bool `json:"rejoin,omitempty"`
	// RecoveryFailed ends the instance's recovery in progress as failed
	// (Desc says why); it stays down.
	RecoveryFailed bool   `json:"recovery_failed,omitempty"`
	Desc           string `json:"desc"`
}

// Apply returns the topology that results from cmd, or an error and no
// change. It never modifies t. Every successful command raises the config
// version by one and appends at least one history row (safety rule 6).
func Apply(t *Topology, cmd Command) (*Topology, error) {
	if t == nil {
		t = &Topology{}
	}
	if cmd.BaseVersion != t.ConfigVersion {
		return nil, fmt.Errorf("%w: command %s computed from version %d, topology is at %d",
			ErrStale, cmd.Type, cmd.BaseVersion, t.ConfigVersion)
	}
	next := t.Clone()
	var err error
	switch cmd.Type {
	case CmdInit:
		err = applyInit(next, cmd)
	case CmdAddMirrors:
		err = applyAddMirrors(next, cmd)
	case CmdUpdateSegments:
		err = applyUpdateSegments(next, cmd)
	case CmdSetPaused:
		err = applySetPaused(next, cmd)
	case CmdSwitchover:
		err = applySwitchover(next, cmd)
	case CmdRecover:
		err = applyRecover(next, cmd)
	default:
		err = fmt.Errorf("%w: unknown command type %d", ErrInvalid, cmd.Type)
	}
	if err != nil {
		return nil, err
	}
	if cmd.Type == CmdUpdateSegments {
		// An update changes only the role, status and mode of the
		// segments it names: the rest of t was validated by the Apply
		// that made it (or the restore that read it), so only the
		// contents touched are checked again. Every replica validated
		// all 16,000 segments of a thousand hosts on every entry
		// (5 % of each server's CPU through an init).
		err = validateContents(next, updatedContents(next, cmd.Updates))
	} else {
		err = Validate(next)
	}
	if err != nil {
		return nil, err
	}
	if n := len(next.History) - MaxHistory; n > 0 {
		// The oldest rows go: a copy, so the array does not keep them.
		next.History = append([]HistoryEntry(nil), next.History[n:]...)
	}
	next.ConfigVersion++
	return next, nil
}

// MaxHistory is how many history rows the topology keeps, the newest.
// Without a bound the history grows for ever, in every snapshot and in
// the copy every Apply makes; a thousand rows cover far more than an
// operator looks back at. Rows are only ever appended and dropped from
// the front, the same way on every replica (Apply is pure).
const MaxHistory = 1000

func (t *Topology) record(at time.Time, dbid int, desc string) {
	t.History = append(t.History, HistoryEntry{Time: at, DBID: dbid, Desc: desc})
}

func applyInit(t *Topology, cmd Command) error {
	if t.Initialized() {
		return fmt.Errorf("%w: cluster already initialized", ErrInvalid)
	}
	if len(cmd.Segments) == 0 {
		return fmt.Errorf("%w: init with no instances", ErrInvalid)
	}
	t.ClusterID = cmd.ClusterID
	t.SegPrefix = cmd.SegPrefix
	t.Databases = slices.Clone(cmd.Databases)
	t.Mirrors = cmd.Mirrors
	t.Mirrors.DataDirs = append([]string(nil), cmd.Mirrors.DataDirs...)
	for _, s := range cmd.Segments {
		// Nothing exists on disk yet: the instance is down until its agent
		// has created and started it.
		s.Status, s.Mode = StatusDown, ModeNotSynced
		t.Segments = append(t.Segments, s)
		t.Pending = append(t.Pending, s.DBID)
		t.record(cmd.Time, s.DBID, fmt.Sprintf("gpinitsystem: content %d added as %s on %s:%d", s.Content, roleWord(s.Role), s.Hostname, s.Port))
	}
	return nil
}

func applyAddMirrors(t *Topology, cmd Command) error {
	if len(cmd.Segments) == 0 {
		return fmt.Errorf("%w: add mirrors with no mirrors", ErrInvalid)
	}
	for _, s := range cmd.Segments {
		if s.Role != RoleMirror || s.PreferredRole != RoleMirror {
			return fmt.Errorf("%w: dbid %d: an added mirror must have role and preferred_role m", ErrInvalid, s.DBID)
		}
		if _, ok := t.Primary(s.Content); !ok {
			return fmt.Errorf("%w: dbid %d: content %d has no primary", ErrInvalid, s.DBID, s.Content)
		}
		// A new mirror holds nothing yet: it is down and not in sync until
		// it has been built and has caught up.
		s.Status, s.Mode = StatusDown, ModeNotSynced
		t.Segments = append(t.Segments, s)
		t.Pending = append(t.Pending, s.DBID)
		t.record(cmd.Time, s.DBID, fmt.Sprintf("gpaddmirrors: mirror of content %d added on %s:%d", s.Content, s.Hostname, s.Port))
	}
	return nil
}

func applyUpdateSegments(t *Topology, cmd Command) error {
	if len(cmd.Updates) == 0 {
		return fmt.Errorf("%w: update with no changes", ErrInvalid)
	}
	var failedRecoveries []int
	// By a dbid index when the command is large (an init's creations, a
	// host's worth of failures): a scan per update is quadratic.
	index := t.index
	if len(cmd.Updates) > 16 {
		byDBID := make(map[int]int, len(t.Segments))
		for i, s := range t.Segments {
			byDBID[s.DBID] = i
		}
		index = func(dbid int) int {
			if i, ok := byDBID[dbid]; ok {
				return i
			}
			return -1
		}
	}
	for _, u := range cmd.Updates {
		i := index(u.DBID)
		if i < 0 {
			return fmt.Errorf("%w: update of unknown dbid %d", ErrInvalid, u.DBID)
		}
		if err := checkUpdateLetters(u); err != nil {
			return err
		}
		s := &t.Segments[i]
		if u.Role != "" {
			s.Role = u.Role
		}
		if u.Status != "" {
			s.Status = u.Status
		}
		if u.Mode != "" {
			s.Mode = u.Mode
		}
		if u.Rejoin && !slices.Contains(t.Rejoin, u.DBID) {
			t.Rejoin = append(t.Rejoin, u.DBID)
		}
		if u.RecoveryFailed {
			failedRecoveries = append(failedRecoveries, u.DBID)
		}
		desc := u.Desc
		if desc == "" {
			desc = fmt.Sprintf("role %s, status %s, mode %s", s.Role, s.Status, s.Mode)
		}
		t.record(cmd.Time, u.DBID, desc)
	}
	// An instance is created once it has been recorded up; judged on the
	// final state, so an update list that goes u then d keeps it pending.
	// By a dbid index built once: right after init every instance is
	// pending, and a lookup by scan per pending dbid made each Apply
	// quadratic in the cluster (11 % of a 47-agent process's CPU in
	// gpbench scale, every replica applying every entry).
	var byDBID map[int]int
	if len(t.Pending)+len(t.Rejoin) > 0 {
		byDBID = make(map[int]int, len(t.Segments))
		for i, s := range t.Segments {
			byDBID[s.DBID] = i
		}
	}
	up := func(d int) bool {
		i, ok := byDBID[d]
		return ok && t.Segments[i].Status == StatusUp
	}
	t.Pending = slices.DeleteFunc(t.Pending, up)
	t.Rejoin = slices.DeleteFunc(t.Rejoin, up)
	// A switchover ends once its roles are swapped (or something else
	// changed the pair's roles meanwhile).
	t.Switchovers = slices.DeleteFunc(t.Switchovers, func(sw Switchover) bool {
		from, _ := t.Segment(sw.From)
		to, _ := t.Segment(sw.To)
		return from.Role != RolePrimary || to.Role != RoleMirror || from.Status != StatusUp
	})
	t.endRecoveries(failedRecoveries)
	return nil
}

// checkUpdateLetters rejects an unknown letter even when a later update
// of the same command overwrites it: Validate sees only the final state,
// and the history row would keep the bad letter.
func checkUpdateLetters(u SegmentUpdate) error {
	if (u.Role != "" && u.Role != RolePrimary && u.Role != RoleMirror) ||
		(u.Status != "" && u.Status != StatusUp && u.Status != StatusDown) ||
		(u.Mode != "" && u.Mode != ModeSynced && u.Mode != ModeNotSynced) {
		return fmt.Errorf("%w: update of dbid %d: role %q, status %q, mode %q: not p/m, u/d, s/n",
			ErrInvalid, u.DBID, u.Role, u.Status, u.Mode)
	}
	return nil
}

func applySetPaused(t *Topology, cmd Command) error {
	t.Paused = cmd.Paused
	desc := "automatic failover resumed"
	if cmd.Paused {
		desc = "automatic failover paused"
	}
	t.record(cmd.Time, 0, desc)
	return nil
}

func (t *Topology) index(dbid int) int {
	for i, s := range t.Segments {
		if s.DBID == dbid {
			return i
		}
	}
	return -1
}

func roleWord(r Role) string {
	if r == RolePrimary {
		return "primary"
	}
	return "mirror"
}

// applySwitchover starts a planned swap of one pair. Only a pair recorded
// up and in sync may swap: the mirror then has every acknowledged commit,
// and replays the rest up to the primary's shutdown checkpoint.
func applySwitchover(t *Topology, cmd Command) error {
	if err := CanSwitchover(t, cmd.Content); err != nil {
		return err
	}
	p, _ := t.Primary(cmd.Content)
	m, _ := t.Mirror(cmd.Content)
	t.Switchovers = append(t.Switchovers, Switchover{Content: cmd.Content, From: p.DBID, To: m.DBID, Version: t.ConfigVersion + 1})
	t.record(cmd.Time, p.DBID, fmt.Sprintf("content %d: switchover started: primary dbid %d shuts down cleanly, mirror dbid %d takes over", cmd.Content, p.DBID, m.DBID))
	return nil
}
