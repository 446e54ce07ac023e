package topology

import (
	"fmt"
	"slices"
)

// Observation is what an instance's own agent saw of it at its last probe.
// The leader keeps the latest one per dbid and passes them to Decide; an
// observation too old to trust is simply left out by the caller (and an
// instance with no observation is never acted on).
type Observation struct {
	DBID int `json:"dbid"`
	// Up: the postmaster runs and answered the probe.
	Up bool `json:"up"`
	// Failed: the agent vouches the instance is down: its postmaster
	// exited, is not running, or failed probe_retries probes in a row.
	// Not the same as !Up: an instance being created is neither.
	Failed bool `json:"failed,omitempty"`
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
	// StalledMirrors lists mirrors whose replication this primary's agent
	// has seen make no progress for replication_stall_timeout while both
	// ends looked alive: commits would hang on them.
	StalledMirrors []int `json:"stalled_mirrors,omitempty"`
	// LSN: pg_current_wal_lsn on a primary, the replay position on a
	// standby.
	LSN uint64 `json:"lsn,omitempty"`
	// StoppedLSN: the instance was shut down cleanly for a switchover and
	// this is its shutdown checkpoint; 0 otherwise.
	StoppedLSN uint64 `json:"stopped_lsn,omitempty"`
	// RecoveryError: the recovery of this instance in progress failed
	// (job RecoveryJob); the agent will not retry it by itself.
	RecoveryError string `json:"recovery_error,omitempty"`
	RecoveryJob   int    `json:"recovery_job,omitempty"`
	// RecoveredJob: the agent finished the recovery step of this job on
	// the instance (rewound or rebuilt it and started it) before this
	// probe. A mirror recorded down may still look streaming on a
	// connection that died with a partition; only an observation made
	// after the step counts for the recovery.
	RecoveredJob int `json:"recovered_job,omitempty"`
	// ConfigVersion of the topology the agent acted on when it made
	// this observation.
	ConfigVersion uint64 `json:"config_version,omitempty"`
}

// Decide returns the changes the observations call for, computed from t
// (which it does not modify). An empty result means the topology already
// says what the agents see; the caller then writes nothing to Raft, so a
// steady cluster makes no log entries. All changes of one call go into one
// command: a failover (promote the mirror, mark the primary down) is never
// half-applied.
//
// Rules (numbers from DESIGN.md):
//   - A pending instance whose agent reports it up (a mirror: streaming)
//     is recorded up.
//   - Primary lost, its mirror up and the pair recorded in sync: promote
//     the mirror (role p, mode n) and demote the old primary (role m,
//     status d). Only a mirror recorded s is promoted (rule 2).
//   - Primary lost and no in-sync mirror (double fault): the primary is
//     recorded down but keeps role p, since it holds the only complete
//     copy; its agent restarts it in place where its host is alive, and it
//     is recorded up again once it answers as a primary.
//   - Mirror lost or its replication stalled, primary up: the mirror is
//     recorded down and the pair not in sync. The primary's agent stops
//     waiting for it only after that is committed (rule 3).
//   - A pair is recorded in sync only once the primary's agent vouches
//     that synchronous replication to that mirror is on and caught up
//     (rule 3: sync on first, s recorded second).
//
// While t.Paused, failures are not acted on (no promotion, nothing marked
// down); creation and sync bookkeeping go on.
func Decide(t *Topology, obs map[int]Observation) []SegmentUpdate {
	// One pass builds each content's primary and mirror (the first of
	// each role, as Primary and Mirror would return): looking them up per
	// content scanned every segment once per content, contents x
	// instances steps, about 10^8 at 8,000 contents on every report.
	type pair struct {
		p, m       Segment
		hasP, hasM bool
	}
	byContent := make(map[int]*pair)
	var contents []int
	for _, s := range t.Segments {
		pr, ok := byContent[s.Content]
		if !ok {
			pr = &pair{}
			byContent[s.Content] = pr
			contents = append(contents, s.Content)
		}
		switch {
		case s.Role == RolePrimary && !pr.hasP:
			pr.p, pr.hasP = s, true
		case s.Role == RoleMirror && !pr.hasM:
			pr.m, pr.hasM = s, true
		}
	}
	slices.Sort(contents)
	lk := newLookups(t)
	var out []SegmentUpdate
	for _, c := range contents {
		pr := byContent[c]
		out = append(out, decideContent(t, lk, c, pr.p, pr.hasP, pr.m, pr.hasM, obs)...)
	}
	return out
}

// lookups finds a dbid in t's lists by a map built once per Decide: a
// scan per content was quadratic (every instance pending right after a
// 1,000-host init: 8,000 contents x 16,000 dbids, a quarter of the
// leader's CPU).
type lookups struct {
	pending, rejoin map[int]bool
	recoveries      map[int]Recovery
	switchovers     map[int]Switchover // by content
}

func newLookups(t *Topology) lookups {
	lk := lookups{pending: make(map[int]bool, len(t.Pending)), rejoin: make(map[int]bool, len(t.Rejoin)),
		recoveries: make(map[int]Recovery, len(t.Recoveries)), switchovers: make(map[int]Switchover, len(t.Switchovers))}
	for _, d := range t.Pending {
		lk.pending[d] = true
	}
	for _, d := range t.Rejoin {
		lk.rejoin[d] = true
	}
	for _, r := range t.Recoveries {
		if _, ok := lk.recoveries[r.DBID]; !ok { // the first, as Recovering finds
			lk.recoveries[r.DBID] = r
		}
	}
	for _, sw := range t.Switchovers {
		if _, ok := lk.switchovers[sw.Content]; !ok {
			lk.switchovers[sw.Content] = sw
		}
	}
	return lk
}

func (lk lookups) recovering(dbid int) (Recovery, bool) {
	r, ok := lk.recoveries[dbid]
	return r, ok
}

func (lk lookups) switchoverOf(content int) (Switchover, bool) {
	sw, ok := lk.switchovers[content]
	return sw, ok
}

func decideContent(t *Topology, lk lookups, c int, p Segment, hasP bool, m Segment, hasM bool, obs map[int]Observation) []SegmentUpdate {
	var out []SegmentUpdate
	if hasP {
		if u, ok := primaryUp(lk, p, obs); ok {
			out = append(out, u)
			p.Status = StatusUp
		}
	}
	// Failure rules judge the mirror as the topology recorded it: one
	// recorded up only now is not also marked lost in the same decision.
	mirrorWasUp := hasM && m.Status == StatusUp
	if hasM {
		if u, ok := mirrorCreated(lk, m, obs); ok {
			out = append(out, u)
			m.Status = StatusUp
		} else if u, ok := recoveryFailed(lk, m, obs); ok {
			out = append(out, u)
		}
	}
	if !hasP || p.Status != StatusUp {
		return out
	}
	// A switchover is an operator's action: it completes, or is abandoned
	// when its mirror is lost, even while failover is paused. A primary
	// that dies before its clean stop is an ordinary failure.
	if sw, ok := lk.switchoverOf(c); ok && hasM && sw.From == p.DBID && sw.To == m.DBID {
		o := obs[p.DBID]
		crashed := failed(p, obs) && o.StoppedLSN == 0
		if !crashed {
			return append(out, switchover(c, p, m, obs)...)
		}
		if o.ConfigVersion < sw.Version {
			// Stopped, as told by an agent that has not seen the
			// switchover yet (one restarted midway, say): wait for it
			// to catch up and read the stop's checkpoint.
			return out
		}
	}
	if !t.Paused {
		if failed(p, obs) {
			return append(out, primaryLost(c, p, m, hasM, obs)...)
		}
		if mirrorWasUp {
			if u := mirrorLost(c, p, m, obs); u != nil {
				return append(out, u...)
			}
		}
	}
	if hasM && m.Status == StatusUp && !(p.Mode == ModeSynced && m.Mode == ModeSynced) {
		// A vouch counts only if made against the current topology: one
		// from before the mirror was last marked down and rebuilt is stale.
		if o, ok := obs[p.DBID]; ok && o.Up && !o.InRecovery && o.ConfigVersion == t.ConfigVersion && slices.Contains(o.SyncedMirrors, m.DBID) {
			out = append(out,
				SegmentUpdate{DBID: p.DBID, Mode: ModeSynced, Desc: fmt.Sprintf("content %d: synchronous replication to dbid %d on, pair in sync", c, m.DBID)},
				SegmentUpdate{DBID: m.DBID, Mode: ModeSynced, Desc: fmt.Sprintf("content %d: mirror in sync with dbid %d", c, p.DBID)},
			)
		}
	}
	return out
}

// primaryUp records a primary up when it answers as a primary: a newly
// created one, or one restarted in place after a double fault. An instance
// demoted to mirror never gets here (rule 7): only role p is considered.
func primaryUp(lk lookups, p Segment, obs map[int]Observation) (SegmentUpdate, bool) {
	o, ok := obs[p.DBID]
	if p.Status == StatusUp || !ok || !o.Up || o.InRecovery {
		return SegmentUpdate{}, false
	}
	desc := fmt.Sprintf("primary of content %d created and up", p.Content)
	if !lk.pending[p.DBID] {
		desc = fmt.Sprintf("content %d: primary restarted in place; content up", p.Content)
	}
	return SegmentUpdate{DBID: p.DBID, Status: StatusUp, Desc: desc}, true
}

func mirrorCreated(lk lookups, m Segment, obs map[int]Observation) (SegmentUpdate, bool) {
	o, ok := obs[m.DBID]
	rec, recovering := lk.recovering(m.DBID)
	recovering = recovering && rec.Active
	building := lk.pending[m.DBID] || lk.rejoin[m.DBID] || recovering
	if m.Status == StatusUp || !building || !ok || !o.Up || !o.InRecovery || !o.Streaming {
		return SegmentUpdate{}, false
	}
	if recovering && o.RecoveredJob != rec.Job {
		return SegmentUpdate{}, false
	}
	desc := fmt.Sprintf("mirror of content %d created, streaming", m.Content)
	switch {
	case lk.rejoin[m.DBID]:
		desc = fmt.Sprintf("content %d: dbid %d rejoined as mirror, streaming", m.Content, m.DBID)
	case recovering:
		desc = fmt.Sprintf("content %d: dbid %d recovered (%s) as mirror, streaming", m.Content, m.DBID, rec.Kind)
	}
	return SegmentUpdate{DBID: m.DBID, Status: StatusUp, Desc: desc}, true
}

// switchover completes a planned swap once the old primary has stopped
// cleanly and its mirror has replayed past the shutdown checkpoint: the
// mirror then holds exactly the old primary's history (rule 4), and the
// old primary can follow it without a rewind. If the mirror is lost
// meanwhile, the switchover is abandoned and the primary, which holds
// everything, restarts in place.
func switchover(c int, p, m Segment, obs map[int]Observation) []SegmentUpdate {
	if failed(m, obs) {
		return []SegmentUpdate{
			{DBID: p.DBID, Status: StatusDown, Mode: ModeNotSynced,
				Desc: fmt.Sprintf("content %d: switchover abandoned, mirror dbid %d lost; primary restarts in place", c, m.DBID)},
			{DBID: m.DBID, Status: StatusDown, Mode: ModeNotSynced, Desc: fmt.Sprintf("content %d: mirror lost", c)},
		}
	}
	from, okF := obs[p.DBID]
	to, okT := obs[m.DBID]
	if !okF || !okT || from.StoppedLSN == 0 || !to.Up || !to.InRecovery || to.LSN <= from.StoppedLSN {
		return nil
	}
	return []SegmentUpdate{
		{DBID: m.DBID, Role: RolePrimary, Mode: ModeNotSynced,
			Desc: fmt.Sprintf("content %d: switchover: mirror replayed past the primary's shutdown checkpoint; promoted", c)},
		{DBID: p.DBID, Role: RoleMirror, Status: StatusDown, Mode: ModeNotSynced, Rejoin: true,
			Desc: fmt.Sprintf("content %d: switchover: old primary follows dbid %d as mirror", c, m.DBID)},
	}
}

func failed(s Segment, obs map[int]Observation) bool {
	o, ok := obs[s.DBID]
	return ok && o.Failed
}

func primaryLost(c int, p, m Segment, hasM bool, obs map[int]Observation) []SegmentUpdate {
	if hasM && m.Status == StatusUp && m.Mode == ModeSynced && p.Mode == ModeSynced && !failed(m, obs) {
		// Promote only a mirror its agent sees running as a standby;
		// while nothing is known of it, wait rather than demote the only
		// other copy.
		if o, seen := obs[m.DBID]; !seen || !o.Up || !o.InRecovery {
			return nil
		}
		return []SegmentUpdate{
			{DBID: m.DBID, Role: RolePrimary, Mode: ModeNotSynced,
				Desc: fmt.Sprintf("content %d: primary dbid %d lost; mirror promoted (it was in sync)", c, p.DBID)},
			{DBID: p.DBID, Role: RoleMirror, Status: StatusDown, Mode: ModeNotSynced,
				Desc: fmt.Sprintf("content %d: primary lost; marked down and demoted to mirror (failed over to dbid %d)", c, m.DBID)},
		}
	}
	why := "it has no mirror"
	switch {
	case hasM && (m.Status != StatusUp || failed(m, obs)):
		why = fmt.Sprintf("its mirror dbid %d is down", m.DBID)
	case hasM:
		why = fmt.Sprintf("its mirror dbid %d was not in sync", m.DBID)
	}
	out := []SegmentUpdate{{DBID: p.DBID, Status: StatusDown, Mode: ModeNotSynced,
		Desc: fmt.Sprintf("content %d DOWN: primary lost and %s (double fault): no promotion; the primary is restarted in place where its host is alive", c, why)}}
	if hasM && m.Status == StatusUp && failed(m, obs) {
		out = append(out, SegmentUpdate{DBID: m.DBID, Status: StatusDown, Mode: ModeNotSynced,
			Desc: fmt.Sprintf("content %d: mirror lost", c)})
	} else if hasM && m.Mode == ModeSynced {
		out = append(out, SegmentUpdate{DBID: m.DBID, Mode: ModeNotSynced,
			Desc: fmt.Sprintf("content %d: mirror not in sync: its primary is down", c)})
	}
	return out
}

func mirrorLost(c int, p, m Segment, obs map[int]Observation) []SegmentUpdate {
	var why string
	switch {
	case failed(m, obs):
		why = "mirror lost"
	case slices.Contains(obs[p.DBID].StalledMirrors, m.DBID):
		why = "mirror replication stalled"
	default:
		return nil
	}
	out := []SegmentUpdate{{DBID: m.DBID, Status: StatusDown, Mode: ModeNotSynced,
		Desc: fmt.Sprintf("content %d: %s; marked down, primary dbid %d stops waiting for it", c, why, p.DBID)}}
	if p.Mode != ModeNotSynced {
		out = append(out, SegmentUpdate{DBID: p.DBID, Mode: ModeNotSynced,
			Desc: fmt.Sprintf("content %d: pair not in sync", c)})
	}
	return out
}

// recoveryFailed ends a recovery whose agent reported it failed; the
// instance stays down and the reason goes into the history.
func recoveryFailed(lk lookups, m Segment, obs map[int]Observation) (SegmentUpdate, bool) {
	rec, ok := lk.recovering(m.DBID)
	o, seen := obs[m.DBID]
	if !ok || !rec.Active || !seen || o.RecoveryError == "" || o.RecoveryJob != rec.Job {
		return SegmentUpdate{}, false
	}
	return SegmentUpdate{DBID: m.DBID, RecoveryFailed: true,
		Desc: fmt.Sprintf("content %d: %s recovery of dbid %d failed: %s", m.Content, rec.Kind, m.DBID, o.RecoveryError)}, true
}

// AutoRecover returns the incremental recoveries auto_recover asks for:
// every mirror recorded down whose agent reports on it again (its host is
// back: not among lost), that can be recovered, and whose automatic
// recovery has not already failed since it went down. obs may hold the
// failed observations WithLostHosts gives a lost host's instances: they
// are no report, and a recovery started there would wait for an agent
// that is gone (a 1,000-agent bench left 32 such recoveries running).
func AutoRecover(t *Topology, obs map[int]Observation, lost map[string]bool) []RecoveryRequest {
	var out []RecoveryRequest
	for _, s := range t.Segments {
		if s.Role != RoleMirror || s.Status != StatusDown || lost[s.Hostname] || slices.Contains(t.NoAutoRecover, s.DBID) {
			continue
		}
		if _, seen := obs[s.DBID]; !seen || CanRecover(t, s.DBID) != nil {
			continue
		}
		if sw, ok := t.SwitchoverOf(s.Content); ok && (sw.From == s.DBID || sw.To == s.DBID) {
			continue
		}
		out = append(out, RecoveryRequest{DBID: s.DBID, Kind: RecoveryIncremental})
	}
	return out
}
