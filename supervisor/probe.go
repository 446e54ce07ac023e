package supervisor

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Health is one probe's reading of an instance.
type Health struct {
	InRecovery       bool
	CurrentLSN       uint64 // pg_current_wal_lsn() on a primary, pg_last_wal_replay_lsn() on a standby
	SyncStandbyNames string
	Replication      []Replica // pg_stat_replication rows
	Receiver         *Receiver // pg_stat_wal_receiver (standby); nil if none
}

// Replica is one walsender of a primary (a pg_stat_replication row).
type Replica struct {
	ApplicationName              string
	State                        string // streaming, catchup, ...
	SyncState                    string // sync, async, potential, quorum
	SentLSN, FlushLSN, ReplayLSN uint64
	ReplyTime                    time.Time // last reply from the standby; zero if none yet
}

// Receiver is a standby's WAL receiver (pg_stat_wal_receiver).
type Receiver struct {
	Status     string
	SenderHost string
	SenderPort int
	FlushedLSN uint64
	// LatestEndLSN: the end of the primary's WAL as its walsender last
	// reported it (pg_stat_wal_receiver.latest_end_lsn), so a mirror's
	// lag behind its primary is known on the mirror's host.
	LatestEndLSN uint64
}

// connect opens a superuser connection over TCP. Every connection is
// short-lived: a probe must notice a server that stopped answering, which
// a pooled connection established long ago would hide.
func (s *Supervisor) connect(ctx context.Context, host string, port int) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(connString(host, port, s.cfg.SuperUser, s.cfg.SuperPassword,
		"dbname", "postgres", "sslmode", "disable", "application_name", "gpagent"))
	if err != nil {
		return nil, err
	}
	cfg.ConnectTimeout = s.cfg.ProbeTimeout
	return pgx.ConnectConfig(ctx, cfg)
}

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c.Close(ctx)
}

// Probe connects to inst and reads its health, all within ProbeTimeout.
// An unreachable or unanswering server is an error.
func (s *Supervisor) Probe(ctx context.Context, inst Instance) (Health, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ProbeTimeout)
	defer cancel()
	conn, err := s.probeConn(ctx, inst)
	if err != nil {
		return Health{}, fmt.Errorf("probe %s: %w", inst, err)
	}
	ok := false
	defer func() {
		if ok {
			s.probes.put(inst.DBID, conn)
		} else {
			closeConn(conn)
		}
	}()

	// One round trip for the three queries.
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_is_in_recovery(), current_setting('synchronous_standby_names'),
		(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text`)
	b.Queue(`SELECT coalesce(application_name, ''), coalesce(state, ''), coalesce(sync_state, ''),
		sent_lsn::text, flush_lsn::text, replay_lsn::text, reply_time
		FROM pg_stat_replication ORDER BY application_name, pid`)
	b.Queue(`SELECT coalesce(status, ''), sender_host, sender_port, flushed_lsn::text, latest_end_lsn::text FROM pg_stat_wal_receiver`)
	br := conn.SendBatch(ctx, b)
	defer br.Close()

	var h Health
	var lsn *string
	if err := br.QueryRow().Scan(&h.InRecovery, &h.SyncStandbyNames, &lsn); err != nil {
		return Health{}, fmt.Errorf("probe %s: %w", inst, err)
	}
	h.CurrentLSN = parseLSN(lsn)

	rows, err := br.Query()
	if err != nil {
		return Health{}, fmt.Errorf("probe %s: pg_stat_replication: %w", inst, err)
	}
	for rows.Next() {
		var r Replica
		var sent, flush, replay *string
		var reply *time.Time
		if err := rows.Scan(&r.ApplicationName, &r.State, &r.SyncState, &sent, &flush, &replay, &reply); err != nil {
			rows.Close()
			return Health{}, fmt.Errorf("probe %s: pg_stat_replication: %w", inst, err)
		}
		r.SentLSN, r.FlushLSN, r.ReplayLSN = parseLSN(sent), parseLSN(flush), parseLSN(replay)
		if reply != nil {
			r.ReplyTime = *reply
		}
		h.Replication = append(h.Replication, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return Health{}, fmt.Errorf("probe %s: pg_stat_replication: %w", inst, err)
	}

	rows, err = br.Query()
	if err != nil {
		return Health{}, fmt.Errorf("probe %s: pg_stat_wal_receiver: %w", inst, err)
	}
	for rows.Next() {
		var r Receiver
		var host, flushed, latestEnd *string
		var port *int32
		if err := rows.Scan(&r.Status, &host, &port, &flushed, &latestEnd); err != nil {
			rows.Close()
			return Health{}, fmt.Errorf("probe %s: pg_stat_wal_receiver: %w", inst, err)
		}
		if host != nil {
			r.SenderHost = *host
		}
		if port != nil {
			r.SenderPort = int(*port)
		}
		r.FlushedLSN = parseLSN(flushed)
		r.LatestEndLSN = parseLSN(latestEnd)
		h.Receiver = &r
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return Health{}, fmt.Errorf("probe %s: pg_stat_wal_receiver: %w", inst, err)
	}
	ok = true
	return h, nil
}

// parseLSN reads PostgreSQL's text form of an LSN ("16/B374D848"); NULL
// or garbage reads as 0, which every comparison treats as "nothing yet".
func parseLSN(s *string) uint64 {
	if s == nil {
		return 0
	}
	hi, lo, ok := strings.Cut(*s, "/")
	if !ok {
		return 0
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0
	}
	return h<<32 | l
}

// SetSyncStandby sets synchronous_standby_names on the running inst to
// appNames (in priority order; the first connected one is the synchronous
// standby), or clears it when appNames is empty. The value goes through
// gpagent.conf and a configuration reload, so it also holds after a
// restart; the call returns once the server reports the new value.
func (s *Supervisor) SetSyncStandby(ctx context.Context, inst Instance, appNames []string) error {
	want, err := syncNames(appNames)
	if err != nil {
		return err
	}
	c, unlock, err := s.lockConf(ctx, inst, "set sync standby on")
	if err != nil {
		return err
	}
	defer unlock()
	if c.SyncStandbyNames != want {
		c.SyncStandbyNames = want
		if err := s.writeManagedConf(inst.DataDir, c); err != nil {
			return fmt.Errorf("set sync standby on %s: %w", inst, err)
		}
	}
	if err := s.reloadAndWait(ctx, inst, "synchronous_standby_names", want); err != nil {
		return fmt.Errorf("set sync standby on %s: %w", inst, err)
	}
	s.log.Info("synchronous_standby_names set", "dbid", inst.DBID, "value", want)
	return nil
}

// reloadAndWait reloads inst's configuration and waits until the setting
// shows the wanted value. A value set elsewhere after gpagent.conf (ALTER
// SYSTEM writes postgresql.auto.conf, which is read last) or a broken file
// would never show it; those are reported at once instead of waited out.
func (s *Supervisor) reloadAndWait(ctx context.Context, inst Instance, name, want string) error {
	conn, err := s.connect(ctx, inst.Address, inst.Port)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	var cur string
	if err := conn.QueryRow(ctx, `SELECT current_setting($1)`, name).Scan(&cur); err != nil {
		return err
	}
	if cur == want {
		return nil // a reload signals every backend: not for nothing
	}
	if _, err := conn.Exec(ctx, `SELECT pg_reload_conf()`); err != nil {
		return err
	}
	var where, errs string
	err = conn.QueryRow(ctx, `SELECT
		coalesce((SELECT sourcefile FROM pg_file_settings WHERE name = $1 AND applied
		          AND sourcefile NOT LIKE '%/`+managedConfFile+`'), ''),
		coalesce((SELECT string_agg(sourcefile || ':' || sourceline || ': ' || error, '; ')
		          FROM pg_file_settings WHERE error IS NOT NULL), '')`, name).Scan(&where, &errs)
	switch {
	case err != nil:
		return err
	case where != "":
		return fmt.Errorf("%s is overridden in %s", name, where)
	case errs != "":
		return fmt.Errorf("configuration has errors: %s", errs)
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		// The backend applies the reload between commands, so each query
		// sees the value as of when it started.
		var got string
		if err := conn.QueryRow(ctx, `SELECT current_setting($1)`, name).Scan(&got); err != nil {
			return err
		}
		if got == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s still %q, want %q: %w", name, got, want, ctx.Err())
		case <-t.C:
		}
	}
}
