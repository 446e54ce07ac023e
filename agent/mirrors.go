package agent

import (
	"net/http"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

// postMirrorPlan computes the mirrors gpaddmirrors would add, changing
// nothing. An empty plan means every segment already has a mirror.
func (a *Agent) postMirrorPlan(r *http.Request) (any, error) {
	var req api.MirrorPlanRequest
	t, err := a.begin(r, &req, true)
	if err != nil {
		return nil, err
	}
	plan := &api.MirrorPlan{BaseVersion: t.ConfigVersion, Mirrors: []topology.Segment{}}
	if !needsMirrors(t) {
		return plan, nil
	}
	var mirrors []topology.Segment
	if len(req.Entries) > 0 {
		mirrors, err = topology.MirrorsFromEntries(t, nil, req.Entries)
	} else {
		placement := topology.Placement(t.Mirrors.Placement)
		if req.Spread {
			placement = topology.PlacementSpread
		} else if placement == "" {
			placement = topology.PlacementGroup
		}
		mirrors, err = topology.PlaceMirrors(t, nil, placement, t.Mirrors)
	}
	if err != nil {
		return nil, api.Errorf(api.CodeInvalid, "%v", err)
	}
	if err := a.preflight(t.ClusterID, mirrors); err != nil {
		return nil, err
	}
	plan.Mirrors = mirrors
	return plan, nil
}

// postAddMirrors commits a plan made from the current config version.
func (a *Agent) postAddMirrors(r *http.Request) (any, error) {
	var plan api.MirrorPlan
	if _, err := a.begin(r, &plan, false); err != nil {
		return nil, err
	}
	t := a.node.Topology()
	if plan.BaseVersion != t.ConfigVersion {
		return nil, api.Errorf(api.CodeStale, "the cluster changed since the plan was made (config version %d, now %d): run addmirrors again", plan.BaseVersion, t.ConfigVersion)
	}
	if len(plan.Mirrors) == 0 {
		return nil, api.Errorf(api.CodeInvalid, "the plan adds no mirror")
	}
	if err := a.preflight(t.ClusterID, plan.Mirrors); err != nil {
		return nil, err
	}
	cmd := topology.Command{Type: topology.CmdAddMirrors, BaseVersion: t.ConfigVersion, Segments: plan.Mirrors}
	if _, err := a.node.Apply(r.Context(), cmd); err != nil {
		return nil, err
	}
	a.log.Info("mirrors added to the topology", "count", len(plan.Mirrors))
	return a.getState(r)
}

// needsMirrors reports whether some segment content lacks a mirror.
func needsMirrors(t *topology.Topology) bool {
	for _, c := range t.Contents() {
		if c == topology.CoordinatorContent {
			continue
		}
		if _, ok := t.Mirror(c); !ok {
			return true
		}
	}
	return false
}
