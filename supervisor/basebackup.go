package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sys/unix"
)

// CreateMirror builds inst as a standby of up and starts it: pg_basebackup
// with a physical replication slot on the primary (SlotName(inst.DBID)),
// a fast checkpoint and WAL streamed alongside, then standby.signal, the
// managed configuration (primary_conninfo under AppName(inst.DBID),
// primary_slot_name) and the marker. progress, if not nil, is called with
// bytes done and the total pg_basebackup estimates for the data files (WAL
// streamed alongside is not counted; the estimate may grow near the end).
//
// If the data directory is already a finished standby of ours, the call
// only points it at up and makes sure it runs. Remains of an unfinished
// attempt are cleared and the backup is taken again.
func (s *Supervisor) CreateMirror(ctx context.Context, clusterID string, inst Instance, up Upstream, progress func(done, total int64)) error {
	if clusterID == "" || up.Address == "" || up.Port <= 0 || up.Port > 65535 {
		return fmt.Errorf("create mirror %s: need a cluster id and an upstream address and port", inst)
	}
	unlock, err := s.lockInstance(ctx, inst)
	if err != nil {
		return err
	}
	defer unlock()
	state, err := s.classify(clusterID, inst)
	if err != nil {
		return err
	}
	if state == dirOurs {
		if _, err := os.Stat(filepath.Join(inst.DataDir, standbySignal)); err != nil {
			return fmt.Errorf("create mirror %s: datadir is a gpagent instance but not a standby; remove it for a full recovery", inst)
		}
		if err := s.setUpstreamLocked(ctx, inst, up); err != nil {
			return err
		}
		return s.startLocked(ctx, inst)
	}
	if _, running, _ := findPostmaster(inst.DataDir); !running {
		if err := checkListen(inst.Address, inst.Port); err != nil {
			return fmt.Errorf("create mirror %s: %w", inst, err)
		}
	}
	undo, err := s.prepareDataDir(ctx, clusterID, inst, state)
	if err != nil {
		return fmt.Errorf("create mirror %s: %w", inst, err)
	}
	slot := SlotName(inst.DBID)
	if err := s.prepareSlot(ctx, up, slot); err != nil {
		undo()
		return fmt.Errorf("create mirror %s: %w", inst, err)
	}
	if err := s.buildStandby(ctx, clusterID, inst, up, slot, progress); err != nil {
		// A slot left behind would hold WAL on the primary for ever.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if derr := s.dropSlot(cctx, up, slot); derr != nil {
			s.log.Error("cleanup: cannot drop replication slot on the primary", "slot", slot, "err", derr)
		}
		cancel()
		undo()
		return fmt.Errorf("create mirror %s: %w", inst, err)
	}
	s.log.Info("mirror created", "dbid", inst.DBID, "content", inst.Content, "upstream", fmt.Sprintf("%s:%d", up.Address, up.Port))
	// From here the data directory is a complete standby: a failure to
	// start is reported but not undone, and a retry just starts it.
	return s.startLocked(ctx, inst)
}

func (s *Supervisor) buildStandby(ctx context.Context, clusterID string, inst Instance, up Upstream, slot string, progress func(done, total int64)) error {
	dd := inst.DataDir
	if err := s.copyDataDir(ctx, dd, up, slot, progress); err != nil {
		return err
	}
	// The copy brought the primary's marker, startup log and server logs;
	// none of them describe this instance.
	for _, f := range []string{markerFile, startupLogFile} {
		if err := os.Remove(filepath.Join(dd, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := clearDir(filepath.Join(dd, "log")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := s.writeManagedConf(dd, s.standbyConf(inst, up)); err != nil {
		return err
	}
	if err := s.writeOwnedFile(filepath.Join(dd, standbySignal), nil, 0o600); err != nil {
		return err
	}
	// Durable before the marker says the copy is complete.
	if !s.noSync {
		t := time.Now()
		if err := SyncFS(dd); err != nil {
			return err
		}
		s.log.Info("copy flushed to disk", "datadir", dd, "syncfs", time.Since(t).Round(time.Millisecond))
	}
	return s.finishCreate(clusterID, inst)
}

// copyDataDir fills the empty dd with a copy of up's data directory: a
// parallel file copy where up.Files is set and the primary's agent can
// list its files, pg_basebackup otherwise.
func (s *Supervisor) copyDataDir(ctx context.Context, dd string, up Upstream, slot string, progress func(done, total int64)) error {
	if up.Files == nil {
		return s.basebackup(ctx, dd, up, slot, progress)
	}
	err := s.fileCopy(ctx, dd, up, slot, progress)
	if !errors.Is(err, errNoListing) {
		return err
	}
	s.log.Warn("cannot copy the primary's files through its agent; using pg_basebackup", "err", err)
	if err := s.dropSlot(ctx, up, slot); err != nil {
		return err
	}
	if err := clearDir(dd); err != nil {
		return err
	}
	return s.basebackup(ctx, dd, up, slot, progress)
}

// SyncFS flushes everything written to dir's file system with one
// syncfs(2). pg_basebackup runs with --no-sync instead of its own pass,
// which fsyncs one file after the other and waits on each.
func SyncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}

// standbyConf is the managed configuration of a mirror streaming from up.
// The replication password sits in primary_conninfo, in a 0600 file of a
// 0700 directory; pg_stat_wal_receiver shows the conninfo with it masked.
func (s *Supervisor) standbyConf(inst Instance, up Upstream) managedConf {
	return managedConf{
		ListenAddresses: inst.Address,
		Port:            inst.Port,
		PrimaryConninfo: connString(up.Address, up.Port, s.cfg.ReplUser, s.cfg.ReplPassword,
			"application_name", AppName(inst.DBID), "connect_timeout", "10"),
		PrimarySlotName: SlotName(inst.DBID),
	}
}

// progressLine matches pg_basebackup's progress report, e.g.
// "  1234/56789 kB (2%), 0/1 tablespace".
var progressLine = regexp.MustCompile(`^(\d+)/(\d+) kB \(`)

func (s *Supervisor) basebackup(ctx context.Context, dataDir string, up Upstream, slot string, progress func(done, total int64)) error {
	s.log.Info("running pg_basebackup", "datadir", dataDir, "upstream", fmt.Sprintf("%s:%d", up.Address, up.Port), "slot", slot)
	var onLine func(string)
	if progress != nil {
		onLine = func(line string) {
			if m := progressLine.FindStringSubmatch(line); m != nil {
				done, _ := strconv.ParseInt(m[1], 10, 64)
				total, _ := strconv.ParseInt(m[2], 10, 64)
				progress(done<<10, total<<10)
			}
		}
	}
	// Its own application_name: under the mirror's, the WAL streamer of
	// the backup could be taken for the mirror by synchronous_standby_names.
	dsn := connString(up.Address, up.Port, s.cfg.ReplUser, "", "application_name", "gpagent_basebackup")
	args := []string{
		"-D", dataDir,
		"-d", dsn,
		"-X", "stream",
		"-C", "-S", slot,
		"--checkpoint=fast",
		"--progress",
		"--no-password",
	}
	// Synced by buildStandby, with one syncfs.
	args = append(args, "--no-sync")
	args = append(args, s.extraBackupArgs...)
	return s.runTool(ctx, "pg_basebackup", args, []string{
		// The environment of a process is readable only by its own user
		// and root, unlike its command line.
		"PGPASSWORD=" + s.cfg.ReplPassword,
	}, onLine)
}

// prepareSlot makes room for pg_basebackup -C: a slot of that name left by
// an earlier attempt is dropped, unless a walsender uses it, which means a
// mirror with this dbid streams from the primary right now.
func (s *Supervisor) prepareSlot(ctx context.Context, up Upstream, slot string) error {
	conn, err := s.connect(ctx, up.Address, up.Port)
	if err != nil {
		return fmt.Errorf("primary %s:%d: %w", up.Address, up.Port, err)
	}
	defer closeConn(conn)
	var active bool
	var pid *int32
	err = conn.QueryRow(ctx, `SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&active, &pid)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("primary %s:%d: %w", up.Address, up.Port, err)
	case active:
		return fmt.Errorf("replication slot %s on primary %s:%d is in use (walsender pid %d): another standby streams as this dbid", slot, up.Address, up.Port, deref(pid))
	}
	s.log.Info("dropping leftover replication slot", "slot", slot, "primary", fmt.Sprintf("%s:%d", up.Address, up.Port))
	if _, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, slot); err != nil {
		return fmt.Errorf("drop leftover slot %s: %w", slot, err)
	}
	return nil
}

// dropSlot drops slot on up after a failed base backup. The walsender of
// the killed pg_basebackup may hold the slot for a moment after its client
// is gone, so an active slot is waited for until ctx ends.
func (s *Supervisor) dropSlot(ctx context.Context, up Upstream, slot string) error {
	conn, err := s.connect(ctx, up.Address, up.Port)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		var active bool
		err := conn.QueryRow(ctx, `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&active)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err == nil && !active {
			// It may turn active between the two statements; then the
			// drop fails and the loop comes round again.
			if _, err = conn.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, slot); err == nil {
				return nil
			}
		}
		if err == nil {
			err = errors.New("in use")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("drop slot %s: %w (%w)", slot, err, ctx.Err())
		case <-t.C:
		}
	}
}

func deref(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}

// SetUpstream points the standby inst at up (primary_conninfo in
// gpagent.conf). A running standby reloads its configuration, which
// restarts its WAL receiver towards the new upstream. Used when the
// topology names a different acting primary for the mirror's content.
func (s *Supervisor) SetUpstream(ctx context.Context, inst Instance, up Upstream) error {
	unlock, err := s.lockInstance(ctx, inst)
	if err != nil {
		return err
	}
	defer unlock()
	return s.setUpstreamLocked(ctx, inst, up)
}

func (s *Supervisor) setUpstreamLocked(ctx context.Context, inst Instance, up Upstream) error {
	c, err := s.readManagedConf(inst.DataDir)
	if err != nil {
		return fmt.Errorf("set upstream of %s: %w", inst, err)
	}
	want := s.standbyConf(inst, up)
	if c.PrimaryConninfo == want.PrimaryConninfo && c.PrimarySlotName == want.PrimarySlotName {
		return nil
	}
	c.PrimaryConninfo, c.PrimarySlotName = want.PrimaryConninfo, want.PrimarySlotName
	if err := s.writeManagedConf(inst.DataDir, c); err != nil {
		return fmt.Errorf("set upstream of %s: %w", inst, err)
	}
	if _, running, _ := findPostmaster(inst.DataDir); running {
		if err := s.reloadAndWait(ctx, inst, "primary_conninfo", want.PrimaryConninfo); err != nil {
			return fmt.Errorf("set upstream of %s: %w", inst, err)
		}
	}
	return nil
}
