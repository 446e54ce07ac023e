package agent

import (
	"context"
	"fmt"
	"time"

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
	r := api.InstanceReport{DBID: s.DBID, Host: e.a.cfg.Name, Seen: e.a.clock.Now().UTC(), ConfigVersion: t.ConfigVersion}

	// Adopt every running postmaster, not only when PID finds none: PID
	// reads postmaster.pid and so finds the postmasters an earlier agent
	// left running, but only an adopted one's exit is delivered on
	// Exits. Without it, a restarted agent would see a crash only at its
	// next probe round. Adopting a tracked postmaster is a lookup.
	pid, ok, err := e.a.drv.Adopt(inst)
	if err != nil || !ok {
		pid = e.a.drv.PID(inst)
	}
	r.PID = pid
	// One snapshot of the step's state: a switchover's stop and its
	// checkpoint position must be seen together, or a clean stop could
	// be reported as a crash.
	e.mu.Lock()
	phase := st.phase
	r.Phase, r.Error, r.Progress = phase.String(), st.lastErr, st.progress
	busy, stoppedLSN := st.busy, st.stoppedLSN
	e.mu.Unlock()
	if isSwitchoverSource(t, s) {
		r.StoppedLSN = stoppedLSN
	}
	if busy && phase.Creating() {
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
		if !busy && phase != topology.PhaseFailed {
			r.Phase = topology.PhaseStopped.String()
		}
		// Not running and nothing of ours is starting it: down for sure,
		// no probe needed. A switchover's source is down on purpose: only
		// a failed clean stop (a crash, say) makes it failed.
		r.Failed = topology.ProbeResult{
			Busy:             busy,
			SwitchoverSource: isSwitchoverSource(t, s),
			StepFailed:       phase == topology.PhaseFailed,
			Retries:          e.a.live().ProbeRetries,
		}.Failed()
		e.setHealth(st, nil)
		return r
	}
	h, err := e.a.drv.Probe(ctx, inst)
	if err != nil {
		e.mu.Lock()
		st.probes = st.probes.Failed()
		fails := st.probes
		e.mu.Unlock()
		if r.Error == "" {
			r.Error = fmt.Sprintf("probe %d of %d failed: %v", fails.Count(), e.a.live().ProbeRetries, err)
		}
		// Hung after probe_retries failures in a row, unless it is a
		// switchover's source shutting down on purpose.
		r.Failed = topology.ProbeResult{
			Running:          true,
			Failures:         fails,
			Retries:          e.a.live().ProbeRetries,
			Busy:             busy,
			SwitchoverSource: isSwitchoverSource(t, s),
		}.Failed()
		e.setHealth(st, nil)
		switch {
		case r.Failed && !busy && s.Role == topology.RolePrimary && t.Paused:
			// Nothing is promoted while failover is paused, so a kill
			// would only turn the pause (an operator's maintenance,
			// perhaps this very stop) into an outage. Not reported
			// failed: after resume the next probe kills it first.
			r.Failed = false
			r.Error = "hung, left running because failover is paused (killed and failed over after resume): " + r.Error
		case r.Failed && !busy && s.Role == topology.RolePrimary:
			e.killHung(ctx, inst, &r)
		}
		return r
	}
	e.mu.Lock()
	st.probes = st.probes.Answered()
	e.mu.Unlock()
	e.setHealth(st, &h)
	if !e.isBusy(st) {
		r.Phase, r.Error = topology.PhaseRunning.String(), ""
		e.setPhase(s.DBID, topology.PhaseRunning, "")
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
			FlushLagBytes:   topology.Lag(h.CurrentLSN, rep.FlushLSN),
			ReplayLagBytes:  topology.Lag(h.CurrentLSN, rep.ReplayLSN),
		})
	}
	if m, ok := t.Mirror(s.Content); ok && s.Role == topology.RolePrimary && !h.InRecovery {
		synced, stalled := e.watchMirror(st, h, m)
		if synced {
			r.SyncedMirrors = []int{m.DBID}
		}
		if stalled {
			r.StalledMirrors = []int{m.DBID}
		}
	}
	return r
}

// hungKillTimeout bounds the wait for a killed instance's processes to
// exit (the SIGKILLs themselves are sent at once).
const hungKillTimeout = 10 * time.Second

// killHung kills a primary that runs but has failed probe_retries probes
// in a row, before r reports it failed: an instance reported failed must
// not accept a write (DESIGN safety rule 1). Reported failed, it lets the
// leader promote its mirror; left running, a frozen postmaster that is
// thawed, or its backends that never stopped (a SIGSTOP of the postmaster
// alone leaves them serving their sessions), would go on committing
// beside the promoted mirror. When the kill fails the instance is not
// reported failed: no failover is better than two writable primaries.
func (e *executor) killHung(ctx context.Context, inst supervisor.Instance, r *api.InstanceReport) {
	kctx, cancel := context.WithTimeout(ctx, hungKillTimeout)
	defer cancel()
	e.log.Warn("primary hung: killing it before reporting it failed", "dbid", inst.DBID, "pid", r.PID, "err", r.Error)
	if err := e.a.drv.Kill(kctx, inst); err != nil {
		e.log.Error("kill of a hung primary failed: not reported failed", "dbid", inst.DBID, "err", err)
		r.Failed = false
		r.Error = fmt.Sprintf("hung, and the kill failed: %v", err)
		return
	}
	r.PID = 0
	r.Error = "killed: " + r.Error
}

// replicationHealth is what the sync and stall rules read of a probe.
func replicationHealth(h supervisor.Health) topology.ReplicationHealth {
	rows := make([]topology.ReplicaRow, len(h.Replication))
	for i, rep := range h.Replication {
		rows[i] = topology.ReplicaRow{App: rep.ApplicationName, State: rep.State, SyncState: rep.SyncState, Flush: rep.FlushLSN}
	}
	return topology.ReplicationHealth{CurrentLSN: h.CurrentLSN, SyncStandbyNames: h.SyncStandbyNames, Replicas: rows}
}

// watchMirror steps a primary's sync vouch and stall watch of its mirror m
// with one probe h. synced: every commit the primary acknowledges is on
// the mirror (topology.SyncVouch). stalled: the mirror, recorded up, has
// made no replication progress for replication_stall_timeout
// (topology.StallWatch); both ends may look healthy to their agents
// meanwhile, while commits hang.
func (e *executor) watchMirror(st *instanceState, h supervisor.Health, m topology.Segment) (synced, stalled bool) {
	rh, app, now := replicationHealth(h), supervisor.AppName(m.DBID), e.a.clock.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	st.sync, synced = st.sync.Step(rh, app)
	if m.Status != topology.StatusUp {
		// A mirror recorded down is not watched; once up again its
		// watch starts afresh.
		st.stall = topology.StallWatch{}
		return synced, false
	}
	st.stall, stalled = st.stall.Step(rh, app, now, e.a.live().ReplicationStallTimeout)
	return synced, stalled
}

// startManageSync runs manageSync for primary p in the background, with
// a deadline, at most one at a time per instance: a reload that hangs on
// one stuck backend must not hold up the round, and with it the probes,
// reports, lease and fence of every other instance on the host.
func (e *executor) startManageSync(ctx context.Context, t *topology.Topology, p topology.Segment) {
	st := e.state(p.DBID)
	e.mu.Lock()
	if st.syncing {
		e.mu.Unlock()
		return
	}
	st.syncing = true
	e.mu.Unlock()
	go func() {
		defer func() {
			e.mu.Lock()
			st.syncing = false
			e.mu.Unlock()
		}()
		sctx, cancel := context.WithTimeout(ctx, e.syncTimeout())
		defer cancel()
		e.manageSync(sctx, t, p)
	}()
}

// syncTimeout bounds one sync switch (write the config, reload, see it
// applied): as long as the probes take to declare a hung server failed,
// and at least a second.
func (e *executor) syncTimeout() time.Duration {
	c := e.a.live()
	return max(time.Duration(c.ProbeRetries)*c.ProbeTimeout, time.Second)
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
	// Only on a lease valid now; and if the fence watch fenced the host
	// while this ran, its fence may have landed before the unfence or the
	// switch below (both rewrite what the fence set): fence again.
	epoch, ok := e.a.lease.validEpoch(e.a.clock.Now(), e.a.cfg.Lease)
	if !ok {
		return
	}
	defer func() {
		if ep, ok := e.a.lease.validEpoch(e.a.clock.Now(), e.a.cfg.Lease); !ok || ep != epoch {
			// Past this call's own deadline, maybe: the fence has its own.
			e.a.fenceOne(context.WithoutCancel(ctx), p, st)
		}
	}()
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
		if topology.SyncNamesInclude(h.SyncStandbyNames, app) {
			return
		}
		if !replicationHealth(*h).CaughtUp(app, syncCatchUpBytes) {
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
	st.sync = topology.SyncSwitchedOn(want[0], after.CurrentLSN)
	// The last probe predates the switch: decide on a fresh one, now.
	st.health = nil
	e.mu.Unlock()
	e.log.Info("synchronous replication on", "dbid", p.DBID, "content", p.Content, "mirror", want[0], "from_lsn", lsnString(after.CurrentLSN))
	e.kick()
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
