package agent

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gpagent/gpagent/topology"
)

// fenceTimeout bounds one fence of one instance. A server that does not
// take its new configuration within it is stopped instead: a fence that
// waits on a hung backend protects nothing.
const fenceTimeout = time.Second

// watchFence fences this host's primaries the moment the lease runs out
// (safety rule 5). It runs on its own timer, set to the lease's expiry
// and reset on every renewal, rather than once per executor round: a
// round can last a probe interval plus a probe timeout plus a report
// timeout, longer than the margin the leader waits past the lease before
// it promotes the mirrors (a third of the lease). The health endpoints
// read the same lease state, so they turn at the same moment.
func (a *Agent) watchFence(ctx context.Context) {
	for {
		// No acknowledgement is applied here on the local topology: only
		// a report the leader has seen made on its version renews
		// (executor.acknowledged), or the lease would outlive the
		// leader's count of this host.
		wait := a.lease.remaining(a.clock.Now(), a.cfg.Lease)
		if wait > 0 && a.lease.isFenced() {
			a.liftFence()
		}
		if wait <= 0 {
			a.fenceNow(ctx)
			// Fenced: nothing to do until a renewal. Look again now and
			// then all the same, for the primaries the topology gives this
			// host meanwhile (a promotion committed before the cut).
			wait = a.live().ProbeInterval
		}
		select {
		case <-ctx.Done():
			return
		case <-a.lease.renewals():
		case <-a.clock.After(wait):
		}
	}
}

// fenceNow fences every local instance the topology names primary whose
// last probe did not show it a standby or fenced already; in parallel,
// each with a deadline, so one hung server delays no other's fence.
func (a *Agent) fenceNow(ctx context.Context) {
	a.fenceMu.Lock()
	defer a.fenceMu.Unlock()
	// Checked again under the lock: a renewal may have come in between.
	if !a.lease.expired(a.clock.Now(), a.cfg.Lease) {
		return
	}
	e := a.exec
	t := a.node.Topology()
	if len(a.indexed(t).OnHost(a.cfg.Name)) == 0 {
		// Nothing here to fence (a cluster still forming): no fence event.
		return
	}
	if a.lease.setFenced(true) {
		a.counts.fences.Add(1)
		a.log.Error("no quorum for longer than the lease: fencing local primaries", "lease", a.cfg.Lease)
	}
	var wg sync.WaitGroup
	var failed atomic.Bool
	var primaries []int
	for _, s := range a.indexed(t).OnHost(a.cfg.Name) {
		if s.Role != topology.RolePrimary {
			continue
		}
		primaries = append(primaries, s.DBID)
		st := e.state(s.DBID)
		e.mu.Lock()
		h, done := st.health, st.fenced
		e.mu.Unlock()
		if done || (h != nil && (h.InRecovery || topology.SyncNamesInclude(h.SyncStandbyNames, fencedStandby))) {
			continue
		}
		if a.drv.PID(localInstance(s)) == 0 {
			continue // nothing runs there to take writes
		}
		wg.Go(func() {
			if !a.fenceOne(ctx, s, st) {
				failed.Store(true)
			}
		})
	}
	wg.Wait()
	if !failed.Load() {
		// Every primary of this topology is fenced, or safe (a standby,
		// not running): the fence watchdog can leave them to this agent.
		a.lease.recordFenced(primaries)
	}
}

// fenceOne fences one primary, or stops it; false if it could do
// neither.
func (a *Agent) fenceOne(ctx context.Context, s topology.Segment, st *instanceState) bool {
	inst := localInstance(s)
	fctx, cancel := context.WithTimeout(ctx, fenceTimeout)
	err := a.drv.Fence(fctx, inst)
	cancel()
	if err != nil {
		a.log.Error("fence failed; stopping the instance instead", "dbid", s.DBID, "err", err)
		sctx, cancel := context.WithTimeout(ctx, fenceTimeout)
		err = a.drv.Stop(sctx, inst)
		cancel()
		if err != nil {
			a.log.Error("stop of an unfenced primary failed", "dbid", s.DBID, "err", err)
			return false
		}
	} else {
		a.log.Warn("primary fenced: commits wait for a standby that does not exist, new transactions are read-only", "dbid", s.DBID, "content", s.Content)
	}
	a.exec.mu.Lock()
	st.fenced = true
	a.exec.mu.Unlock()
	return true
}

// liftFence records a renewed lease: the fence flag drops, and manageSync
// lifts the fence from each primary the topology still names (a demoted
// one is stopped instead).
func (a *Agent) liftFence() {
	a.fenceMu.Lock()
	defer a.fenceMu.Unlock()
	if a.lease.expired(a.clock.Now(), a.cfg.Lease) {
		return
	}
	if a.lease.setFenced(false) {
		a.log.Warn("lease renewed: fence lifted")
	}
	a.exec.mu.Lock()
	for _, st := range a.exec.local {
		st.fenced = false
	}
	a.exec.mu.Unlock()
}
