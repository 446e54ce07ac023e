package agent

import (
	"net/http"
	"path/filepath"

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
	coord, ok := t.Primary(topology.CoordinatorContent)
	if !ok {
		return nil, api.Errorf(api.CodeNotInitialized, "no coordinator: run gpagent init first")
	}
	if m, ok := t.Mirror(topology.CoordinatorContent); ok {
		return nil, api.Errorf(api.CodeConflict, "the coordinator already has a standby: dbid %d on %s:%d", m.DBID, m.Hostname, m.Port)
	}
	host := req.Host
	if host == "" {
		host = coord.Hostname
	}
	address := coord.Address
	if host != coord.Hostname {
		segs := t.OnHost(host)
		if len(segs) == 0 {
			return nil, api.Errorf(api.CodeInvalid, "-s %s: no instance on that host; its address is unknown", host)
		}
		address = segs[0].Address
	}
	port := req.Port
	if port == 0 {
		if host == coord.Hostname {
			return nil, api.Errorf(api.CodeInvalid, "-P: required when the standby shares the coordinator's host %s", host)
		}
		port = coord.Port
	}
	datadir := req.DataDir
	if datadir == "" {
		datadir = filepath.Join(filepath.Dir(filepath.Dir(coord.DataDir)), "standby", filepath.Base(coord.DataDir))
	}
	standby := topology.Segment{
		DBID: t.MaxDBID() + 1, Content: topology.CoordinatorContent,
		Role: topology.RoleMirror, PreferredRole: topology.RoleMirror,
		Mode: topology.ModeNotSynced, Status: topology.StatusDown,
		Hostname: host, Address: address, Port: port, DataDir: datadir,
	}
	if err := a.preflight(t.ClusterID, []topology.Segment{standby}); err != nil {
		return nil, err
	}
	cmd := topology.Command{Type: topology.CmdAddMirrors, BaseVersion: t.ConfigVersion, Segments: []topology.Segment{standby}}
	if _, err := a.node.Apply(r.Context(), cmd); err != nil {
		return nil, err
	}
	a.log.Info("standby coordinator added to the topology", "dbid", standby.DBID, "host", host, "port", port)
	return a.getState(r)
}
