package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
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
	// instancesWritten: the instances instances.json holds (nil: not
	// written by this run).
	instancesWritten *[]topology.Segment
	// seq numbers the full reports this process sends (api.Report.Seq)
	// and full is the last one sent; only the round's goroutine (report)
	// touches them.
	seq  uint64
	full sentFull
	// acked: the last report or heartbeat the leader acknowledged (the
	// executor's goroutine only).
	acked struct {
		leader  string
		at      time.Time // sent
		version uint64    // made on (a heartbeat's)
	}
}

// sentFull is the last full report an agent sent: while its reports stay
// the same (sameReport), a round sends a heartbeat naming it instead.
type sentFull struct {
	seq     uint64
	leader  string // the API address it was sent to
	at      time.Time
	reports []api.InstanceReport
	acked   bool // that leader acknowledged it
}

// reportRefresh is, in probe intervals, how often a full report is sent
// even when nothing the leader acts on changed: the LSNs and replication
// lags it shows (gpagent state) are never older than that.
const reportRefresh = 10

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
	phase    topology.Phase
	progress *api.Progress
	lastErr  string
	// sync: whether a primary may vouch its mirror in sync (it has
	// flushed past the position read when sync was switched on).
	sync   topology.SyncVouch
	health *supervisor.Health // last probe; nil when it failed
	// probes counts probes failed in a row: probe_retries of them make
	// a running but unresponsive (hung) instance failed.
	probes topology.ProbeFailures
	// stall: the replication stall watch of a primary's mirror.
	stall topology.StallWatch
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
	// fenced: the fence watch fenced this primary since the lease ran
	// out; cleared when it is renewed.
	fenced bool
	// syncing: a manageSync of this primary runs.
	syncing bool
	// created: this run's step creating the instance finished (from the
	// primary createdFrom, for a mirror); NextStep waits for the leader
	// then, rather than creating it again.
	created     bool
	createdFrom int
}

func newExecutor(a *Agent) *executor {
	// Seqs start from the wall clock: a restarted agent never names a
	// full report of its previous run (a leader may still hold one).
	return &executor{a: a, log: a.log.With("component", "executor"), local: map[int]*instanceState{}, wake: make(chan struct{}, 1),
		seq: uint64(time.Now().UnixNano())}
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
		st = &instanceState{phase: topology.PhaseUnknown}
		e.local[dbid] = st
	}
	return st
}

func (e *executor) run(ctx context.Context) {
	for {
		began := time.Now()
		e.round(ctx)
		took := time.Since(began)
		// A failed probe is retried at once rather than after a full
		// interval: a hung primary is then declared failed after
		// probe_retries timeouts, not probe_retries intervals.
		next := e.a.live().ProbeInterval
		switch {
		case e.retrying():
			next = min(next, probeRetryDelay)
		case e.transitioning():
			// Soon, but no sooner than five times what this round took:
			// every host of a thousand rounds fast through an init, and
			// on a loaded machine (or a host whose probes are slow) a
			// round every 100 ms was all the CPU there was, the steps
			// the rounds wait for starved behind them. Real time on
			// purpose, as the leader's spacing: it measures this host.
			next = min(next, max(probeRetryDelay, 5*took))
		}
		select {
		case <-ctx.Done():
			return
		case <-e.a.node.Changes():
		case <-e.wake:
		case dbid := <-e.a.drv.Exits():
			e.log.Warn("postmaster exited", "dbid", dbid)
		case <-e.a.clock.After(next):
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
	for _, s := range e.a.indexed(t).OnHost(e.a.cfg.Name) {
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
		if st.probes.Retrying(e.a.live().ProbeRetries) {
			return true
		}
	}
	return false
}

// round brings every local instance one step closer to the topology and
// reports all of them.
func (e *executor) round(ctx context.Context) {
	if c, ok := e.a.node.(*clientNode); ok && !c.loaded() {
		// A client that has not heard from a server yet holds an empty
		// topology, not the one it acts in: a report of "no instances"
		// made on it would count this host heard (and renew its lease)
		// while its primaries go unprobed.
		e.checkLease(ctx)
		return
	}
	t := e.a.node.Topology()
	mine := e.a.indexed(t).OnHost(e.a.cfg.Name)
	if len(mine) == 0 {
		// Nothing to probe, but the lease is renewed all the same: a
		// missing lease file grants none, the ready endpoint of a host
		// with no instances yet answers from it too, and a host given
		// instances (init, expand) must not start them on a lease that
		// ran out while it had none.
		e.report(ctx, nil)
		return
	}
	if e.a.lease.expired(e.a.clock.Now(), e.a.cfg.Lease) {
		// Fenced before they are listed: the fence watchdog kills a
		// listed primary that a live agent has not recorded fenced (a
		// wiped agent, say, that has just learnt its instances).
		e.a.fenceNow(ctx)
	}
	e.writeInstances(t)
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
	// The rest of the round acts on the topology as it is now: the local
	// replica has often applied the entries the leader committed during
	// the report's round trip by now.
	t = e.a.node.Topology()
	e.checkLease(ctx)
	if !e.caughtUpWith(t) {
		return
	}
	for _, s := range e.a.indexed(t).OnHost(e.a.cfg.Name) {
		e.ensure(ctx, t, s)
	}
}

// ensure starts the step the instance needs, if any, in the background,
// so probes and reports of the others go on meanwhile. topology.NextStep
// decides, on the committed topology and what this host sees of the
// instance; ensure only carries the step out.
func (e *executor) ensure(ctx context.Context, t *topology.Topology, s topology.Segment) {
	st := e.state(s.DBID)
	inst := localInstance(s)
	step := topology.NextStep(t, s, e.localView(st, inst))
	switch step.Kind {
	case topology.StepNone:
	case topology.StepWait:
		e.setPhase(s.DBID, step.Phase, "")
	case topology.StepManageSync:
		e.startManageSync(ctx, t, s)
	default:
		e.runStep(ctx, s, st, step.Phase, e.stepAction(t.ClusterID, inst, st, step))
	}
}

// runStep runs one long step of an instance in the background.
func (e *executor) runStep(ctx context.Context, s topology.Segment, st *instanceState, phase topology.Phase, step func(context.Context) error) {
	e.mu.Lock()
	st.busy, st.phase, st.lastErr = true, phase, ""
	e.mu.Unlock()
	e.log.Info(phase.String(), "dbid", s.DBID, "content", s.Content, "role", s.Role)
	go func() {
		err := step(ctx)
		e.mu.Lock()
		st.busy = false
		st.progress = nil
		st.probes = topology.ProbeFailures{}
		// What the last probe saw predates the step: decide again only
		// on a fresh one.
		st.health = nil
		if err != nil {
			st.phase, st.lastErr = topology.PhaseFailed, phase.String()+": "+err.Error()
			// Back off before trying again, doubling up to a limit: a
			// step that fails at once (a port taken) must not spin.
			st.backoff = min(max(2*st.backoff, time.Second), 30*time.Second)
			st.retryAt = e.a.clock.Now().Add(st.backoff)
		} else {
			st.phase, st.backoff, st.retryAt = topology.PhaseRunning, 0, time.Time{}
		}
		backoff := st.backoff
		e.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			e.log.Error(phase.String()+" failed", "dbid", s.DBID, "content", s.Content, "err", err, "retry_in", backoff)
		}
		if err == nil {
			e.kick()
		}
	}()
}

func (e *executor) setPhase(dbid int, phase topology.Phase, errText string) {
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
	for _, s := range e.a.indexed(t).OnHost(e.a.cfg.Name) {
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
	sent := e.a.clock.Now()
	if e.a.node.IsLeader() {
		// The leader's own lease is renewed by leading: it counts itself
		// heard whatever version its round's reports were made on.
		e.a.lead.accept(e.a.cfg.Name, reports, 0)
		e.a.lease.renew(sent, e.a.clock.Now())
		return
	}
	addr, ok := e.a.leaderAPI()
	if !ok {
		return
	}
	if c, ok := e.a.node.(*clientNode); ok {
		// Made on a version whose view of this host is unchanged since:
		// made on the latest such (clientNode.equivalent). A copy: the
		// gossip loop reads the round's reports.
		reports = slices.Clone(reports)
		for i := range reports {
			reports[i].ConfigVersion = c.equivalent(reports[i].ConfigVersion)
		}
	}
	// An acknowledgement renews from the report's send time however
	// late it comes, so waiting longer than a probe is safe: a leader
	// (or this process) slowed by a burst of commits still renews the
	// lease with an answer that takes a second, where a probe_timeout
	// deadline dropped it and fenced the host.
	rctx, cancel := context.WithTimeout(ctx, reportTimeout(e.a.cfg.ProbeTimeout, e.a.cfg.Lease))
	defer cancel()
	client := e.a.peerClient(addr)
	var ack *api.ReportAck
	var err error
	hb, beat := e.heartbeat(addr, reports, sent)
	if beat && e.acked.leader == addr && e.acked.version == hb.ConfigVersion && sent.Sub(e.acked.at) < e.a.live().ProbeInterval {
		// A round sooner than the probe interval (transitioning,
		// retrying) that found nothing new, on the version already
		// acknowledged: the leader would learn nothing, and the lease
		// was renewed less than a probe interval ago. Through a
		// 1,000-host init every host rounds every 100 ms until its
		// pairs are in sync: ten heartbeats a second each.
		return
	}
	if beat {
		// Its acknowledgement renews the lease as that of the full
		// report made on the same version would (leader.heartbeat).
		ack, err = client.Report(rctx, hb)
		if errors.Is(err, api.ErrResend) {
			// This leader does not hold the full report named (a new
			// leader, a restarted one): send it now, in this round, or
			// its observations of this host age out.
			e.log.Debug("leader asks for a full report", "leader", addr, "same", hb.Same)
			beat, sent = false, e.a.clock.Now()
		}
	}
	if !beat {
		ack, err = e.sendFull(rctx, client, addr, reports, sent)
	}
	if err != nil {
		e.log.Debug("report to leader failed", "leader", addr, "err", err)
		if c, ok := e.a.node.(*clientNode); ok {
			// The leader may have changed: a client learns the new
			// one from a server's answer, so ask at once rather than
			// at the end of the query under way.
			name, _ := c.Leader()
			c.forgetLeader(name)
			c.requery()
		}
		return
	}
	e.acked.leader, e.acked.at, e.acked.version = addr, sent, 0
	if len(reports) > 0 {
		e.acked.version = reports[0].ConfigVersion // all one version, or no heartbeat follows
	}
	lease := ack.LeaseVersion
	if lease == 0 {
		lease = ack.ConfigVersion // a leader before lease_version
	}
	if e.log.Enabled(ctx, slog.LevelDebug) {
		made := uint64(0)
		if len(reports) > 0 {
			made = reports[0].ConfigVersion
		}
		e.log.Debug("report acknowledged", "heartbeat", beat, "made_on", made, "view", ack.ConfigVersion, "lease_version", lease,
			"round_trip", e.a.clock.Now().Sub(sent), "lease_age", e.a.lease.age(e.a.clock.Now()))
	}
	e.markCaughtUp(ack.ConfigVersion)
	e.acknowledged(sent, reports, lease)
	if c, ok := e.a.node.(*clientNode); ok {
		c.needVersion(ack.ConfigVersion)
	}
}

// heartbeat returns the heartbeat to send instead of reports, made at
// now, to the leader at addr, if one may be: the last full report went
// to that leader, which acknowledged it, less than reportRefresh probe
// intervals ago; reports are the same as its (sameReport), all made on
// one version; and no switchover is under way (the leader reads the LSNs
// of its pair then). Otherwise the report goes in full.
func (e *executor) heartbeat(addr string, reports []api.InstanceReport, now time.Time) (api.Report, bool) {
	f := e.full
	if !f.acked || f.leader != addr || now.Sub(f.at) >= reportRefresh*e.a.live().ProbeInterval || len(reports) != len(f.reports) {
		return api.Report{}, false
	}
	if len(e.a.node.Topology().Switchovers) > 0 {
		return api.Report{}, false
	}
	hb := api.Report{Agent: e.a.cfg.Name, API: e.a.advertisedAPI(), Same: f.seq}
	for i, r := range reports {
		if i == 0 {
			hb.ConfigVersion, hb.Seen = r.ConfigVersion, r.Seen
		}
		if r.ConfigVersion != hb.ConfigVersion || !sameReport(r, f.reports[i]) {
			return api.Report{}, false
		}
		if r.Seen.Before(hb.Seen) {
			hb.Seen = r.Seen
		}
	}
	return hb, true
}

// sameReport reports whether a and b are the same but for what moves on
// its own: the version they were made on, the probe time, the LSNs and
// the replication lags. What the leader acts on is all in the rest (an
// LSN only during a switchover, when heartbeat sends none).
func sameReport(a, b api.InstanceReport) bool {
	norm := func(r api.InstanceReport) api.InstanceReport {
		r.ConfigVersion, r.Seen, r.LSN, r.LSNValue = 0, time.Time{}, "", 0
		if r.Replicas != nil {
			r.Replicas = slices.Clone(r.Replicas)
			for i := range r.Replicas {
				r.Replicas[i].FlushLagBytes, r.Replicas[i].ReplayLagBytes = 0, 0
			}
		}
		return r
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

// sendFull sends reports in full, as a new Seq, to the leader at addr.
func (e *executor) sendFull(ctx context.Context, client *api.Client, addr string, reports []api.InstanceReport, sent time.Time) (*api.ReportAck, error) {
	e.seq++
	e.full = sentFull{seq: e.seq, leader: addr, at: sent, reports: reports}
	rep := api.Report{Agent: e.a.cfg.Name, Instances: reports, API: e.a.advertisedAPI(), Seq: e.seq}
	ack, err := client.Report(ctx, rep)
	if errors.Is(err, api.ErrInvalid) {
		// A leader of an older version refuses the unknown field (a
		// rolling upgrade): report as it knows, and send it no
		// heartbeat.
		rep.Seq = 0
		return client.Report(ctx, rep)
	}
	e.full.acked = err == nil
	return ack, err
}

// acknowledged records the leader's acknowledgement, at its committed
// version, of reports sent at sent, and renews the lease with every
// acknowledgement held whose version these reports were made on: the
// leader's own rule on receiving them (leader.accept), so the lease is
// renewed only from a report the leader counts heard. Back from a cut,
// an agent must not lift the fence of a primary demoted meanwhile; while
// the leader commits faster than a report's round trip, a report is
// proved by the next one, made an entry or two later.
//
// The proof is what the reports were made on, not the topology applied
// since: that renewed the lease on a proof the leader never received
// (the next report lost in a cut), so the lease ran up to a probe
// interval past the leader's count of the host lost, more than the lease
// margin when probe_interval > lease/3 (TestLease_NeverOutlivesTheLeadersCount).
func (e *executor) acknowledged(sent time.Time, reports []api.InstanceReport, committed uint64) {
	applied := committed
	for _, r := range reports {
		applied = min(applied, r.ConfigVersion)
	}
	e.a.lease.acked(sent, committed)
	e.a.lease.applyAcked(applied, e.a.clock.Now())
}

// reportTimeout is how long a report waits for the leader's answer:
// half the lease, and never less than a probe.
func reportTimeout(probe, lease time.Duration) time.Duration {
	return max(probe, lease/2)
}

func lsnString(lsn uint64) string {
	return fmt.Sprintf("%X/%X", lsn>>32, uint32(lsn))
}

func isSwitchoverSource(t *topology.Topology, s topology.Segment) bool {
	return topology.IsSwitchoverSource(t, s)
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

// recoveryStep returns the step that recovers inst as a mirror of up:
// pg_rewind of its own data, or a fresh base backup into a cleared dir.
func (e *executor) recoveryStep(clusterID string, inst supervisor.Instance, rec topology.Recovery, up supervisor.Upstream, st *instanceState) func(context.Context) error {
	started := e.a.clock.Now()
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
			e.a.counts.recovered(rec.Kind, st.progress)
		case ctx.Err() == nil:
			st.recoveryErr, st.recoveryJob = err.Error(), rec.Job
		}
		e.mu.Unlock()
		return err
	}
}
