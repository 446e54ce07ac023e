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
	a   *Agent
	log *slog.Logger

	mu    sync.Mutex
	local map[int]*instanceState
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
}

func newExecutor(a *Agent) *executor {
	return &executor{a: a, log: a.log.With("component", "executor"), local: map[int]*instanceState{}}
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
	tick := time.NewTicker(e.a.cfg.ProbeInterval)
	defer tick.Stop()
	for {
		e.round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-e.a.node.Changes():
		case dbid := <-e.a.sup.Exits():
			e.log.Warn("postmaster exited", "dbid", dbid)
		case <-tick.C:
		}
	}
}

// round brings every local instance one step closer to the topology and
// reports all of them.
func (e *executor) round(ctx context.Context) {
	t := e.a.node.Topology()
	mine := t.OnHost(e.a.cfg.Name)
	reports := make([]api.InstanceReport, 0, len(mine))
	for _, s := range mine {
		e.ensure(ctx, t, s)
		reports = append(reports, e.probe(ctx, t, s))
	}
	if len(reports) > 0 {
		e.report(ctx, reports)
	}
}

// ensure starts the long step the instance needs, if any, in the
// background, so probes and reports of the others go on meanwhile.
func (e *executor) ensure(ctx context.Context, t *topology.Topology, s topology.Segment) {
	st := e.state(s.DBID)
	e.mu.Lock()
	if st.busy {
		e.mu.Unlock()
		return
	}
	e.mu.Unlock()

	inst := localInstance(s)
	var step func(context.Context) error
	var phase string
	switch {
	case t.IsPending(s.DBID) && s.Role == topology.RolePrimary:
		phase = "creating"
		step = func(ctx context.Context) error { return e.a.sup.InitPrimary(ctx, t.ClusterID, inst) }
	case t.IsPending(s.DBID) && s.Role == topology.RoleMirror:
		p, ok := t.Primary(s.Content)
		if !ok || p.Status != topology.StatusUp {
			e.setPhase(s.DBID, "waiting for primary", "")
			return
		}
		phase = "building"
		up := supervisor.Upstream{Address: p.Address, Port: p.Port}
		step = func(ctx context.Context) error {
			started := time.Now()
			return e.a.sup.CreateMirror(ctx, t.ClusterID, inst, up, func(done, total int64) {
				e.mu.Lock()
				st.progress = &api.Progress{Step: "pg_basebackup", Done: done, Total: total, Started: started}
				e.mu.Unlock()
			})
		}
	case s.Status == topology.StatusUp && e.a.sup.PID(inst) == 0:
		phase = "starting"
		step = func(ctx context.Context) error { return e.a.sup.Start(ctx, inst) }
	default:
		if s.Role == topology.RolePrimary && s.Status == topology.StatusUp {
			e.manageSync(ctx, t, s)
		}
		return
	}
	e.mu.Lock()
	st.busy, st.phase, st.lastErr = true, phase, ""
	e.mu.Unlock()
	go func() {
		err := step(ctx)
		e.mu.Lock()
		st.busy = false
		st.progress = nil
		if err != nil {
			st.phase, st.lastErr = "failed", err.Error()
		} else {
			st.phase = "running"
		}
		e.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			e.log.Error(phase+" failed", "dbid", s.DBID, "content", s.Content, "err", err)
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
			if err := e.a.sup.Stop(ctx, localInstance(s)); err != nil {
				e.log.Error("stop failed", "dbid", s.DBID, "err", err)
			}
		})
	}
	wg.Wait()
}

// report hands the reports to the leader: directly when this agent leads.
func (e *executor) report(ctx context.Context, reports []api.InstanceReport) {
	if e.a.node.IsLeader() {
		e.a.lead.accept(reports)
		return
	}
	addr, ok := e.a.leaderAPI()
	if !ok {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, e.a.cfg.ProbeTimeout)
	defer cancel()
	if err := api.NewClient(addr).Report(rctx, api.Report{Agent: e.a.cfg.Name, Instances: reports}); err != nil {
		e.log.Debug("report to leader failed", "leader", addr, "err", err)
	}
}

func lsnString(lsn uint64) string {
	return fmt.Sprintf("%X/%X", lsn>>32, uint32(lsn))
}
