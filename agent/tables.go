package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/catalog"
	"github.com/gpagent/gpagent/supervisor"
	"github.com/gpagent/gpagent/topology"
)

// postTables answers POST /v1/tables (gpagent table create): the table on
// every content's primary, then on the coordinator the partitioned table
// with a foreign partition per content. A table the coordinator already
// knows is left as it is.
func (a *Agent) postTables(r *http.Request) (any, error) {
	var req api.Table
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	tb := catalog.Table{Name: req.Name, DistributedBy: req.DistributedBy, DDL: req.DDL}
	if err := tb.Check(); err != nil {
		return nil, api.Errorf(api.CodeInvalid, "%v", err)
	}
	t := a.node.Topology()
	if !t.Initialized() {
		return nil, api.Errorf(api.CodeInvalid, "no cluster: run gpagent init first")
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	coord, err := a.connectActing(ctx, t, topology.CoordinatorContent)
	if err != nil {
		return nil, err
	}
	defer closeConn(coord)
	out := &api.TableCreated{Table: req}
	if ok, err := a.waitCatalog(ctx, coord, t); err != nil || !ok {
		return nil, api.Errorf(api.CodeConflict, "the coordinator's catalog is not at config version %d yet: %v", t.ConfigVersion, err)
	}
	if exists, err := catalog.Exists(ctx, coord, tb.Name); err != nil {
		return nil, err
	} else if exists {
		out.Existed = true
		return out, nil
	}
	n := 0
	for _, s := range t.Segments {
		n = max(n, s.Content+1)
	}
	for c := range n {
		seg, err := a.connectActing(ctx, t, c)
		if err != nil {
			return nil, err
		}
		err = catalog.CreateOnSegment(ctx, seg, tb)
		closeConn(seg)
		if err != nil {
			return nil, api.Errorf(api.CodeInvalid, "content %d: %v", c, err)
		}
	}
	if err := catalog.CreateOnCoordinator(ctx, coord, tb, n); err != nil {
		if errors.Is(err, catalog.ErrExists) {
			out.Existed = true
			return out, nil
		}
		return nil, api.Errorf(api.CodeInvalid, "coordinator: %v", err)
	}
	a.log.Info("distributed table created", "table", tb.Name, "distributed_by", tb.DistributedBy, "contents", n)
	out.Contents = n
	return out, nil
}

// getTables answers GET /v1/tables.
func (a *Agent) getTables(r *http.Request) (any, error) {
	t := a.node.Topology()
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	coord, err := a.connectActing(ctx, t, topology.CoordinatorContent)
	if err != nil {
		return nil, err
	}
	defer closeConn(coord)
	list, err := catalog.List(ctx, coord)
	if err != nil {
		return nil, err
	}
	out := make([]api.Table, 0, len(list))
	for _, tb := range list {
		out = append(out, api.Table{Name: tb.Name, DistributedBy: tb.DistributedBy, DDL: tb.DDL})
	}
	return out, nil
}

// waitCatalog waits (bounded by ctx) until the coordinator's catalog holds
// t's version, so the foreign servers name the current primaries.
func (a *Agent) waitCatalog(ctx context.Context, coord *pgx.Conn, t *topology.Topology) (bool, error) {
	for {
		v, err := catalog.Version(ctx, coord)
		if err == nil && v >= t.ConfigVersion {
			return true, nil
		}
		select {
		case <-ctx.Done():
			return false, err
		case <-time.After(catalogCheckEvery):
		}
	}
}

// connectActing opens a superuser connection to content's acting primary
// from whichever agent serves the request.
func (a *Agent) connectActing(ctx context.Context, t *topology.Topology, content int) (*pgx.Conn, error) {
	sup, ok := a.drv.(*supervisor.Supervisor)
	if !ok {
		return nil, api.Errorf(api.CodeInvalid, "distributed tables need real PostgreSQL instances")
	}
	p, ok := t.Primary(content)
	if !ok || p.Status != topology.StatusUp {
		return nil, api.Errorf(api.CodeConflict, "content %d has no primary up", content)
	}
	cfg, err := pgx.ParseConfig(sup.ConnString(localInstance(p)))
	if err != nil {
		return nil, err
	}
	cfg.ConnectTimeout = 5 * time.Second
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, api.Errorf(api.CodeConflict, "content %d: connect to %s: %v", content, fmt.Sprintf("%s:%d", p.Address, p.Port), err)
	}
	return c, nil
}
