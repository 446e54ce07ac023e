package agent

import (
	"net/http"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

// postSwitchover starts a planned swap of one in-sync pair. The steps run
// through the topology (the old primary's agent stops it cleanly, the
// leader promotes the mirror once it has replayed everything, the old
// primary rejoins as mirror), so they survive an agent restart; the
// caller waits on /v1/state.
func (a *Agent) postSwitchover(r *http.Request) (any, error) {
	var req api.SwitchoverRequest
	t, err := a.begin(r, &req, true)
	if err != nil {
		return nil, err
	}
	if sw, ok := t.SwitchoverOf(req.Content); ok {
		// A re-run attaches to the switchover in progress.
		a.log.Info("switchover already in progress", "content", req.Content, "from", sw.From, "to", sw.To)
		return a.getState(r)
	}
	cmd := topology.Command{Type: topology.CmdSwitchover, BaseVersion: t.ConfigVersion, Content: req.Content}
	if _, err := a.node.Apply(r.Context(), cmd); err != nil {
		return nil, err
	}
	return a.getState(r)
}
