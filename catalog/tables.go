package catalog

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Table is a distributed table: created on every content's primary, and
// on the coordinator as a hash-partitioned table whose partitions are
// foreign tables, one per content.
type Table struct {
	Name          string `json:"name"`
	DistributedBy string `json:"distributed_by"`
	DDL           string `json:"ddl"`
}

var identPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Check validates t; errors name the flag.
func (t Table) Check() error {
	switch {
	case !identPattern.MatchString(t.Name):
		return fmt.Errorf("NAME %q: use a lower-case unquoted identifier (letters, digits, '_')", t.Name)
	case !identPattern.MatchString(t.DistributedBy):
		return fmt.Errorf("--distributed-by %q: use a lower-case unquoted column name", t.DistributedBy)
	}
	ddl := strings.Join(strings.Fields(strings.ToLower(t.DDL)), " ")
	if !strings.HasPrefix(ddl, "create table "+t.Name+" (") && !strings.HasPrefix(ddl, "create table "+t.Name+"(") {
		return fmt.Errorf("--ddl: must begin with CREATE TABLE %s (", t.Name)
	}
	if strings.Contains(strings.TrimSuffix(strings.TrimSpace(t.DDL), ";"), ";") {
		return errors.New("--ddl: one CREATE TABLE statement only")
	}
	return nil
}

// ErrExists says the distributed table already exists: nothing changed.
var ErrExists = errors.New("distributed table already exists")

// Exists reports whether the coordinator knows the table.
func Exists(ctx context.Context, coord *pgx.Conn, name string) (bool, error) {
	var n int
	err := coord.QueryRow(ctx, `SELECT count(*) FROM gp.gp_distributed_tables WHERE name = $1`, name).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("read gp.gp_distributed_tables: %w", err)
	}
	return n > 0, nil
}

// CreateOnSegment creates the table on one content's primary, unless a
// table of that name is there already (an earlier create that stopped
// half way).
func CreateOnSegment(ctx context.Context, seg *pgx.Conn, t Table) error {
	var exists bool
	if err := seg.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, t.Name).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	_, err := seg.Exec(ctx, strings.TrimSuffix(strings.TrimSpace(t.DDL), ";"))
	return err
}

// CreateOnCoordinator creates, in one transaction, the partitioned table
// and one foreign partition per content (contents are 0..n-1), and records
// it in gp.gp_distributed_tables. The parent takes its columns, NOT NULL
// constraints and defaults from the DDL (run in a scratch schema and
// dropped): unique indexes cannot span foreign partitions, and each
// segment enforces its own.
func CreateOnCoordinator(ctx context.Context, coord *pgx.Conn, t Table, contents int) (err error) {
	tx, err := coord.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(ctx)
		}
	}()
	if _, err = tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('gpagent.catalog'))`); err != nil {
		return err
	}
	var n int
	if err = tx.QueryRow(ctx, `SELECT count(*) FROM gp.gp_distributed_tables WHERE name = $1`, t.Name).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return ErrExists
	}
	name := pgx.Identifier{t.Name}.Sanitize()
	stmts := []string{
		`CREATE SCHEMA gp_ddl_scratch`,
		`SET LOCAL search_path = gp_ddl_scratch`,
		strings.TrimSuffix(strings.TrimSpace(t.DDL), ";"),
		`RESET search_path`,
		fmt.Sprintf(`CREATE TABLE public.%s (LIKE gp_ddl_scratch.%s INCLUDING DEFAULTS) PARTITION BY HASH (%s)`, name, name, pgx.Identifier{t.DistributedBy}.Sanitize()),
		`DROP SCHEMA gp_ddl_scratch CASCADE`,
	}
	for c := 0; c < contents; c++ {
		stmts = append(stmts, fmt.Sprintf(`CREATE FOREIGN TABLE public.%s PARTITION OF public.%s FOR VALUES WITH (MODULUS %d, REMAINDER %d) SERVER %s OPTIONS (schema_name 'public', table_name %s)`,
			pgx.Identifier{fmt.Sprintf("%s_seg%d", t.Name, c)}.Sanitize(), name, contents, c, ServerName(c), quoteLiteral(t.Name)))
	}
	stmts = append(stmts, `SET LOCAL gpagent.catalog_sync = on`)
	for _, s := range stmts {
		if _, err = tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", firstWords(s), err)
		}
	}
	if _, err = tx.Exec(ctx, `INSERT INTO gp.gp_distributed_tables (name, distributed_by, ddl) VALUES ($1, $2, $3)`, t.Name, t.DistributedBy, t.DDL); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// List reads the distributed tables the coordinator knows.
func List(ctx context.Context, coord *pgx.Conn) ([]Table, error) {
	rows, err := coord.Query(ctx, `SELECT name, distributed_by, ddl FROM gp.gp_distributed_tables ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("read gp.gp_distributed_tables: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Table, error) {
		var t Table
		err := r.Scan(&t.Name, &t.DistributedBy, &t.DDL)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("read gp.gp_distributed_tables: %w", err)
	}
	return out, nil
}

func firstWords(s string) string {
	f := strings.Fields(s)
	if len(f) > 4 {
		f = f[:4]
	}
	return strings.Join(f, " ")
}
