package topology

import (
	"errors"
	"fmt"
	"path/filepath"
)

var (
	// ErrNoCoordinator: the topology has no coordinator to add a standby to.
	ErrNoCoordinator = errors.New("no coordinator")
	// ErrHasStandby: the coordinator already has a standby.
	ErrHasStandby = errors.New("the coordinator already has a standby")
)

// StandbyRequest is where the operator asks for a standby coordinator
// (gpinitstandby -s, -P, -S); zero fields take defaults.
type StandbyRequest struct {
	Host    string
	Port    int
	DataDir string
}

// PlaceStandby returns the standby coordinator to add for req: a mirror
// of content -1, role and preferred role m, not in sync and down (so it is
// built and vouched like any mirror before it can be promoted, rule 2),
// with the next dbid. It goes on the coordinator's host unless req says
// otherwise; on another host it takes that host's address (from an
// instance there) and, by default, the coordinator's port; on the same
// host the port must be given. The data dir defaults to
// <coordinator's grandparent>/standby/<coordinator's dir name>.
func PlaceStandby(t *Topology, req StandbyRequest) (Segment, error) {
	coord, ok := t.Primary(CoordinatorContent)
	if !ok {
		return Segment{}, fmt.Errorf("%w: run gpagent init first", ErrNoCoordinator)
	}
	if m, ok := t.Mirror(CoordinatorContent); ok {
		return Segment{}, fmt.Errorf("%w: dbid %d on %s:%d", ErrHasStandby, m.DBID, m.Hostname, m.Port)
	}
	host := req.Host
	if host == "" {
		host = coord.Hostname
	}
	address := coord.Address
	if host != coord.Hostname {
		segs := t.OnHost(host)
		if len(segs) == 0 {
			return Segment{}, inputErrorf("-s "+host, "no instance on that host; its address is unknown")
		}
		address = segs[0].Address
	}
	port := req.Port
	if port == 0 {
		if host == coord.Hostname {
			return Segment{}, inputErrorf("-P", "required when the standby shares the coordinator's host %s", host)
		}
		port = coord.Port
	}
	datadir := req.DataDir
	if datadir == "" {
		datadir = filepath.Join(filepath.Dir(filepath.Dir(coord.DataDir)), "standby", filepath.Base(coord.DataDir))
	}
	return Segment{
		DBID: t.MaxDBID() + 1, Content: CoordinatorContent,
		Role: RoleMirror, PreferredRole: RoleMirror,
		Mode: ModeNotSynced, Status: StatusDown,
		Hostname: host, Address: address, Port: port, DataDir: datadir,
	}, nil
}
