package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/supervisor"
	"github.com/gpagent/gpagent/topology"
)

// localView gathers what topology.NextStep needs to know of one local
// instance: its process, its last probe, the lease and what earlier steps
// left in st.
func (e *executor) localView(st *instanceState, inst supervisor.Instance) topology.LocalView {
	e.mu.Lock()
	v := topology.LocalView{
		Busy:         st.busy,
		RetryPending: e.a.clock.Now().Before(st.retryAt),
		Hung:         st.probes.Hung(e.a.live().ProbeRetries),
		HealthKnown:  st.health != nil,
		Created:      st.created,
		CreatedFrom:  st.createdFrom,
		StoppedLSN:   st.stoppedLSN,
		RecoveredJob: st.recoveredJob,
	}
	if st.health != nil {
		v.InRecovery = st.health.InRecovery
	}
	if st.recoveryErr != "" {
		v.RecoveryFailedJob = st.recoveryJob
	}
	e.mu.Unlock()
	if v.Busy || v.RetryPending {
		// Nothing is done meanwhile: spare the look for a postmaster (it
		// may read postmaster.pid).
		return v
	}
	v.Running = e.a.drv.PID(inst) != 0
	v.Fenced = !e.a.lease.valid(e.a.clock.Now(), e.a.cfg.Lease)
	return v
}

// created records that the step creating st's instance (from the primary
// dbid from, for a mirror) finished, if err is nil, and returns err.
func (e *executor) created(st *instanceState, from int, err error) error {
	if err == nil {
		e.mu.Lock()
		st.created, st.createdFrom = true, from
		e.mu.Unlock()
	}
	return err
}

// stepAction returns the I/O that carries out step on inst; the decision
// was made by topology.NextStep.
func (e *executor) stepAction(clusterID string, inst supervisor.Instance, st *instanceState, step topology.Step) func(context.Context) error {
	switch step.Kind {
	case topology.StepInitPrimary:
		return func(ctx context.Context) error {
			return e.created(st, 0, e.a.drv.InitPrimary(ctx, clusterID, inst))
		}
	case topology.StepCreateMirror:
		up := e.a.copyUpstream(step.Upstream)
		from := step.Upstream.DBID
		return func(ctx context.Context) error {
			started := e.a.clock.Now()
			return e.created(st, from, e.a.drv.CreateMirror(ctx, clusterID, inst, up, func(done, total int64) {
				e.mu.Lock()
				st.progress = &api.Progress{Step: copyStep(up), Done: done, Total: total, Started: started}
				e.mu.Unlock()
			}))
		}
	case topology.StepPromote:
		return func(ctx context.Context) error { return e.a.drv.Promote(ctx, inst) }
	case topology.StepRestartInPlace:
		return func(ctx context.Context) error {
			if step.StopFirst {
				sctx, cancel := context.WithTimeout(ctx, time.Second)
				err := e.a.drv.Stop(sctx, inst)
				cancel()
				if err != nil {
					return err
				}
			}
			return e.a.drv.Start(ctx, inst)
		}
	case topology.StepSwitchoverStop:
		return func(ctx context.Context) error {
			sctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if err := e.a.drv.Stop(sctx, inst); err != nil {
				return err
			}
			return e.readStoppedLSN(ctx, st, inst)
		}
	case topology.StepReadCheckpoint:
		return func(ctx context.Context) error { return e.readStoppedLSN(ctx, st, inst) }
	case topology.StepRejoin:
		up := supervisor.Upstream{Address: step.Upstream.Address, Port: step.Upstream.Port}
		return func(ctx context.Context) error { return e.a.drv.Rejoin(ctx, inst, up) }
	case topology.StepRecover:
		up := supervisor.Upstream{Address: step.Upstream.Address, Port: step.Upstream.Port}
		if step.Recovery.Kind != topology.RecoveryIncremental {
			up = e.a.copyUpstream(step.Upstream)
		}
		return e.recoveryStep(clusterID, inst, step.Recovery, up, st)
	case topology.StepFence:
		// A demoted primary still running as one: killed at once, not
		// stopped. A fast shutdown would let its sessions go on
		// committing until it completes, and a frozen (SIGSTOPped)
		// postmaster acts on no shutdown signal until thawed, when it
		// would be writable beside the promoted mirror. Its data is
		// rewound or copied before it runs again (rule 7), so a clean
		// shutdown buys nothing.
		return func(ctx context.Context) error {
			fctx, cancel := context.WithTimeout(ctx, hungKillTimeout)
			defer cancel()
			return e.a.drv.Kill(fctx, inst)
		}
	}
	return func(context.Context) error { return fmt.Errorf("dbid %d: no action for step %v", inst.DBID, step.Kind) }
}
