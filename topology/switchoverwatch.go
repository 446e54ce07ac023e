package topology

import (
	"fmt"
	"time"
)

// SwitchoverBound is how long a switchover waits, after its primary's
// clean stop is seen, for the mirror to replay past the shutdown
// checkpoint while making no progress: replication_stall_timeout (the
// cluster's own measure of "replication makes no progress"), plus the
// age of a report the leader still acts on (3 probe intervals and a
// probe timeout: the mirror's agent must probe and report once more
// after its replay, and a report may lag that long). With the defaults
// (5 s, 1 s, 500 ms) that is 8.5 s. A mirror that was streaming gets the
// checkpoint within milliseconds of the stop, so this only ends a
// switchover that is stuck.
func SwitchoverBound(probeInterval, probeTimeout, stallTimeout time.Duration) time.Duration {
	return stallTimeout + 3*probeInterval + probeTimeout
}

// SwitchoverWatch is the leader's record, per switchover in progress, of
// when it first saw the old primary stopped cleanly and when the
// mirror's replay position last moved. It lives in the leader's memory:
// a new leader starts it afresh, which only waits longer.
type SwitchoverWatch map[Switchover]SwitchoverSeen

// SwitchoverSeen is when the mirror's replay position was last seen to
// move (or the stop first seen), and that position.
type SwitchoverSeen struct {
	At  time.Time
	LSN uint64
}

// Overdue updates w from the fresh observations at now and returns, for
// every switchover whose mirror has not replayed past the old primary's
// shutdown checkpoint and made no progress for bound since the stop was
// seen, the updates that abandon it: a mirror that stalls without
// failing (its link hangs, or it was cut off as the primary stopped and
// never got the checkpoint) would otherwise leave the content with no
// primary for ever. The old primary, stopped cleanly, holds every
// acknowledged commit: it is recorded down, so its agent restarts it in
// place as primary (and it is recorded up once it answers); the mirror
// stays mirror, not in sync, and the switchover ends.
//
// Nothing is abandoned while the primary's own agent is not heard (its
// stop unconfirmed: the lost-host rule handles that primary), while the
// mirror is failed (Decide abandons it), or once the mirror is past the
// checkpoint (Decide completes it): the two never race, since both are
// computed from the same topology and a command applies only to the
// version it was computed from.
func (w SwitchoverWatch) Overdue(t *Topology, obs map[int]Observation, now time.Time, bound time.Duration) []SegmentUpdate {
	var out []SegmentUpdate
	live := map[Switchover]bool{}
	for _, sw := range t.Switchovers {
		live[sw] = true
		p, okP := t.Segment(sw.From)
		m, okM := t.Segment(sw.To)
		from, heard := obs[sw.From]
		if !okP || !okM || p.Role != RolePrimary || p.Status != StatusUp || m.Role != RoleMirror ||
			!heard || from.StoppedLSN == 0 || from.ConfigVersion < sw.Version || failed(m, obs) {
			delete(w, sw)
			continue
		}
		to, seen := obs[sw.To]
		var lsn uint64
		if seen && to.Up && to.InRecovery {
			if to.LSN > from.StoppedLSN {
				continue // Decide completes it
			}
			lsn = to.LSN
		}
		last, ok := w[sw]
		if !ok || lsn > last.LSN {
			w[sw] = SwitchoverSeen{At: now, LSN: max(lsn, last.LSN)}
			continue
		}
		if now.Sub(last.At) < bound {
			continue
		}
		// Kept until the switchover leaves the topology: if this round's
		// command is not committed, the next round abandons it again.
		out = append(out,
			SegmentUpdate{DBID: p.DBID, Status: StatusDown, Mode: ModeNotSynced,
				Desc: fmt.Sprintf("content %d: switchover abandoned: mirror dbid %d did not replay past the primary's shutdown checkpoint (lsn %d; mirror at %d) within %s; primary dbid %d, stopped cleanly with every commit, restarts in place as primary",
					sw.Content, m.DBID, from.StoppedLSN, last.LSN, bound, p.DBID)},
			SegmentUpdate{DBID: m.DBID, Mode: ModeNotSynced,
				Desc: fmt.Sprintf("content %d: dbid %d stays mirror, not in sync (switchover abandoned)", sw.Content, m.DBID)},
		)
	}
	for sw := range w {
		if !live[sw] {
			delete(w, sw)
		}
	}
	return out
}
