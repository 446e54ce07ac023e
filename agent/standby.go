package agent

import (
	"errors"
	"net/http"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

// postInitStandby adds a standby coordinator (a mirror of content -1), as
// gpinitstandby does. It is then built, kept in sync and failed over like
// any segment mirror, so gpactivatestandby is not needed.
func (a *Agent) postInitStandby(r *http.Request) (any, error) {
	var req api.StandbyRequest
	if _, err := a.begin(r, &req, false); err != nil {
		return nil, err
	}
	t := a.node.Topology()
	standby, err := topology.PlaceStandby(t, topology.StandbyRequest{Host: req.Host, Port: req.Port, DataDir: req.DataDir})
	switch {
	case errors.Is(err, topology.ErrNoCoordinator):
		return nil, api.Errorf(api.CodeNotInitialized, "%v", err)
	case errors.Is(err, topology.ErrHasStandby):
		return nil, api.Errorf(api.CodeConflict, "%v", err)
	case err != nil:
		return nil, api.Errorf(api.CodeInvalid, "%v", err)
	}
	if err := a.preflight(t.ClusterID, []topology.Segment{standby}); err != nil {
		return nil, err
	}
	cmd := topology.Command{Type: topology.CmdAddMirrors, BaseVersion: t.ConfigVersion, Segments: []topology.Segment{standby}}
	if _, err := a.node.Apply(r.Context(), cmd); err != nil {
		return nil, err
	}
	a.log.Info("standby coordinator added to the topology", "dbid", standby.DBID, "host", standby.Hostname, "port", standby.Port)
	return a.getState(r)
}
