package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/supervisor"
	"github.com/gpagent/gpagent/topology"
)

// executor carries out this host's part of the committed topology: it
// creates, starts and configures the local instances, probes them and
// reports what it sees to the leader. It acts only on committed state
// (safety rule 6): it never decides a role by itself.
type executor struct {
	a    *Agent
	log  *slog.Logger
	wake chan struct{} // a step finished: run a round now

	mu    sync.Mutex
	local map[int]*instanceState
	// last holds the reports of the latest round, for gossip.
	last []api.InstanceReport
	// leaderVersion is the config version the leader had committed when
	// it last acknowledged a report (or this agent's own, after its
	// barrier as leader): the executor acts only on a topology at least
	// that recent.
	leaderVersion uint64
	caughtUp      bool
}

// markCaughtUp records the leader's committed version.
func (e *executor) markCaughtUp(v uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.leaderVersion, e.caughtUp = max(e.leaderVersion, v), true
}

// caughtUpWith reports whether t is at least the leader's last known
// committed version.
func (e *executor) caughtUpWith(t *topology.Topology) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.caughtUp && t.ConfigVersion >= e.leaderVersion
}

func (e *executor) lastReports() []api.InstanceReport {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.last
}

// instanceState is what the executor remembers of one local instance
// between rounds; none of it is needed after a restart.
type instanceState struct {
	busy     bool // a long step (initdb, base backup, start) runs
	phase    string
	progress *api.Progress
	lastErr  string
	// syncFrom is the primary's WAL position when synchronous replication
	// to its mirror was switched on: the mirror is vouched in sync once
	// it has flushed past it.
	syncFrom uint64
	syncApp  string
	health   *supervisor.Health // last probe; nil when it failed
	// probeFails counts probes failed in a row: probe_retries of them
	// make a running but unresponsive (hung) instance failed.
	probeFails int
	// Replication stall watch of a primary's mirror: the last flush
	// position seen and when it last moved or was caught up.
	stallApp      string
	stallFlush    uint64
	stallProgress time.Time
	// stoppedLSN: the shutdown checkpoint of a primary stopped for a
	// switchover.
	stoppedLSN uint64
	// retryAt: a failed step is not tried again before it; backoff is
	// the current wait.
	retryAt time.Time
	backoff time.Duration
	// recoveryErr: the recovery of job recoveryJob failed here; it is
	// reported, and not retried until the operator asks again.
	recoveryErr string
	recoveryJob int
	// recoveredJob: the recovery step of this job finished here; probes
	// from then on are reported as made after it.
	recoveredJob int
}

func newExecutor(a *Agent) *executor {
	return &executor{a: a, log: a.log.With("component", "executor"), local: map[int]*instanceState{}, wake: make(chan struct{}, 1)}
}

func (e *executor) kick() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

func (e *executor) state(dbid int) *instanceState {
	e.mu.Lock()
	defer e.mu.Unlock()
	st, ok := e.local[dbid]
	if !ok {
		st = &instanceState{phase: "unknown"}
		e.local[dbid] = st
	}
	return st
}

func (e *executor) run(ctx context.Context) {
	for {
		e.round(ctx)
		// A failed probe is retried at once rather than after a full
		// interval: a hung primary is then declared failed after
		// probe_retries timeouts, not probe_retries intervals.
		next := e.a.live().ProbeInterval
		if e.retrying() || e.transitioning() {
			next = min(next, probeRetryDelay)
		}
		select {
		case <-ctx.Done():
			return
		case <-e.a.node.Changes():
		case <-e.wake:
		case dbid := <-e.a.drv.Exits():
			e.log.Warn("postmaster exited", "dbid", dbid)
		case <-time.After(next):
		}
	}
}

// probeRetryDelay is the pause before probing again after a failure.
const probeRetryDelay = 100 * time.Millisecond

// transitioning reports whether the topology is in the middle of a step
// the leader completes on this agent's next report (a switchover waiting
// for the mirror to replay past the old primary's checkpoint, a pair
// waiting to be vouched in sync): report often until it is done, so a
// planned switchover does not wait out a probe interval.
func (e *executor) transitioning() bool {
	t := e.a.node.Topology()
	if len(t.Switchovers) > 0 || len(t.Rejoin) > 0 {
		return true
	}
	for _, s := range t.OnHost(e.a.cfg.Name) {
		if s.Role != topology.RolePrimary || s.Status != topology.StatusUp || s.Mode == topology.ModeSynced {
			continue
		}
		// A mirror recorded up, the pair not yet in sync: sync is one
		// probe away from being switched on (once the mirror has caught
		// up), or on and the vouch one report away.
		if m, ok := t.Mirror(s.Content); ok && m.Status == topology.StatusUp {
			return true
		}
	}
	return false
}

// retrying reports whether a local instance's last probe failed.
func (e *executor) retrying() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, st := range e.local {
		if st.probeFails > 0 && st.probeFails < e.a.live().ProbeRetries {
			return true
		}
	}
	return false
}

// round brings every local instance one step closer to the topology and
// reports all of them.
func (e *executor) round(ctx context.Context) {
	t := e.a.node.Topology()
	mine := t.OnHost(e.a.cfg.Name)
	if len(mine) == 0 {
		return
	}
	// Nothing is done before this agent is known to have applied the
	// leader's topology: after a restart, Raft replays the log from the
	// last snapshot only once it hears from a leader, and until then the
	// local topology is an old one (one in which a mirror promoted since
	// was still primary, say). Probes and reports go on meanwhile.
	acting := e.caughtUpWith(t)
	// Act on a new topology at once, on what the last probes saw: a
	// promotion must not wait for this round's probes, one of which may
	// be hanging on the very primary that was lost.
	if acting {
		for _, s := range mine {
			e.ensure(ctx, t, s)
		}
	}
	// Probes run in parallel: a hung instance costs one probe_timeout
	// per round, not one per instance.
	reports := make([]api.InstanceReport, len(mine))
	var wg sync.WaitGroup
	for i, s := range mine {
		wg.Go(func() { reports[i] = e.probe(ctx, t, s) })
	}
	wg.Wait()
	e.mu.Lock()
	e.last = reports
	e.mu.Unlock()
	e.report(ctx, reports)
	e.checkLease(ctx, t)
	if !acting {
		return
	}
	for _, s := range mine {
		e.ensure(ctx, t, s)
	}
}

// ensure starts the step the instance needs, if any, in the background,
// so probes and reports of the others go on meanwhile. It acts only on
// the committed topology: an instance is created only while pending,
// promoted only once the topology names it primary, and an instance the
// topology has demoted is never started (safety rule 7).
func (e *executor) ensure(ctx context.Context, t *topology.Topology, s topology.Segment) {
	st := e.state(s.DBID)
	e.mu.Lock()
	busy, h, retryAt := st.busy, st.health, st.retryAt
	hung := st.probeFails >= e.a.live().ProbeRetries
	e.mu.Unlock()
	if busy || time.Now().Before(retryAt) {
		return
	}
	inst := localInstance(s)
	running := e.a.drv.PID(inst) != 0
	var step func(context.Context) error
	var phase string
	switch {
	case t.IsPending(s.DBID) && s.Role == topology.RolePrimary:
		phase = "creating"
		step = func(ctx context.Context) error { return e.a.drv.InitPrimary(ctx, t.ClusterID, inst) }
	case t.IsPending(s.DBID) && s.Role == topology.RoleMirror:
		p, ok := t.Primary(s.Content)
		if !ok || p.Status != topology.StatusUp {
			e.setPhase(s.DBID, "waiting for primary", "")
			return
		}
		phase = "building"
		up := e.a.copyUpstream(p)
		step = func(ctx context.Context) error {
			started := time.Now()
			return e.a.drv.CreateMirror(ctx, t.ClusterID, inst, up, func(done, total int64) {
				e.mu.Lock()
				st.progress = &api.Progress{Step: copyStep(up), Done: done, Total: total, Started: started}
				e.mu.Unlock()
			})
		}
	case s.Role == topology.RolePrimary && s.Status == topology.StatusUp && running && h != nil && h.InRecovery:
		// The leader promoted this mirror.
		phase = "promoting"
		step = func(ctx context.Context) error { return e.a.drv.Promote(ctx, inst) }
	case s.Role == topology.RolePrimary && s.Status == topology.StatusDown && !t.IsPending(s.DBID) && (!running || hung):
		// Double fault: this primary holds the only complete copy of its
		// content, so it comes back in place; a hung one is stopped first.
		phase = "restarting in place"
		step = func(ctx context.Context) error {
			if running {
				sctx, cancel := context.WithTimeout(ctx, time.Second)
				err := e.a.drv.Stop(sctx, inst)
				cancel()
				if err != nil {
					return err
				}
			}
			return e.a.drv.Start(ctx, inst)
		}
	case isSwitchoverSource(t, s) && running:
		// A planned switchover: a clean shutdown sends every WAL record,
		// the shutdown checkpoint last, to the connected mirror.
		phase = "switchover: stopping cleanly"
		step = func(ctx context.Context) error {
			sctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if err := e.a.drv.Stop(sctx, inst); err != nil {
				return err
			}
			return e.readStoppedLSN(ctx, st, inst)
		}
	case isSwitchoverSource(t, s) && !running && e.stoppedLSN(st) == 0:
		phase = "switchover: reading checkpoint"
		step = func(ctx context.Context) error { return e.readStoppedLSN(ctx, st, inst) }
	case s.Role == topology.RoleMirror && t.IsRejoining(s.DBID) && !running:
		p, ok := t.Primary(s.Content)
		if !ok {
			return
		}
		phase = "rejoining as mirror"
		up := supervisor.Upstream{Address: p.Address, Port: p.Port}
		step = func(ctx context.Context) error { return e.a.drv.Rejoin(ctx, inst, up) }
	case e.recoveryDue(t, s, st) && (!running || (h != nil && (!h.InRecovery || !e.recoveryDone(t, s, st)))):
		// Not again once this job's step has run and the instance runs
		// as a standby: the leader records it up when it streams. A
		// standby that kept running through a cut is stepped too: its
		// replication connection may have died with the cut.
		rec, _ := t.Recovering(s.DBID)
		p, ok := t.Primary(s.Content)
		if !ok || p.Status != topology.StatusUp {
			e.setPhase(s.DBID, "recovery waiting for the primary", "")
			return
		}
		phase = fmt.Sprintf("recovering (%s)", rec.Kind)
		up := supervisor.Upstream{Address: p.Address, Port: p.Port}
		if rec.Kind != topology.RecoveryIncremental {
			up = e.a.copyUpstream(p)
		}
		step = e.recoveryStep(t.ClusterID, inst, rec, up, st)
	case s.Role == topology.RoleMirror && s.Status == topology.StatusDown && !t.IsPending(s.DBID) && !t.IsRejoining(s.DBID) && !recovering(t, s.DBID) && running && (h == nil || !h.InRecovery):
		// A demoted primary still running (hung, or cut off): fence it.
		// Its mirror was promoted; it must take no more connections.
		phase = "fencing"
		step = func(ctx context.Context) error {
			fctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			return e.a.drv.Stop(fctx, inst)
		}
	default:
		if s.Role == topology.RolePrimary && s.Status == topology.StatusUp && running && !e.a.lease.isFenced() {
			e.manageSync(ctx, t, s)
		}
		return
	}
	e.runStep(ctx, s, st, phase, step)
}

// runStep runs one long step of an instance in the background.
func (e *executor) runStep(ctx context.Context, s topology.Segment, st *instanceState, phase string, step func(context.Context) error) {
	e.mu.Lock()
	st.busy, st.phase, st.lastErr = true, phase, ""
	e.mu.Unlock()
	e.log.Info(phase, "dbid", s.DBID, "content", s.Content, "role", s.Role)
	go func() {
		err := step(ctx)
		e.mu.Lock()
		st.busy = false
		st.progress = nil
		st.probeFails = 0
		// What the last probe saw predates the step: decide again only
		// on a fresh one.
		st.health = nil
		if err != nil {
			st.phase, st.lastErr = "failed", phase+": "+err.Error()
			// Back off before trying again, doubling up to a limit: a
			// step that fails at once (a port taken) must not spin.
			st.backoff = min(max(2*st.backoff, time.Second), 30*time.Second)
			st.retryAt = time.Now().Add(st.backoff)
		} else {
			st.phase, st.backoff, st.retryAt = "running", 0, time.Time{}
		}
		backoff := st.backoff
		e.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			e.log.Error(phase+" failed", "dbid", s.DBID, "content", s.Content, "err", err, "retry_in", backoff)
		}
		if err == nil {
			e.kick()
		}
	}()
}

func (e *executor) setPhase(dbid int, phase, errText string) {
	st := e.state(dbid)
	e.mu.Lock()
	st.phase, st.lastErr = phase, errText
	e.mu.Unlock()
}

// stopAll stops every local instance (used when the agent is configured to
// take its instances down with it, as the demo is).
func (e *executor) stopAll(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	t := e.a.node.Topology()
	var wg sync.WaitGroup
	for _, s := range t.OnHost(e.a.cfg.Name) {
		wg.Go(func() {
			if err := e.a.drv.Stop(ctx, localInstance(s)); err != nil {
				e.log.Error("stop failed", "dbid", s.DBID, "err", err)
			}
		})
	}
	wg.Wait()
}

// report hands the reports to the leader: directly when this agent leads.
func (e *executor) report(ctx context.Context, reports []api.InstanceReport) {
	sent := time.Now()
	if e.a.node.IsLeader() {
		e.a.lead.accept(e.a.cfg.Name, reports)
		e.a.lease.renew(sent)
		return
	}
	addr, ok := e.a.leaderAPI()
	if !ok {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, e.a.cfg.ProbeTimeout)
	defer cancel()
	ack, err := e.a.peerClient(addr).Report(rctx, api.Report{Agent: e.a.cfg.Name, Instances: reports})
	if err != nil {
		e.log.Debug("report to leader failed", "leader", addr, "err", err)
		return
	}
	e.markCaughtUp(ack.ConfigVersion)
	if e.a.node.Topology().ConfigVersion < ack.ConfigVersion {
		// Behind the leader (just back from a cut): act on the current
		// topology first; the next report renews the lease.
		return
	}
	e.a.lease.renew(sent)
}

func lsnString(lsn uint64) string {
	return fmt.Sprintf("%X/%X", lsn>>32, uint32(lsn))
}

func isSwitchoverSource(t *topology.Topology, s topology.Segment) bool {
	sw, ok := t.SwitchoverOf(s.Content)
	return ok && sw.From == s.DBID && s.Role == topology.RolePrimary && s.Status == topology.StatusUp
}

// readStoppedLSN records the shutdown checkpoint of an instance stopped
// for a switchover; an unclean stop is an error the operator sees.
func (e *executor) readStoppedLSN(ctx context.Context, st *instanceState, inst supervisor.Instance) error {
	lsn, clean, err := e.a.drv.CheckpointLSN(ctx, inst)
	if err != nil {
		return err
	}
	if !clean {
		return fmt.Errorf("dbid %d was not shut down cleanly: the switchover cannot go on without a rewind", inst.DBID)
	}
	e.mu.Lock()
	st.stoppedLSN = lsn
	e.mu.Unlock()
	return nil
}

func (e *executor) stoppedLSN(st *instanceState) uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return st.stoppedLSN
}

func recovering(t *topology.Topology, dbid int) bool {
	_, ok := t.Recovering(dbid)
	return ok
}

// recoveryDue: this instance's recovery is active and has not already
// failed here.
func (e *executor) recoveryDue(t *topology.Topology, s topology.Segment, st *instanceState) bool {
	rec, ok := t.Recovering(s.DBID)
	if !ok || !rec.Active || s.Role != topology.RoleMirror || s.Status != topology.StatusDown {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return !(st.recoveryJob == rec.Job && st.recoveryErr != "")
}

// recoveryDone: this instance's recovery step of its current job has run
// here.
func (e *executor) recoveryDone(t *topology.Topology, s topology.Segment, st *instanceState) bool {
	rec, ok := t.Recovering(s.DBID)
	e.mu.Lock()
	defer e.mu.Unlock()
	return ok && st.recoveredJob == rec.Job
}

// recoveryStep returns the step that recovers inst as a mirror of up:
// pg_rewind of its own data, or a fresh base backup into a cleared dir.
func (e *executor) recoveryStep(clusterID string, inst supervisor.Instance, rec topology.Recovery, up supervisor.Upstream, st *instanceState) func(context.Context) error {
	started := time.Now()
	progress := func(step string) func(done, total int64) {
		return func(done, total int64) {
			e.mu.Lock()
			st.progress = &api.Progress{Step: step, Done: done, Total: total, Started: started}
			e.mu.Unlock()
		}
	}
	return func(ctx context.Context) error {
		e.mu.Lock()
		st.progress = &api.Progress{Step: "waiting for the primary to accept writes", Started: started}
		e.mu.Unlock()
		wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		err := e.a.drv.WaitWritable(wctx, up)
		cancel()
		if err != nil {
			// Not a failure of this recovery: the next round tries again.
			return err
		}
		if rec.Kind == topology.RecoveryIncremental {
			err = e.a.drv.Rewind(ctx, clusterID, inst, up, progress("pg_rewind"))
		} else {
			if e.a.drv.Ours(clusterID, inst) {
				err = e.a.drv.Destroy(ctx, clusterID, inst)
			}
			if err == nil {
				err = e.a.drv.CreateMirror(ctx, clusterID, inst, up, progress(copyStep(up)))
			}
		}
		e.mu.Lock()
		switch {
		case err == nil:
			st.recoveredJob = rec.Job
		case ctx.Err() == nil:
			st.recoveryErr, st.recoveryJob = err.Error(), rec.Job
		}
		e.mu.Unlock()
		return err
	}
}
