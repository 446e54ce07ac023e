package supervisor

import (
	"context"
	"fmt"
	"time"
)

// Promote turns the running standby inst into a primary: it first stops
// it from waiting for any synchronous standby and from following an
// upstream (its old primary is recorded down, so nothing may hold its
// commits, and it must never stream from a stale primary again), then
// calls pg_promote and waits until the server has left recovery. A server
// already out of recovery is left as it is.
func (s *Supervisor) Promote(ctx context.Context, inst Instance) error {
	c, unlock, err := s.lockConf(ctx, inst, "promote")
	if err != nil {
		return err
	}
	defer unlock()
	if c.SyncStandbyNames != "" || c.PrimaryConninfo != "" || c.PrimarySlotName != "" {
		c.SyncStandbyNames, c.PrimaryConninfo, c.PrimarySlotName = "", "", ""
		if err := s.writeManagedConf(inst.DataDir, c); err != nil {
			return fmt.Errorf("promote %s: %w", inst, err)
		}
		// Applied by the promotion itself (the startup process ends, the
		// walreceiver with it); the reload makes synchronous_standby_names
		// empty before the first commit the new primary takes.
		if err := s.reloadAndWait(ctx, inst, "synchronous_standby_names", ""); err != nil {
			return fmt.Errorf("promote %s: %w", inst, err)
		}
	}
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
	start := time.Now()
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_promote(true, 60)`).Scan(&ok); err != nil {
		return fmt.Errorf("promote %s: %w", inst, err)
	}
	if !ok {
		return fmt.Errorf("promote %s: pg_promote did not finish within 60s", inst)
	}
	s.log.Info("promoted", "dbid", inst.DBID, "content", inst.Content, "took", time.Since(start))
	return nil
}
