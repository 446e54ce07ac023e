package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/supervisor"
	"github.com/gpagent/gpagent/topology"
)

// syncCatchUpBytes is how far behind a mirror may be when its primary
// switches synchronous replication on. Switching it on for a mirror far
// behind would stall every commit until it caught up.
const syncCatchUpBytes = 16 << 20

// probe reads one local instance's health and turns it into a report.
func (e *executor) probe(ctx context.Context, t *topology.Topology, s topology.Segment) api.InstanceReport {
	inst := localInstance(s)
	st := e.state(s.DBID)
	r := api.InstanceReport{DBID: s.DBID, Host: e.a.cfg.Name, Seen: time.Now().UTC(), ConfigVersion: t.ConfigVersion}

	pid := e.a.drv.PID(inst)
	if pid == 0 {
		// After an agent restart the postmasters are still running: adopt
		// them, so their exit is seen at once, without restarting them.
		if p, ok, err := e.a.drv.Adopt(inst); err == nil && ok {
			pid = p
		}
	}
	r.PID = pid
	// One snapshot of the step's state: a switchover's stop and its
	// checkpoint position must be seen together, or a clean stop could
	// be reported as a crash.
	e.mu.Lock()
	r.Phase, r.Error, r.Progress = st.phase, st.lastErr, st.progress
	busy, stoppedLSN := st.busy, st.stoppedLSN
	e.mu.Unlock()
	if isSwitchoverSource(t, s) {
		r.StoppedLSN = stoppedLSN
	}
	if busy && (r.Phase == "creating" || r.Phase == "building") {
		// An instance being created is not up for anyone until its
		// creation step has finished (its roles and config are complete).
		e.setHealth(st, nil)
		return r
	}
	if rec, ok := t.Recovering(s.DBID); ok {
		e.mu.Lock()
		if st.recoveryJob == rec.Job {
			r.RecoveryError, r.RecoveryJob = st.recoveryErr, st.recoveryJob
		}
		// Read before the probe below: the probe then comes after the step.
		if st.recoveredJob == rec.Job {
			r.RecoveredJob = rec.Job
		}
		e.mu.Unlock()
	}
	if !isSwitchoverSource(t, s) {
		e.mu.Lock()
		st.stoppedLSN = 0
		e.mu.Unlock()
	}
	if pid == 0 {
		if !busy && r.Phase != "failed" {
			r.Phase = "stopped"
		}
		// Not running and nothing of ours is starting it: down for sure,
		// no probe needed. A switchover's source is down on purpose: only
		// a failed clean stop (a crash, say) makes it failed.
		r.Failed = !busy
		if isSwitchoverSource(t, s) {
			r.Failed = !busy && r.Phase == "failed"
		}
		e.setHealth(st, nil)
		return r
	}
	h, err := e.a.drv.Probe(ctx, inst)
	if err != nil {
		e.mu.Lock()
		st.probeFails++
		fails := st.probeFails
		e.mu.Unlock()
		if r.Error == "" {
			r.Error = fmt.Sprintf("probe %d of %d failed: %v", fails, e.a.live().ProbeRetries, err)
		}
		r.Failed = fails >= e.a.live().ProbeRetries
		if busy && isSwitchoverSource(t, s) {
			// Shutting down on purpose: its probes fail until it is
			// down. Only the stop step failing makes it failed.
			r.Failed = false
		}
		e.setHealth(st, nil)
		return r
	}
	e.mu.Lock()
	st.probeFails = 0
	e.mu.Unlock()
	e.setHealth(st, &h)
	if !e.isBusy(st) {
		r.Phase, r.Error = "running", ""
		e.setPhase(s.DBID, "running", "")
	}
	r.Up = true
	r.Recovery = h.InRecovery
	r.LSN, r.LSNValue = lsnString(h.CurrentLSN), h.CurrentLSN
	r.SyncStandbyNames = h.SyncStandbyNames
	r.Streaming = h.Receiver != nil && h.Receiver.Status == "streaming"
	for _, rep := range h.Replication {
		r.Replicas = append(r.Replicas, api.ReplicaState{
			ApplicationName: rep.ApplicationName,
			State:           rep.State,
			SyncState:       rep.SyncState,
			FlushLagBytes:   lag(h.CurrentLSN, rep.FlushLSN),
			ReplayLagBytes:  lag(h.CurrentLSN, rep.ReplayLSN),
		})
	}
	if m, ok := t.Mirror(s.Content); ok && s.Role == topology.RolePrimary && !h.InRecovery {
		if e.vouchSynced(st, h, supervisor.AppName(m.DBID)) {
			r.SyncedMirrors = []int{m.DBID}
		}
		if m.Status == topology.StatusUp && e.stalled(st, h, supervisor.AppName(m.DBID)) {
			r.StalledMirrors = []int{m.DBID}
		} else if m.Status != topology.StatusUp {
			// A mirror recorded down is not watched; once up again its
			// watch starts afresh.
			e.mu.Lock()
			st.stallApp = ""
			e.mu.Unlock()
		}
	}
	return r
}

// stalled says whether the mirror named app has made no replication
// progress for replication_stall_timeout: its row in pg_stat_replication
// is gone, or its flush position neither moved nor caught up. Both ends
// may look healthy to their agents meanwhile, while commits hang.
func (e *executor) stalled(st *instanceState, h supervisor.Health, app string) bool {
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if st.stallApp != app {
		st.stallApp, st.stallFlush, st.stallProgress = app, 0, now
	}
	for _, rep := range h.Replication {
		if rep.ApplicationName != app || rep.State != "streaming" {
			continue
		}
		if rep.FlushLSN >= h.CurrentLSN || rep.FlushLSN > st.stallFlush {
			st.stallFlush, st.stallProgress = rep.FlushLSN, now
		}
	}
	return now.Sub(st.stallProgress) > e.a.live().ReplicationStallTimeout
}

// vouchSynced says whether every commit this primary acknowledges is on the
// mirror named app: sync is on for it, the server says the standby is
// sync, and it has flushed past the point where sync was switched on.
func (e *executor) vouchSynced(st *instanceState, h supervisor.Health, app string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !syncNamesInclude(h.SyncStandbyNames, app) {
		// Sync is off for it: whatever was vouched before no longer
		// holds; the next switch-on starts from a fresh position.
		st.syncApp = ""
		return false
	}
	if st.syncApp != app {
		// Sync was switched on before this agent started: commits
		// acknowledged before now may predate it, so the mirror must
		// first flush past the current position.
		st.syncApp, st.syncFrom = app, h.CurrentLSN
		return false
	}
	for _, rep := range h.Replication {
		if rep.ApplicationName == app && rep.SyncState == "sync" && rep.State == "streaming" && rep.FlushLSN >= st.syncFrom {
			return true
		}
	}
	return false
}

// manageSync keeps a primary's synchronous_standby_names in line with the
// committed topology (safety rule 3): on for a mirror recorded up once it
// has nearly caught up, off only once the mirror is recorded down.
func (e *executor) manageSync(ctx context.Context, t *topology.Topology, p topology.Segment) {
	st := e.state(p.DBID)
	e.mu.Lock()
	h := st.health
	e.mu.Unlock()
	if h == nil || h.InRecovery {
		return
	}
	// A primary the topology still names, on a host whose lease is
	// valid: whatever fence an earlier cut left on it goes (a no-op that
	// reads one small file when there is none).
	if err := e.a.drv.Unfence(ctx, localInstance(p)); err != nil {
		e.log.Warn("unfence failed", "dbid", p.DBID, "err", err)
		return
	}
	m, hasMirror := t.Mirror(p.Content)
	var want []string
	switch {
	case hasMirror && m.Status == topology.StatusUp:
		app := supervisor.AppName(m.DBID)
		if syncNamesInclude(h.SyncStandbyNames, app) {
			return
		}
		if !caughtUp(h, app) {
			return
		}
		want = []string{app}
	case h.SyncStandbyNames == "":
		return
	}
	inst := localInstance(p)
	if err := e.a.drv.SetSyncStandby(ctx, inst, want); err != nil {
		e.log.Warn("set synchronous_standby_names failed", "dbid", p.DBID, "err", err)
		return
	}
	if len(want) == 0 {
		e.mu.Lock()
		st.health = nil
		e.mu.Unlock()
		e.log.Info("synchronous replication off: mirror recorded down", "dbid", p.DBID, "content", p.Content)
		return
	}
	// The mirror is vouched for only once it has flushed past a position
	// read after the switch: commits acknowledged before it did not wait.
	after, err := e.a.drv.Probe(ctx, inst)
	if err != nil {
		return
	}
	e.mu.Lock()
	st.syncApp, st.syncFrom = want[0], after.CurrentLSN
	// The last probe predates the switch: decide on a fresh one, now.
	st.health = nil
	e.mu.Unlock()
	e.log.Info("synchronous replication on", "dbid", p.DBID, "content", p.Content, "mirror", want[0], "from_lsn", lsnString(after.CurrentLSN))
	e.kick()
}

func caughtUp(h *supervisor.Health, app string) bool {
	for _, rep := range h.Replication {
		if rep.ApplicationName == app && rep.State == "streaming" {
			return lag(h.CurrentLSN, rep.FlushLSN) <= syncCatchUpBytes
		}
	}
	return false
}

// syncNamesInclude reports whether app is one of the names in a
// synchronous_standby_names value ("a", "FIRST 1 (a, b)", "\"a\"").
func syncNamesInclude(names, app string) bool {
	fields := strings.FieldsFunc(names, func(r rune) bool {
		return !(unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_')
	})
	return slices.Contains(fields, app)
}

func lag(current, pos uint64) int64 {
	if pos >= current {
		return 0
	}
	return int64(current - pos)
}

func (e *executor) isBusy(st *instanceState) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return st.busy
}

func (e *executor) setHealth(st *instanceState, h *supervisor.Health) {
	e.mu.Lock()
	st.health = h
	e.mu.Unlock()
}
