package supervisor

import (
	"context"
	"fmt"

	"github.com/gpagent/gpagent/topology"
)

// FencedStandby is a synchronous standby name no standby ever has: a
// primary waiting for it acknowledges no commit, whichever session asks,
// including sessions opened before the fence.
const FencedStandby = "gpagent_fenced"

// Fence stops the running primary inst from acknowledging commits (every
// commit waits for FencedStandby) and makes new transactions read-only,
// so clients looking for a writable server (target_session_attrs) go
// elsewhere instead of hanging here. A graceful shutdown would not do:
// sessions already connected would go on committing until it completes.
func (s *Supervisor) Fence(ctx context.Context, inst Instance) error {
	return s.setFence(ctx, inst, true)
}

// Unfence lifts the read-only default; synchronous_standby_names is then
// set again by whoever manages it for the current topology.
func (s *Supervisor) Unfence(ctx context.Context, inst Instance) error {
	return s.setFence(ctx, inst, false)
}

func (s *Supervisor) setFence(ctx context.Context, inst Instance, on bool) error {
	c, unlock, err := s.lockConf(ctx, inst, "fence")
	if err != nil {
		return err
	}
	defer unlock()
	if !on && !c.ReadOnly {
		return nil
	}
	c.ReadOnly = on
	if on {
		c.SyncStandbyNames = FencedStandby
	}
	if err := s.writeManagedConf(inst.DataDir, c); err != nil {
		return fmt.Errorf("fence %s: %w", inst, err)
	}
	want := "off"
	if on {
		want = "on"
	}
	if err := s.reloadAndWait(ctx, inst, "default_transaction_read_only", want); err != nil {
		return fmt.Errorf("fence %s: %w", inst, err)
	}
	if on {
		if err := s.endCoordinatorSessions(ctx, inst); err != nil {
			return fmt.Errorf("fence %s: %w", inst, err)
		}
	}
	return nil
}

// endCoordinatorSessions ends the coordinator's postgres_fdw sessions on
// a fenced primary. The coordinator caches one connection per foreign
// server in each of its sessions; kept open, it would go on answering
// reads from this primary after its mirror is promoted. Ended, the
// coordinator reconnects, and libpq's target_session_attrs=read-write
// skips this read-only server.
func (s *Supervisor) endCoordinatorSessions(ctx context.Context, inst Instance) error {
	conn, err := s.connect(ctx, inst.Address, inst.Port)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	_, err = conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE application_name = $1 AND pid <> pg_backend_pid()`, topology.CoordinatorAppName)
	return err
}
