package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// CheckpointLSN reads a stopped instance's control file: the position of
// its latest checkpoint and whether it was shut down cleanly. A mirror
// that has replayed past a cleanly shut down primary's checkpoint holds
// that primary's whole history.
func (s *Supervisor) CheckpointLSN(ctx context.Context, inst Instance) (lsn uint64, clean bool, err error) {
	var state, loc string
	err = s.runTool(ctx, "pg_controldata", []string{"-D", inst.DataDir}, nil, func(line string) {
		if v, ok := strings.CutPrefix(line, "Database cluster state:"); ok {
			state = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "Latest checkpoint location:"); ok {
			loc = strings.TrimSpace(v)
		}
	})
	if err != nil {
		return 0, false, err
	}
	if loc == "" {
		return 0, false, fmt.Errorf("pg_controldata %s: no checkpoint location", inst.DataDir)
	}
	lsn = parseLSN(&loc)
	return lsn, state == "shut down", nil
}

// Rejoin starts the stopped instance inst as a standby of up, from the
// data it has: for an old primary shut down cleanly whose mirror replayed
// all of it (a switchover), no copy and no rewind are needed. It waits
// until up accepts writes (the new primary may still be promoting),
// reserves inst's replication slot there, and starts inst streaming.
func (s *Supervisor) Rejoin(ctx context.Context, inst Instance, up Upstream) error {
	// Checked before the waits on up too, not only under the lock.
	if err := inst.validate(); err != nil {
		return err
	}
	if err := s.waitWritable(ctx, up); err != nil {
		return fmt.Errorf("rejoin %s: %w", inst, err)
	}
	if err := s.ensureSlot(ctx, up, SlotName(inst.DBID)); err != nil {
		return fmt.Errorf("rejoin %s: %w", inst, err)
	}
	c, unlock, err := s.lockConf(ctx, inst, "rejoin")
	if err != nil {
		return err
	}
	defer unlock()
	want := s.standbyConf(inst, up)
	// A standby waits for nobody: its own synchronous_standby_names would
	// only matter once promoted, and then the topology sets it.
	c.SyncStandbyNames, c.PrimaryConninfo, c.PrimarySlotName = "", want.PrimaryConninfo, want.PrimarySlotName
	if err := s.writeManagedConf(inst.DataDir, c); err != nil {
		return fmt.Errorf("rejoin %s: %w", inst, err)
	}
	if err := s.writeOwnedFile(filepath.Join(inst.DataDir, standbySignal), nil, 0o600); err != nil {
		return fmt.Errorf("rejoin %s: %w", inst, err)
	}
	// The slots it held as a primary would hold WAL forever on a standby,
	// where nothing advances them.
	if err := clearDir(filepath.Join(inst.DataDir, "pg_replslot")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("rejoin %s: %w", inst, err)
	}
	return s.startLocked(ctx, inst)
}

// WaitWritable waits until up answers as a primary: a mirror promoted a
// moment ago may still be finishing its recovery, and neither pg_rewind
// nor a base backup may start from a server in recovery.
func (s *Supervisor) WaitWritable(ctx context.Context, up Upstream) error {
	return s.waitWritable(ctx, up)
}

// waitWritable waits until up answers as a primary.
func (s *Supervisor) waitWritable(ctx context.Context, up Upstream) error {
	for {
		conn, err := s.connect(ctx, up.Address, up.Port)
		if err == nil {
			var inRecovery bool
			err = conn.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&inRecovery)
			closeConn(conn)
			if err == nil && !inRecovery {
				return nil
			}
			if err == nil {
				err = errors.New("still in recovery")
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("upstream %s:%d not writable: %w", up.Address, up.Port, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ensureSlot creates the physical slot on up unless it exists. Slots are
// not copied to standbys, so a newly promoted primary has none for the
// instance that now follows it.
func (s *Supervisor) ensureSlot(ctx context.Context, up Upstream, slot string) error {
	conn, err := s.connect(ctx, up.Address, up.Port)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	var name string
	err = conn.QueryRow(ctx, `SELECT slot_name FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&name)
	if err == nil {
		return nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	_, err = conn.Exec(ctx, `SELECT pg_create_physical_replication_slot($1, true)`, slot)
	return err
}
