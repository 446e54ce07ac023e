// Package catalog keeps the coordinator's SQL view of the cluster: a gp
// schema with Greenplum's gp_segment_configuration and
// gp_configuration_history, a gp_stat_replication view, and one
// postgres_fdw foreign server per content (gpseg<N>) whose host list
// names the content's acting primary first. The topology in Raft stays the
// source of truth: Sync rewrites these from it, and a trigger refuses
// writes from any session that is not the agent's.
//
// The package is SQL text and functions over a pgx connection; it reads no
// clock and starts no goroutine.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/gpagent/gpagent/topology"
)

// Schema is the schema the catalog lives in on the coordinator.
const Schema = "gp"

// SyncSetting is the session setting the agent turns on, in the
// transaction that writes the catalog, to get past the guard trigger.
const SyncSetting = "gpagent.catalog_sync"

// ServerName is the foreign server of a content.
func ServerName(content int) string { return fmt.Sprintf("gpseg%d", content) }

// schemaSQL creates what does not depend on the topology. Every statement
// is idempotent: it runs at the start of every sync, so a catalog dropped
// by hand comes back.
const schemaSQL = `
CREATE EXTENSION IF NOT EXISTS postgres_fdw;
CREATE SCHEMA IF NOT EXISTS gp;
CREATE TABLE IF NOT EXISTS gp.gp_segment_configuration (
	dbid smallint PRIMARY KEY,
	content smallint NOT NULL,
	role "char" NOT NULL,
	preferred_role "char" NOT NULL,
	mode "char" NOT NULL,
	status "char" NOT NULL,
	port integer NOT NULL,
	hostname text NOT NULL,
	address text NOT NULL,
	datadir text NOT NULL
);
CREATE TABLE IF NOT EXISTS gp.gp_configuration_history (
	"time" timestamptz NOT NULL,
	dbid smallint NOT NULL,
	"desc" text NOT NULL
);
CREATE TABLE IF NOT EXISTS gp.gp_catalog_version (
	config_version bigint NOT NULL,
	cluster_id text NOT NULL,
	synced_at timestamptz NOT NULL
);
-- gp.gp_distributed_tables: the tables gpagent table create made.
CREATE TABLE IF NOT EXISTS gp.gp_distributed_tables (
	name text PRIMARY KEY,
	distributed_by text NOT NULL,
	ddl text NOT NULL,
	created timestamptz NOT NULL DEFAULT now()
);
CREATE OR REPLACE FUNCTION gp.refuse_hand_writes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	IF coalesce(current_setting('gpagent.catalog_sync', true), '') <> 'on' THEN
		RAISE EXCEPTION 'gp.% is kept by gpagent from the cluster topology; change the cluster with gpagent commands', TG_TABLE_NAME
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	RETURN NULL;
END $$;
`

// guarded are the tables the trigger protects.
var guarded = []string{"gp_segment_configuration", "gp_configuration_history", "gp_catalog_version", "gp_distributed_tables"}

func guardSQL() string {
	var b strings.Builder
	for _, t := range guarded {
		fmt.Fprintf(&b, "DROP TRIGGER IF EXISTS refuse_hand_writes ON gp.%s;\n", t)
		fmt.Fprintf(&b, "CREATE TRIGGER refuse_hand_writes BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON gp.%s FOR EACH STATEMENT EXECUTE FUNCTION gp.refuse_hand_writes();\n", t)
	}
	return b.String()
}

// replColumns are pg_stat_replication's columns in PostgreSQL 15, typed
// for a foreign table over the segment's own view.
const replColumns = `pid integer, usesysid oid, usename name, application_name text,
	client_addr inet, client_hostname text, client_port integer,
	backend_start timestamptz, backend_xmin xid, state text,
	sent_lsn pg_lsn, write_lsn pg_lsn, flush_lsn pg_lsn, replay_lsn pg_lsn,
	write_lag interval, flush_lag interval, replay_lag interval,
	sync_priority integer, sync_state text, reply_time timestamptz`

// Server is a content's foreign server as the topology wants it.
type Server struct {
	Content int
	Hosts   []string
	Ports   []int
}

// Options are the server's postgres_fdw options.
func (s Server) Options() map[string]string {
	ports := make([]string, len(s.Ports))
	for i, p := range s.Ports {
		ports[i] = fmt.Sprint(p)
	}
	return map[string]string{
		"host":   strings.Join(s.Hosts, ","),
		"port":   strings.Join(ports, ","),
		"dbname": "postgres",
		// libpq skips an instance that is not writable: a mirror, and an
		// old primary the agent fenced (default_transaction_read_only).
		"target_session_attrs": "read-write",
		"async_capable":        "true",
		"connect_timeout":      "2",
		"application_name":     topology.CoordinatorAppName,
		// A host cut off mid-query leaves a cached connection waiting on a
		// socket that never answers: keepalives end it in about 4 s.
		"keepalives_idle":     "2",
		"keepalives_interval": "1",
		"keepalives_count":    "2",
	}
}

// Servers lists the foreign servers of t, one per segment content, each
// with the content's acting primary first, then its other instances (a
// mirror promoted before the next sync is still reached, by libpq's
// read-write check).
func Servers(t *topology.Topology) []Server {
	var out []Server
	for _, c := range contents(t) {
		var first, rest []topology.Segment
		for _, s := range t.Content(c) {
			if s.Role == topology.RolePrimary && s.Status == topology.StatusUp {
				first = append(first, s)
			} else {
				rest = append(rest, s)
			}
		}
		sv := Server{Content: c}
		for _, s := range append(first, rest...) {
			sv.Hosts = append(sv.Hosts, s.Address)
			sv.Ports = append(sv.Ports, s.Port)
		}
		out = append(out, sv)
	}
	return out
}

func contents(t *topology.Topology) []int {
	seen := map[int]bool{}
	var out []int
	for _, s := range t.Segments {
		if s.Content >= 0 && !seen[s.Content] {
			seen[s.Content] = true
			out = append(out, s.Content)
		}
	}
	// Ascending contents keep the view's text stable across syncs.
	slices.Sort(out)
	return out
}

// Login is the role postgres_fdw connects to the segments as.
type Login struct {
	User     string
	Password string
}

// Version reads the config version the catalog holds, 0 when it was never
// written (or the schema is missing).
func Version(ctx context.Context, conn *pgx.Conn) (uint64, error) {
	var v int64
	err := conn.QueryRow(ctx, `SELECT coalesce((SELECT max(config_version) FROM gp.gp_catalog_version), 0)`).Scan(&v)
	if err != nil {
		var missing bool
		if qerr := conn.QueryRow(ctx, `SELECT to_regclass('gp.gp_catalog_version') IS NULL`).Scan(&missing); qerr == nil && missing {
			return 0, nil
		}
		return 0, fmt.Errorf("read gp.gp_catalog_version: %w", err)
	}
	return uint64(v), nil
}

// Sync makes the catalog in conn's database equal to t in one
// transaction: the tables, the foreign servers and their user mapping for
// login, the replication view and the version row. A session reading the
// catalog sees the old topology or the new one, never a mix.
func Sync(ctx context.Context, conn *pgx.Conn, t *topology.Topology, login Login) (err error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("catalog sync: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(ctx)
		}
	}()
	// Two agents (an old coordinator's and a new one's) must not
	// interleave their writes: the lock serializes them.
	if _, err = tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('gpagent.catalog'))`); err != nil {
		return fmt.Errorf("catalog sync: lock: %w", err)
	}
	if _, err = tx.Exec(ctx, schemaSQL+guardSQL()); err != nil {
		return fmt.Errorf("catalog sync: schema: %w", err)
	}
	if _, err = tx.Exec(ctx, `SET LOCAL gpagent.catalog_sync = on`); err != nil {
		return fmt.Errorf("catalog sync: %w", err)
	}
	b := &pgx.Batch{}
	b.Queue(`DELETE FROM gp.gp_segment_configuration`)
	for _, s := range t.Segments {
		b.Queue(`INSERT INTO gp.gp_segment_configuration VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)`,
			s.DBID, s.Content, string(s.Role), string(s.PreferredRole), string(s.Mode), string(s.Status),
			s.Port, s.Hostname, s.Address, s.DataDir)
	}
	b.Queue(`DELETE FROM gp.gp_configuration_history`)
	if len(t.History) > 0 {
		times := make([]any, len(t.History))
		dbids := make([]int32, len(t.History))
		descs := make([]string, len(t.History))
		for i, h := range t.History {
			times[i], dbids[i], descs[i] = h.Time, int32(h.DBID), h.Desc
		}
		b.Queue(`INSERT INTO gp.gp_configuration_history SELECT * FROM unnest($1::timestamptz[], $2::smallint[], $3::text[])`, times, dbids, descs)
	}
	if err = tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("catalog sync: tables: %w", err)
	}
	servers := Servers(t)
	for _, sv := range servers {
		if err = syncServer(ctx, tx, sv, login); err != nil {
			return err
		}
	}
	if _, err = tx.Exec(ctx, replicationViewSQL(servers)); err != nil {
		return fmt.Errorf("catalog sync: gp_stat_replication: %w", err)
	}
	if _, err = tx.Exec(ctx, `DELETE FROM gp.gp_catalog_version`); err != nil {
		return fmt.Errorf("catalog sync: version: %w", err)
	}
	if _, err = tx.Exec(ctx, `INSERT INTO gp.gp_catalog_version VALUES ($1, $2, now())`, int64(t.ConfigVersion), t.ClusterID); err != nil {
		return fmt.Errorf("catalog sync: version: %w", err)
	}
	if err = tx.Commit(ctx); err != nil {
		return fmt.Errorf("catalog sync: commit: %w", err)
	}
	return nil
}

// syncServer creates the content's foreign server or changes its host
// list. ALTER SERVER makes every session's postgres_fdw drop its cached
// connection to the server at its next use, so sessions follow a moved
// primary without reconnecting to the coordinator.
func syncServer(ctx context.Context, tx pgx.Tx, sv Server, login Login) error {
	name := ServerName(sv.Content)
	var current []string
	err := tx.QueryRow(ctx, `SELECT coalesce(srvoptions, '{}') FROM pg_foreign_server WHERE srvname = $1`, name).Scan(&current)
	opts := sv.Options()
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if _, err := tx.Exec(ctx, fmt.Sprintf("CREATE SERVER %s FOREIGN DATA WRAPPER postgres_fdw OPTIONS (%s)", pgx.Identifier{name}.Sanitize(), optionList(opts, nil))); err != nil {
			return fmt.Errorf("catalog sync: create server %s: %w", name, err)
		}
	case err != nil:
		return fmt.Errorf("catalog sync: read server %s: %w", name, err)
	default:
		have := parseOptions(current)
		if !sameOptions(have, opts) {
			if _, err := tx.Exec(ctx, fmt.Sprintf("ALTER SERVER %s OPTIONS (%s)", pgx.Identifier{name}.Sanitize(), optionList(opts, have))); err != nil {
				return fmt.Errorf("catalog sync: alter server %s: %w", name, err)
			}
		}
	}
	um := map[string]string{"user": login.User, "password": login.Password}
	var umCurrent []string
	err = tx.QueryRow(ctx, `SELECT coalesce(umoptions, '{}') FROM pg_user_mappings WHERE srvname = $1 AND usename = $2`, name, login.User).Scan(&umCurrent)
	user := pgx.Identifier{login.User}.Sanitize()
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		_, err = tx.Exec(ctx, fmt.Sprintf("CREATE USER MAPPING FOR %s SERVER %s OPTIONS (%s)", user, pgx.Identifier{name}.Sanitize(), optionList(um, nil)))
	case err != nil:
	default:
		if have := parseOptions(umCurrent); !sameOptions(have, um) {
			_, err = tx.Exec(ctx, fmt.Sprintf("ALTER USER MAPPING FOR %s SERVER %s OPTIONS (%s)", user, pgx.Identifier{name}.Sanitize(), optionList(um, have)))
		}
	}
	if err != nil {
		return fmt.Errorf("catalog sync: user mapping for %s on %s: %w", login.User, name, err)
	}
	ft := pgx.Identifier{Schema, fmt.Sprintf("gpseg%d_stat_replication", sv.Content)}.Sanitize()
	if _, err := tx.Exec(ctx, fmt.Sprintf("CREATE FOREIGN TABLE IF NOT EXISTS %s (%s) SERVER %s OPTIONS (schema_name 'pg_catalog', table_name 'pg_stat_replication')",
		ft, replColumns, pgx.Identifier{name}.Sanitize())); err != nil {
		return fmt.Errorf("catalog sync: %s: %w", ft, err)
	}
	return nil
}

// replicationViewSQL is gp_stat_replication: each content's primary's
// pg_stat_replication read through its foreign server, with the content
// as gp_segment_id and the mode the topology records for the pair as
// gp_sync_state (the sync state as the agents last reported it).
func replicationViewSQL(servers []Server) string {
	var parts []string
	for _, sv := range servers {
		parts = append(parts, fmt.Sprintf("SELECT %d::smallint AS gp_segment_id, r.*, "+
			"(SELECT c.mode FROM gp.gp_segment_configuration c WHERE c.content = %d AND c.role = 'm' LIMIT 1) AS gp_sync_state "+
			"FROM gp.gpseg%d_stat_replication r", sv.Content, sv.Content, sv.Content))
	}
	if len(parts) == 0 {
		parts = []string{"SELECT NULL::smallint AS gp_segment_id, NULL::integer AS pid, NULL::\"char\" AS gp_sync_state WHERE false"}
	}
	// Drop first: the set of contents (and so the view's text) may change.
	return "DROP VIEW IF EXISTS gp.gp_stat_replication;\nCREATE VIEW gp.gp_stat_replication AS\n" + strings.Join(parts, "\nUNION ALL\n")
}

// optionList builds an OPTIONS clause. With have (ALTER), options already
// there are SET and missing ones ADDed.
func optionList(want, have map[string]string) string {
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []string
	for _, k := range keys {
		v := quoteLiteral(want[k])
		switch {
		case have == nil:
			out = append(out, k+" "+v)
		case func() bool { _, ok := have[k]; return ok }():
			if have[k] != want[k] {
				out = append(out, "SET "+k+" "+v)
			}
		default:
			out = append(out, "ADD "+k+" "+v)
		}
	}
	return strings.Join(out, ", ")
}

func parseOptions(kv []string) map[string]string {
	m := map[string]string{}
	for _, o := range kv {
		k, v, _ := strings.Cut(o, "=")
		m[k] = v
	}
	return m
}

func sameOptions(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
