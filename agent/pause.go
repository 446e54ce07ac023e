package agent

import (
	"net/http"

	"github.com/gpagent/gpagent/topology"
)

func (a *Agent) postPause(r *http.Request) (any, error)  { return a.setPaused(r, true) }
func (a *Agent) postResume(r *http.Request) (any, error) { return a.setPaused(r, false) }

// setPaused stops or restarts automatic failover. Pausing twice is not an
// error and writes nothing.
func (a *Agent) setPaused(r *http.Request, paused bool) (any, error) {
	if err := a.requireLeader(r.Context()); err != nil {
		return nil, err
	}
	t := a.node.Topology()
	if t.Paused != paused {
		cmd := topology.Command{Type: topology.CmdSetPaused, BaseVersion: t.ConfigVersion, Paused: paused}
		if _, err := a.node.Apply(r.Context(), cmd); err != nil {
			return nil, err
		}
		a.log.Info("automatic failover", "paused", paused)
	}
	return a.getState(r)
}
