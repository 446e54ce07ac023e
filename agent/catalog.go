package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gpagent/gpagent/catalog"
	"github.com/gpagent/gpagent/supervisor"
	"github.com/gpagent/gpagent/topology"
)

// catalogCheckEvery is how often the coordinator's agent compares the
// committed config version with the one the catalog holds. A read of one
// row on an open connection: cheap enough to keep the catalog within a
// second of each commit without waiting for a change notification.
const catalogCheckEvery = 100 * time.Millisecond

// runCatalog keeps the gp catalog and foreign servers on the coordinator
// equal to the committed topology (package catalog). Only the agent of the
// coordinator's acting primary does it, only while it holds its lease (a
// fenced agent's view may be stale, and its coordinator is read-only), and
// only on real PostgreSQL. After a coordinator failover the new acting
// coordinator's agent finds an old version in the catalog it inherited by
// replication and writes the current one.
func (a *Agent) runCatalog(ctx context.Context) {
	sup, ok := a.drv.(*supervisor.Supervisor)
	if !ok {
		return
	}
	conns := map[string]*pgx.Conn{}
	var connDBID int
	closeAll := func() {
		for db, c := range conns {
			closeConn(c)
			delete(conns, db)
		}
	}
	defer closeAll()
	lastErr := map[string]string{}
	tick := time.NewTicker(catalogCheckEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		t := a.node.Topology()
		p, ok := t.Primary(topology.CoordinatorContent)
		if !ok || !t.Initialized() {
			closeAll()
			continue
		}
		// Not isLocalActingPrimary: it waits for a probe (every
		// probe_interval) to see a promoted standby out of recovery;
		// syncCatalogDB asks the server itself, so a new coordinator's
		// catalog follows within ~100 ms of its promotion.
		if p.Hostname != a.cfg.Name || p.Status != topology.StatusUp || a.lease.isFenced() {
			closeAll()
			continue
		}
		if connDBID != p.DBID {
			closeAll()
			connDBID = p.DBID
		}
		login := catalog.Login{User: a.cfg.SuperUser, Password: a.cfg.SuperPassword}
		for _, db := range t.CatalogDatabases() {
			err := a.syncCatalogDB(ctx, sup, p, db, t, conns, login)
			msg := ""
			if err != nil {
				msg = err.Error()
				if c := conns[db]; c != nil {
					closeConn(c)
					delete(conns, db)
				}
			}
			// Log a failure once, not ten times a second.
			if msg != lastErr[db] {
				if err != nil {
					a.log.Warn("coordinator catalog not synced", "database", db, "err", err)
				} else {
					a.log.Info("coordinator catalog syncing again", "database", db)
				}
				lastErr[db] = msg
			}
		}
	}
}

func (a *Agent) syncCatalogDB(ctx context.Context, sup *supervisor.Supervisor, p topology.Segment, db string, t *topology.Topology, conns map[string]*pgx.Conn, login catalog.Login) error {
	c := conns[db]
	if c == nil {
		cfg, err := pgx.ParseConfig(sup.ConnString(localInstance(p)))
		if err != nil {
			return err
		}
		cfg.Database = db
		cfg.ConnectTimeout = 2 * time.Second
		cfg.RuntimeParams["application_name"] = "gpagent catalog"
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err = pgx.ConnectConfig(cctx, cfg)
		cancel()
		if err != nil {
			return fmt.Errorf("connect to the coordinator: %w", err)
		}
		conns[db] = c
	}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := catalog.Version(qctx, c)
	if err != nil {
		return err
	}
	if v == t.ConfigVersion {
		return nil
	}
	var inRecovery bool
	if err := c.QueryRow(qctx, `SELECT pg_is_in_recovery()`).Scan(&inRecovery); err != nil {
		return fmt.Errorf("read pg_is_in_recovery: %w", err)
	}
	if inRecovery {
		return nil // promoted in the topology, pg_promote not done yet
	}
	start := time.Now()
	if err := catalog.Sync(qctx, c, t, login); err != nil {
		return err
	}
	a.log.Info("coordinator catalog synced", "database", db, "config_version", t.ConfigVersion, "from", v, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = c.Close(ctx)
}
