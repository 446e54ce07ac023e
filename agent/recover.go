package agent

import (
	"errors"
	"net/http"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

// postRecoverPlan computes what gprecoverseg would do, changing nothing.
// While a recovery job runs, the plan says so, and the caller attaches
// to it rather than starting another.
func (a *Agent) postRecoverPlan(r *http.Request) (any, error) {
	var req api.RecoverRequest
	t, err := a.begin(r, &req, true)
	if err != nil {
		return nil, err
	}
	plan := &api.RecoverPlan{BaseVersion: t.ConfigVersion, Parallel: req.Parallel, Running: runningJob(t)}
	if plan.Running != 0 {
		return plan, nil
	}
	kind := topology.RecoveryIncremental
	if req.Full {
		kind = topology.RecoveryFull
	}
	var reqs []topology.RecoveryRequest
	switch {
	case len(req.Entries) > 0:
		reqs, err = topology.RecoveriesFromEntries(t, a.hosts(t), req.Entries, kind)
	case req.Host != "":
		reqs, err = topology.RecoveriesOnHost(t, a.hosts(t), req.Host, topology.RecoverableDBIDs(t))
	default:
		for _, dbid := range topology.RecoverableDBIDs(t) {
			reqs = append(reqs, topology.RecoveryRequest{DBID: dbid, Kind: kind})
		}
	}
	if err != nil {
		return nil, api.Errorf(api.CodeInvalid, "%v", err)
	}
	for _, q := range reqs {
		s, _ := t.Segment(q.DBID)
		p, _ := t.Primary(s.Content)
		step := api.RecoverStep{Request: q, Content: s.Content, From: s, Source: p}
		if q.Move != nil {
			to := movedTo(s, q.Move)
			step.To = &to
		}
		plan.Steps = append(plan.Steps, step)
	}
	if err := a.preflightMoves(t, reqs); err != nil {
		return nil, err
	}
	return plan, nil
}

// postRecover commits a recovery plan made from the current version.
func (a *Agent) postRecover(r *http.Request) (any, error) {
	var plan api.RecoverPlan
	if _, err := a.begin(r, &plan, false); err != nil {
		return nil, err
	}
	t := a.node.Topology()
	if plan.BaseVersion != t.ConfigVersion {
		return nil, api.Errorf(api.CodeStale, "the cluster changed since the plan was made (config version %d, now %d): run recoverseg again", plan.BaseVersion, t.ConfigVersion)
	}
	if len(plan.Steps) == 0 {
		return nil, api.Errorf(api.CodeInvalid, "the plan recovers nothing")
	}
	cmd := topology.Command{Type: topology.CmdRecover, BaseVersion: t.ConfigVersion, Parallel: plan.Parallel}
	for _, s := range plan.Steps {
		cmd.Recover = append(cmd.Recover, s.Request)
	}
	// A posted plan is the caller's: its moves get the same preflight as
	// one this leader computes, judged from the requests themselves (not
	// the plan's To, which the caller could have written apart from them).
	if err := a.preflightMoves(t, cmd.Recover); err != nil {
		return nil, err
	}
	next, err := a.node.Apply(r.Context(), cmd)
	if err != nil {
		return nil, err
	}
	a.log.Info("recovery job started", "job", next.RecoveryJob, "instances", len(plan.Steps))
	return a.getState(r)
}

// preflightMoves checks that instances recovered onto a new place can be
// created there.
func (a *Agent) preflightMoves(t *topology.Topology, reqs []topology.RecoveryRequest) error {
	var moved []topology.Segment
	for _, q := range reqs {
		if q.Move == nil {
			continue
		}
		s, ok := t.Segment(q.DBID)
		if !ok {
			return api.Errorf(api.CodeInvalid, "recover: no instance with dbid %d", q.DBID)
		}
		moved = append(moved, movedTo(s, q.Move))
	}
	if len(moved) == 0 {
		return nil
	}
	return a.preflight(t.ClusterID, moved)
}

// movedTo is s placed at loc.
func movedTo(s topology.Segment, loc *topology.Location) topology.Segment {
	s.Hostname, s.Address, s.Port, s.DataDir = loc.Hostname, loc.Address, loc.Port, loc.DataDir
	return s
}

// runningJob returns the recovery job in progress, 0 if none.
func runningJob(t *topology.Topology) int {
	for _, r := range t.Recoveries {
		return r.Job
	}
	return 0
}

// hosts lists the hosts instances may be placed on, with addresses.
func (a *Agent) hosts(t *topology.Topology) []topology.Host {
	seen := map[string]bool{}
	var out []topology.Host
	add := func(name, addr string) {
		if !seen[name] {
			seen[name] = true
			out = append(out, topology.Host{Hostname: name, Address: addr})
		}
	}
	for _, s := range t.Segments {
		add(s.Hostname, s.Address)
	}
	add(a.cfg.Name, a.cfg.Address)
	return out
}

// postRebalance (gprecoverseg -r) starts a switchover for every content
// topology.RebalanceContent picks (out of its preferred roles, in sync,
// the mirror's replay lag under the limit); the others are reported and
// left alone. Each switchover is its own command, so the decision for a
// content is made on the topology after the previous one's.
func (a *Agent) postRebalance(r *http.Request) (any, error) {
	var req api.RebalanceRequest
	if _, err := a.begin(r, &req, false); err != nil {
		return nil, err
	}
	limit := req.MaxLagBytes
	if limit <= 0 {
		limit = api.DefaultRebalanceLagBytes
	}
	res := &api.RebalanceResult{}
	lags := a.replayLags(a.node.Topology())
	for _, c := range a.node.Topology().Contents() {
		t := a.node.Topology()
		it, ok := topology.RebalanceContent(t, c, lags, limit)
		if !ok {
			continue
		}
		switch it.Action {
		case topology.RebalanceRunning:
			res.Started = append(res.Started, c)
			continue
		case topology.RebalanceRefused:
			res.Skipped = append(res.Skipped, api.Skip{Content: c, Reason: it.Reason})
			continue
		}
		cmd := topology.Command{Type: topology.CmdSwitchover, BaseVersion: t.ConfigVersion, Content: c}
		if _, err := a.node.Apply(r.Context(), cmd); err != nil {
			if errors.Is(err, topology.ErrInvalid) {
				// The topology changed under the plan.
				res.Skipped = append(res.Skipped, api.Skip{Content: c, Reason: err.Error()})
				continue
			}
			return nil, err
		}
		res.Started = append(res.Started, c)
	}
	res.ConfigVersion = a.node.Topology().ConfigVersion
	return res, nil
}

// replayLags reads each mirror's replay lag, by mirror dbid, from its
// primary's last report; a mirror not streaming to it is left out.
func (a *Agent) replayLags(t *topology.Topology) map[int]int64 {
	replicas := map[int][]api.ReplicaState{}
	for _, rep := range a.lead.instances() {
		replicas[rep.DBID] = rep.Replicas
	}
	lags := map[int]int64{}
	for _, m := range t.Segments {
		if m.Role != topology.RoleMirror {
			continue
		}
		p, ok := t.Primary(m.Content)
		if !ok {
			continue
		}
		for _, r := range replicas[p.DBID] {
			if r.ApplicationName == topology.AppName(m.DBID) {
				lags[m.DBID] = r.ReplayLagBytes
				break
			}
		}
	}
	return lags
}
