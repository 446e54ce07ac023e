package main

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// coordReader is the read load of failover --coordinator: one session on
// the coordinator runs SELECT count(*) FROM region every interval, as a
// user's would, reconnecting after an error.
type coordReader struct {
	cfg       *pgx.ConnConfig
	interval  time.Duration
	opTimeout time.Duration

	mu  sync.Mutex
	ops []coordOp
}

type coordOp struct {
	start, end time.Time
	ok         bool
}

func (r *coordReader) run(ctx context.Context) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for ctx.Err() == nil {
		start := time.Now()
		ok := func() bool {
			octx, cancel := context.WithTimeout(ctx, r.opTimeout)
			defer cancel()
			if conn == nil {
				c, err := pgx.ConnectConfig(octx, r.cfg)
				if err != nil {
					return false
				}
				conn = c
			}
			var n int64
			if err := conn.QueryRow(octx, "SELECT count(*) FROM region").Scan(&n); err != nil {
				conn.Close(context.Background())
				conn = nil
				return false
			}
			return true
		}()
		if ctx.Err() != nil {
			return // an op cut short by the end of the trial is no failure
		}
		r.mu.Lock()
		r.ops = append(r.ops, coordOp{start: start, end: time.Now(), ok: ok})
		r.mu.Unlock()
		sleepCtx(ctx, r.interval)
	}
}

// unavailable is how long coordinator queries failed after t0: from t0 to
// the end of the first successful query that started after the last
// failed one; 0 when no query started after t0 failed. failed counts the
// failed queries; ok is false when none succeeded after the last failure.
func (r *coordReader) unavailable(t0 time.Time) (d time.Duration, failed int, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var lastFail time.Time
	for _, op := range r.ops {
		if !op.ok && !op.start.Before(t0) {
			failed++
			lastFail = op.start
		}
	}
	if failed == 0 {
		return 0, 0, true
	}
	for _, op := range r.ops {
		if op.ok && op.start.After(lastFail) {
			return op.end.Sub(t0), failed, true
		}
	}
	return 0, failed, false
}
