package topology

import (
	"slices"
	"strings"
	"time"
	"unicode"
)

// ReplicaRow is one walsender of a primary, a pg_stat_replication row as
// far as the sync rules need it.
type ReplicaRow struct {
	App       string // application_name: the mirror
	State     string // streaming, catchup, ...
	SyncState string // sync, async, potential, quorum
	Flush     uint64 // flush_lsn: WAL the mirror has made durable
}

// ReplicationHealth is a primary's replication as its agent's probe saw
// it at one moment.
type ReplicationHealth struct {
	CurrentLSN       uint64 // pg_current_wal_lsn()
	SyncStandbyNames string // synchronous_standby_names
	Replicas         []ReplicaRow
}

// streaming returns the row of the mirror named app if it is streaming.
func (h ReplicationHealth) streaming(app string) (ReplicaRow, bool) {
	for _, r := range h.Replicas {
		if r.App == app && r.State == "streaming" {
			return r, true
		}
	}
	return ReplicaRow{}, false
}

// CaughtUp reports whether the mirror named app streams and has flushed
// to within maxLag bytes of the primary's position. Synchronous
// replication is switched on only then: for a mirror far behind, every
// commit would wait until it caught up.
func (h ReplicationHealth) CaughtUp(app string, maxLag int64) bool {
	r, ok := h.streaming(app)
	return ok && Lag(h.CurrentLSN, r.Flush) <= maxLag
}

// Lag is how many bytes of WAL pos is behind current (0 when it is not).
func Lag(current, pos uint64) int64 {
	if pos >= current {
		return 0
	}
	return int64(current - pos)
}

// SyncNamesInclude reports whether app is one of the names in a
// synchronous_standby_names value ("a", "FIRST 1 (a, b)", "\"a\"").
func SyncNamesInclude(names, app string) bool {
	fields := strings.FieldsFunc(names, func(r rune) bool {
		return !(unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_')
	})
	return slices.Contains(fields, app)
}

// SyncVouch is a primary's agent's watch over whether it may vouch a
// mirror in sync (Observation.SyncedMirrors, safety rules 2 and 3): sync
// is on for the mirror, the server reports it sync and streaming, and it
// has flushed past the primary's WAL position read after sync was
// switched on. Commits acknowledged before that position did not wait
// for the mirror; once it has flushed past it, it holds all of them. The
// zero value watches nothing. Step returns the next value.
type SyncVouch struct {
	app  string // the mirror sync was seen on for; "" for none
	from uint64 // the position it must flush past
}

// SyncSwitchedOn is the watch right after the agent switched synchronous
// replication on for the mirror app and then read the primary's position
// from (after the switch, so every commit acknowledged past it waited).
func SyncSwitchedOn(app string, from uint64) SyncVouch {
	return SyncVouch{app: app, from: from}
}

// Step looks at one probe of the primary and says whether it vouches the
// mirror named app in sync now.
func (v SyncVouch) Step(h ReplicationHealth, app string) (SyncVouch, bool) {
	if !SyncNamesInclude(h.SyncStandbyNames, app) {
		// Sync is off for it: whatever was vouched before no longer
		// holds; the next switch-on starts from a fresh position.
		return SyncVouch{}, false
	}
	if v.app != app {
		// Sync was switched on without this watch seeing it (before the
		// agent started, say): commits acknowledged before now may
		// predate it, so the mirror must first flush past the current
		// position.
		return SyncVouch{app: app, from: h.CurrentLSN}, false
	}
	for _, r := range h.Replicas {
		if r.App == app && r.State == "streaming" && r.SyncState == "sync" && r.Flush >= v.from {
			return v, true
		}
	}
	return v, false
}

// StallWatch is a primary's agent's watch over its mirror's replication:
// a link can stall while both ends look healthy to their agents, and
// commits then hang. It holds the last flush position seen and when
// replication last made progress (the flush moved, or was caught up).
// The zero value watches nothing; Step returns the next value.
type StallWatch struct {
	app      string
	flush    uint64
	progress time.Time
}

// Step looks at one probe of the primary at now and says whether the
// mirror named app has made no progress for longer than timeout
// (replication_stall_timeout): its row in pg_stat_replication is gone or
// not streaming, or its flush position neither moved nor caught up. A
// watch of another mirror (or none) starts afresh at now.
func (w StallWatch) Step(h ReplicationHealth, app string, now time.Time, timeout time.Duration) (StallWatch, bool) {
	if w.app != app {
		w = StallWatch{app: app, progress: now}
	}
	for _, r := range h.Replicas {
		if r.App == app && r.State == "streaming" && (r.Flush >= h.CurrentLSN || r.Flush > w.flush) {
			w.flush, w.progress = r.Flush, now
		}
	}
	return w, now.Sub(w.progress) > timeout
}
