package agent

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/gpagent/gpagent/supervisor"
	"github.com/gpagent/gpagent/topology"
	"github.com/gpagent/gpagent/watchdog"
)

const fencedStandby = supervisor.FencedStandby

// lease is this agent's right to keep primaries writable (safety rule 5).
// It is renewed by every report the leader acknowledges (or by leading:
// a Raft leader has heard from a quorum within its leader lease), and
// runs on the local monotonic clock only. The leader promotes nothing on
// a host before lease plus a margin has passed since it last heard from
// it, so by then this agent has fenced its primaries.
type lease struct {
	mu      sync.Mutex
	renewed time.Time
	fenced  bool
	// pending: acknowledged reports not yet applied to the lease, each
	// waiting for the local topology to reach the leader's version.
	pending topology.PendingRenewals
	// path records each renewal on the boot clock, so that a restarted
	// agent resumes the lease its previous run held rather than granting
	// itself a fresh one ("" in tests: nothing recorded).
	path   string
	bootID string
	// renewedBoot is renewed on CLOCK_BOOTTIME, as recorded in path (0:
	// none recorded); recordedAt is when it was written, on the agent's
	// clock.
	renewedBoot int64
	recordedAt  time.Time
	// recordGap: see recordGap.
	recordGap time.Duration
	// fencedRecorded is the last fence record written for the watchdog.
	fencedRecorded string
	log            *slog.Logger
	// epoch counts the times the fence went up: an unfence started in
	// one epoch and finished in another may have landed after a fence.
	epoch uint64
	// renewedCh wakes the fence watch on each renewal, to reset its timer.
	renewedCh chan struct{}
}

// leaseFile, in the agent's data dir, holds the boot id and the last
// renewal on CLOCK_BOOTTIME, which runs on across agent restarts (not
// across reboots, which the boot id tells apart). The fence watchdog
// reads it too.
const leaseFile = watchdog.LeaseFile

// newLease resumes the lease recorded in dataDir by an earlier run of the
// agent on this boot. No record (a first start, or a wiped data dir), a
// record from an earlier boot, or one that cannot be read, is no lease:
// the primaries are fenced until the leader is heard from. A missing file
// must not grant a lease: an agent whose data dir was wiped may have been
// cut off for longer than its lease when it restarts, and its mirrors
// promoted meanwhile.
func newLease(dataDir string, now time.Time, log *slog.Logger) *lease {
	l := &lease{path: filepath.Join(dataDir, leaseFile), bootID: watchdog.BootID(), log: log, renewedCh: make(chan struct{}, 1)}
	st, ok := watchdog.ReadStamp(dataDir)
	boot, berr := watchdog.BootNanos()
	if !ok || berr != nil || st.BootID != l.bootID || l.bootID == "" || st.Renewed > boot {
		l.renewed = time.Time{}
		return l
	}
	l.renewed = now.Add(-time.Duration(boot - st.Renewed))
	l.renewedBoot = st.Renewed
	return l
}

// recordGap is the least time between two writes of the lease record, for
// a lease of d: a thirtieth of it (100 ms for the default 3 s), at most
// 100 ms. A leader renews its lease on every round of its own executor,
// and each commit wakes it: through a 1,000-host init the leader wrote
// the record a hundred times a second, a fifth of its CPU. The record is
// then at most this much older than the lease, which only brings the
// watchdog's kill (and a restarted agent's fence) that much earlier; the
// watchdog's grace (a sixth of the lease) and live grace (a quarter) are
// five times longer or more, so an agent that renews still fences before
// the watchdog would kill.
func recordGap(d time.Duration) time.Duration { return min(d/30, 100*time.Millisecond) }

// renew extends the lease from the moment the renewing request was sent;
// now is the agent's clock, to place sent on the boot clock.
func (l *lease) renew(sent, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !sent.After(l.renewed) {
		return
	}
	l.renewed = sent
	select {
	case l.renewedCh <- struct{}{}:
	default:
	}
	if l.path == "" || (!l.recordedAt.IsZero() && now.Sub(l.recordedAt) < l.recordGap) {
		return
	}
	l.recordedAt = now
	boot, err := watchdog.BootNanos()
	if err != nil {
		return
	}
	// Replaced whole: the watchdog reads it at any moment, and a torn
	// record would read as no lease.
	l.renewedBoot = boot - int64(now.Sub(sent))
	rec := watchdog.FormatStamp(watchdog.Stamp{BootID: l.bootID, Renewed: l.renewedBoot})
	if err := watchdog.WriteFileAtomic(l.path, rec); err != nil && l.log != nil {
		l.log.Warn("cannot record the lease renewal; a restart of this agent will fence its primaries until the leader is heard from, and the fence watchdog will kill them when this lease ends", "path", l.path, "err", err)
	}
}

// recordFenced tells the fence watchdog that the primaries dbids are
// fenced (or safe) for the current lease, so that it leaves them to the
// agent. A primary not recorded, the watchdog kills a grace after the
// lease ends.
func (l *lease) recordFenced(dbids []int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.path == "" {
		return
	}
	rec := watchdog.FormatFenced(watchdog.Fenced{Renewed: l.renewedBoot, DBIDs: dbids})
	if string(rec) == l.fencedRecorded {
		return // fenceNow runs again and again while fenced
	}
	path := filepath.Join(filepath.Dir(l.path), watchdog.FencedFile)
	if err := watchdog.WriteFileAtomic(path, rec); err != nil {
		if l.log != nil {
			l.log.Warn("cannot record the fence for the fence watchdog: it will kill the fenced primaries", "path", path, "err", err)
		}
		return
	}
	l.fencedRecorded = string(rec)
}

// acked records the leader's acknowledgement, at config version
// version, of a report sent at sent; applyAcked renews the lease with it
// once a report made on that version is acknowledged.
func (l *lease) acked(sent time.Time, version uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending.Acked(sent, version)
}

// applyAcked renews the lease with the acknowledgements whose version is
// at most applied, the version acknowledged reports were made on.
func (l *lease) applyAcked(applied uint64, now time.Time) {
	l.mu.Lock()
	sent, ok := l.pending.Applied(applied)
	l.mu.Unlock()
	if ok {
		l.renew(sent, now)
	}
}

// expired reports whether more than d has passed since the last renewal,
// at now on the agent's clock.
func (l *lease) expired(now time.Time, d time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return topology.LeaseExpired(l.renewed, now, d)
}

// remaining is how long the lease has to run at now (0 or less: it ran
// out). It ends just past renewed+d, where expired turns true.
func (l *lease) remaining(now time.Time, d time.Duration) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.renewed.Add(d).Sub(now) + time.Nanosecond
}

// age is how long ago the lease was last renewed, at now.
func (l *lease) age(now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return now.Sub(l.renewed)
}

// renewals delivers a value after a renewal (at most one pending).
func (l *lease) renewals() <-chan struct{} { return l.renewedCh }

// valid reports whether the lease holds at now: renewed within d and not
// fenced. The health endpoints answer from it.
func (l *lease) valid(now time.Time, d time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.fenced && !topology.LeaseExpired(l.renewed, now, d)
}

// validEpoch is valid, with the fence epoch it was read in.
func (l *lease) validEpoch(now time.Time, d time.Duration) (uint64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.epoch, !l.fenced && !topology.LeaseExpired(l.renewed, now, d)
}

func (l *lease) setFenced(f bool) (changed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	changed = l.fenced != f
	l.fenced = f
	if changed && f {
		l.epoch++
	}
	return changed
}

func (l *lease) isFenced() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fenced
}

// checkLease, once per executor round, backs the fence watch up (it
// fences what the watch may have missed: a primary the topology gave this
// host after the lease ran out) and lifts the fence once the lease is
// renewed: then the topology decides again, and manageSync restores
// synchronous_standby_names for a primary that is still one.
func (e *executor) checkLease(ctx context.Context) {
	if e.a.lease.expired(e.a.clock.Now(), e.a.cfg.Lease) {
		e.a.fenceNow(ctx)
		return
	}
	e.a.liftFence()
}

// lostHosts returns the hosts the leader has not heard from for longer
// than lease plus margin at now (topology.LastHeard.Lost): their agents
// have fenced their primaries by then, so their instances count as
// failed. A host this leader never heard from gets a full wait from the
// start of its term (or from now, for a new host).
func (l *leader) lostHosts(t *topology.Topology, now time.Time) map[string]bool {
	wait := l.a.cfg.Lease + l.a.cfg.LeaseMargin
	l.mu.Lock()
	defer l.mu.Unlock()
	var lost map[string]bool
	// A host reporting on an older version, never heard this term, is
	// catching up (a client before its first answer, a replica replaying
	// its log at init): one more wait before it counts lost.
	l.heard, lost = l.heard.LostWithGrace(l.a.indexed(t).Hosts(), now, wait, wait)
	return lost
}

// nextLoss is how long until the next host of t counts lost (lostHosts),
// if one can: the reconcile loop wakes then.
func (l *leader) nextLoss(t *topology.Topology, now time.Time) (time.Duration, bool) {
	wait := l.a.cfg.Lease + l.a.cfg.LeaseMargin
	l.mu.Lock()
	defer l.mu.Unlock()
	at, ok := l.heard.NextLost(l.a.indexed(t).Hosts(), now, wait, wait)
	if !ok {
		return 0, false
	}
	// Just past the instant: LeaseExpired is strict.
	return max(at.Sub(now), 0) + time.Millisecond, true
}
