package supervisor

import (
	"context"
	"fmt"
	"time"
)

// Promote turns the running standby inst into a primary (pg_promote) and
// waits until it accepts writes or ctx ends. An instance that is already
// out of recovery is left alone, so a retried promotion is harmless. The
// caller decides when promoting is safe (the topology's rules); this only
// carries it out.
func (s *Supervisor) Promote(ctx context.Context, inst Instance) error {
	if err := inst.validate(); err != nil {
		return err
	}
	unlock, err := s.lock(ctx, inst.DBID)
	if err != nil {
		return err
	}
	defer unlock()
	conn, err := s.connect(ctx, inst.Address, inst.Port)
	if err != nil {
		return fmt.Errorf("promote %s: %w", inst, err)
	}
	defer closeConn(conn)
	var inRecovery bool
	if err := conn.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&inRecovery); err != nil {
		return fmt.Errorf("promote %s: %w", inst, err)
	}
	if !inRecovery {
		return nil
	}
	// pg_promote waits at most wait_seconds; the loop below keeps waiting
	// as long as ctx allows, for a promotion that has to replay a lot.
	var done bool
	if err := conn.QueryRow(ctx, `SELECT pg_promote(true, 60)`).Scan(&done); err != nil {
		return fmt.Errorf("promote %s: %w", inst, err)
	}
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for !done {
		select {
		case <-ctx.Done():
			return fmt.Errorf("promote %s: still in recovery: %w", inst, ctx.Err())
		case <-t.C:
		}
		if err := conn.QueryRow(ctx, `SELECT NOT pg_is_in_recovery()`).Scan(&done); err != nil {
			return fmt.Errorf("promote %s: %w", inst, err)
		}
	}
	s.log.Info("promoted", "dbid", inst.DBID)
	return nil
}
