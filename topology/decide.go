package topology

import (
	"fmt"
	"slices"
)

// Observation is what an instance's own agent saw of it at its last probe.
// The leader keeps the latest one per dbid and passes them to Decide; an
// observation too old to trust is simply left out by the caller.
type Observation struct {
	DBID int `json:"dbid"`
	// Up: the postmaster runs and answered the probe.
	Up bool `json:"up"`
	// InRecovery: pg_is_in_recovery() (a mirror, or a primary not yet
	// promoted).
	InRecovery bool `json:"in_recovery"`
	// Streaming: a mirror's WAL receiver is streaming from its primary.
	Streaming bool `json:"streaming"`
	// SyncedMirrors lists the dbids of mirrors for which this primary's
	// agent vouches: listed in synchronous_standby_names, reported by
	// pg_stat_replication as sync, and flushed past the WAL position at
	// which synchronous replication was switched on. Every commit this
	// primary acknowledges from then on is on those mirrors.
	SyncedMirrors []int `json:"synced_mirrors,omitempty"`
}

// Decide returns the changes the observations call for, computed from t
// (which it does not modify). An empty result means the topology already
// says what the agents see; the caller then writes nothing to Raft, so a
// steady cluster makes no log entries.
//
// Rules (numbers from DESIGN.md):
//   - A pending instance whose agent reports it up (a mirror: streaming)
//     is recorded up.
//   - A pair is recorded in sync (mode s on both) only once the primary's
//     agent vouches that synchronous replication to that mirror is on and
//     caught up (rule 3: sync on first, s recorded second).
func Decide(t *Topology, obs map[int]Observation) []SegmentUpdate {
	var out []SegmentUpdate
	for _, s := range t.Segments {
		o, ok := obs[s.DBID]
		if !ok || s.Status == StatusUp || !t.IsPending(s.DBID) {
			continue
		}
		switch {
		case s.Role == RolePrimary && o.Up && !o.InRecovery:
			out = append(out, SegmentUpdate{DBID: s.DBID, Status: StatusUp,
				Desc: fmt.Sprintf("primary of content %d created and up", s.Content)})
		case s.Role == RoleMirror && o.Up && o.InRecovery && o.Streaming:
			out = append(out, SegmentUpdate{DBID: s.DBID, Status: StatusUp,
				Desc: fmt.Sprintf("mirror of content %d created, streaming", s.Content)})
		}
	}
	for _, c := range t.Contents() {
		p, okP := t.Primary(c)
		m, okM := t.Mirror(c)
		if !okP || !okM || p.Status != StatusUp || m.Status != StatusUp {
			continue
		}
		if p.Mode == ModeSynced && m.Mode == ModeSynced {
			continue
		}
		o, ok := obs[p.DBID]
		if !ok || !o.Up || !slices.Contains(o.SyncedMirrors, m.DBID) {
			continue
		}
		out = append(out,
			SegmentUpdate{DBID: p.DBID, Mode: ModeSynced, Desc: fmt.Sprintf("content %d: synchronous replication to dbid %d on, pair in sync", c, m.DBID)},
			SegmentUpdate{DBID: m.DBID, Mode: ModeSynced, Desc: fmt.Sprintf("content %d: mirror in sync with dbid %d", c, p.DBID)},
		)
	}
	return out
}
