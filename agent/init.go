package agent

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

// postInit places the cluster of a spec and commits it. The instances are
// created afterwards by their agents; the caller waits on /v1/state. A
// re-run with the same spec attaches to the cluster being created instead
// of failing, so an interrupted init is finished by running it again.
func (a *Agent) postInit(r *http.Request) (any, error) {
	var req api.InitRequest
	if _, err := a.begin(r, &req, false); err != nil {
		return nil, err
	}
	if err := req.Spec.Validate(); err != nil {
		return nil, api.Errorf(api.CodeInvalid, "spec: %v", err)
	}
	segs, err := req.Spec.Segments(!req.NoMirrors)
	if err != nil {
		return nil, api.Errorf(api.CodeInvalid, "spec: %v", err)
	}
	t := a.node.Topology()
	if t.Initialized() {
		if segmentsEqual(t.Segments, segs) {
			return a.getState(r)
		}
		return nil, api.Errorf(api.CodeConflict, "cluster already initialized (config version %d, %d instances) with a different layout; see gpagent state", t.ConfigVersion, len(t.Segments))
	}
	clusterID, err := newClusterID()
	if err != nil {
		return nil, err
	}
	if err := a.preflight(clusterID, segs); err != nil {
		return nil, err
	}
	cmd := topology.Command{
		Type:        topology.CmdInit,
		BaseVersion: t.ConfigVersion,
		ClusterID:   clusterID,
		SegPrefix:   req.Spec.SegPrefix,
		Databases:   req.Spec.Coordinator.Databases,
		Mirrors:     req.Spec.MirrorDefaults(),
		Segments:    segs,
	}
	if _, err := a.node.Apply(r.Context(), cmd); err != nil {
		return nil, err
	}
	a.log.Info("cluster initialized", "instances", len(segs), "cluster_id", clusterID)
	return a.getState(r)
}

func newClusterID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
