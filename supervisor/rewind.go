package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrRewindImpossible wraps every reason why an instance cannot be
// recovered incrementally (pg_rewind) and must be rebuilt by a full
// recovery (a base backup): its data directory is missing or not gpagent's
// for this cluster and dbid, it shares no timeline history with the
// upstream (another initdb), the WAL it needs back to the point of
// divergence is gone, or an earlier rewind was interrupted after it began
// changing the directory. The error text says which, in one line. The
// caller offers the full recovery; it never falls back to one silently.
var ErrRewindImpossible = errors.New("incremental recovery impossible")

// rewindLogsSuffix names the directory, next to the data directory, where
// the instance's own server logs wait while pg_rewind runs: pg_rewind
// makes the target a copy of the source, which would replace the logs of
// an old primary (the record of why it failed) by the new primary's.
const rewindLogsSuffix = ".gpagent-rewind-logs"

// Rewind makes the instance inst (an old primary, or a mirror that fell
// behind or diverged) a standby of up with pg_rewind, copying only what
// differs, and starts it:
//
//   - a running inst is stopped first (fast; immediate after a minute);
//   - inst's replication slot is reserved on up before anything is copied,
//     so that the WAL written on up from then on stays until inst streams;
//   - pg_rewind runs against up as the superuser, with --progress, which
//     is reported as progress(done, total) in bytes. pg_rewind itself runs
//     crash recovery (single-user mode) on an old primary that was not shut
//     down cleanly; a standby that was not is first started in recovery
//     and stopped, because single-user mode refuses standby mode. "no
//     rewind required" (inst is an ancestor of up) is success;
//   - what pg_rewind copied from up is repaired: gpagent.conf (inst's
//     address and port, no synchronous_standby_names, primary_conninfo and
//     primary_slot_name towards up), the marker, up's startup log and
//     server logs (inst's own are kept), and the replication slots inst
//     held as a primary (left in place by pg_rewind, they would keep its
//     WAL forever); standby.signal is written;
//   - inst is started, and Rewind returns once it accepts connections.
//     Whether it streams is for the caller to observe.
//
// While pg_rewind runs, the data directory is marked as an unfinished
// creation (the intent file next to it, no marker). A failure before
// pg_rewind starts changing files puts the marker back. A failure or a
// crash after that point leaves the directory unfinished: a later Rewind
// refuses it with ErrRewindImpossible, CreateMirror rebuilds it.
func (s *Supervisor) Rewind(ctx context.Context, clusterID string, inst Instance, up Upstream, progress func(done, total int64)) error {
	if clusterID == "" || up.Address == "" || up.Port <= 0 || up.Port > 65535 {
		return fmt.Errorf("rewind %s: need a cluster id and an upstream address and port", inst)
	}
	if up.Address == inst.Address && up.Port == inst.Port {
		return fmt.Errorf("rewind %s: the upstream is the instance itself", inst)
	}
	unlock, err := s.lockInstance(ctx, inst)
	if err != nil {
		return err
	}
	defer unlock()
	start := time.Now()
	dd := inst.DataDir

	if err := s.checkRewindable(clusterID, inst); err != nil {
		return err
	}

	// A fast shutdown normally takes seconds; one that hangs (a wedged
	// disk, a huge checkpoint) becomes an immediate shutdown, whose crash
	// recovery pg_rewind then runs.
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	err = s.stopLocked(sctx, inst)
	cancel()
	if err != nil {
		return fmt.Errorf("rewind %s: %w", inst, err)
	}
	// Children of a postmaster killed with -9 hold its shared memory until
	// they notice; pg_rewind's single-user recovery would fail on it.
	if err := waitNoProcessIn(ctx, dd); err != nil {
		return fmt.Errorf("rewind %s: %w", inst, err)
	}
	if err := removeStalePidFile(dd); err != nil {
		return fmt.Errorf("rewind %s: %w", inst, err)
	}

	if err := s.waitWritable(ctx, up); err != nil {
		return fmt.Errorf("rewind %s: %w", inst, err)
	}
	// pg_rewind reads the source's timeline from its control file, which
	// a just-promoted primary updates only at its first checkpoint: until
	// then it looks like the target's timeline and pg_rewind answers "no
	// rewind required" for a target that has diverged.
	if err := s.checkpoint(ctx, up); err != nil {
		return fmt.Errorf("rewind %s: checkpoint on the upstream: %w", inst, err)
	}
	slot := SlotName(inst.DBID)
	created, err := s.reserveSlot(ctx, up, slot)
	if err != nil {
		return fmt.Errorf("rewind %s: %w", inst, err)
	}
	dropSlot := func() {
		if !created {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := s.dropSlot(cctx, up, slot); err != nil {
			s.log.Error("cleanup: cannot drop replication slot on the upstream", "slot", slot, "err", err)
		}
	}

	if err := s.settleStandby(ctx, inst, up); err != nil {
		dropSlot()
		return fmt.Errorf("rewind %s: %w", inst, err)
	}

	// From here until finishCreate the directory is "being created": the
	// intent goes in before the marker goes out (as in Destroy), so a
	// crash leaves remains that CreateMirror clears, never a directory
	// that looks finished or foreign.
	intent := dd + intentSuffix
	if err := s.writeMarker(intent, clusterID, inst); err != nil {
		s.log.Warn("cannot record rewind intent; a crash during pg_rewind will need manual cleanup", "path", intent, "err", err)
	}
	marker := filepath.Join(dd, markerFile)
	restore := func() {
		if err := s.writeMarker(marker, clusterID, inst); err != nil {
			s.log.Error("cannot put the marker back after a failed rewind", "datadir", dd, "err", err)
			return
		}
		os.Remove(intent)
	}
	if err := os.Remove(marker); err != nil {
		os.Remove(intent)
		dropSlot()
		return fmt.Errorf("rewind %s: %w", inst, err)
	}
	saved := s.saveLogs(dd)

	// pg_rewind first runs crash recovery on an unclean target, whose
	// end-of-recovery checkpoint would recycle WAL older than
	// wal_keep_size: WAL pg_rewind then needs, back to the last checkpoint
	// before the divergence (after a bulk load that can be more than
	// wal_keep_size). Keep it all for this one step.
	holdWAL := func(size string) {
		if c, err := s.readManagedConf(dd); err == nil {
			c.WalKeepSize = size
			if err := s.writeManagedConf(dd, c); err != nil {
				s.log.Warn("cannot set wal_keep_size for pg_rewind's recovery", "dbid", inst.DBID, "err", err)
			}
		}
	}
	holdWAL("1TB")
	res, err := s.pgRewind(ctx, dd, up, progress)
	if err != nil && !res.modified {
		holdWAL("")
	}
	if err != nil {
		dropSlot()
		reason, impossible := rewindFailure(res.lines, s.cfg.WalKeepSize)
		s.log.Warn("pg_rewind failed", "dbid", inst.DBID, "modified", res.modified, "err", err)
		if res.modified {
			// pg_rewind's own advice: a target it failed to finish is
			// likely beyond repair; take a new base backup.
			if saved != "" {
				s.log.Warn("the instance's own server logs are kept aside", "path", saved)
			}
			if ctx.Err() != nil {
				return fmt.Errorf("rewind %s: %w: pg_rewind was stopped (%w) after it began changing the data directory, which must now be rebuilt",
					inst, ErrRewindImpossible, ctx.Err())
			}
			if reason == "" {
				reason = rewindErrors(res.lines, err)
			}
			return fmt.Errorf("rewind %s: %w: pg_rewind failed after it began changing the data directory, which must now be rebuilt: %s",
				inst, ErrRewindImpossible, reason)
		}
		s.restoreLogs(dd, saved)
		restore()
		if impossible {
			return fmt.Errorf("rewind %s: %w: %s", inst, ErrRewindImpossible, reason)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("rewind %s: %w", inst, err)
		}
		return fmt.Errorf("rewind %s: pg_rewind failed: %s", inst, rewindErrors(res.lines, err))
	}
	s.log.Info("pg_rewind done", "dbid", inst.DBID, "rewound", !res.noRewind, "copied_bytes", res.copied, "took", time.Since(start))

	if err := s.repairAfterRewind(inst, up, saved); err != nil {
		return fmt.Errorf("rewind %s: %w", inst, err)
	}
	if err := s.flushWAL(ctx, up); err != nil {
		s.log.Warn("cannot flush the upstream's WAL; the rewound standby may wait for it", "upstream", fmt.Sprintf("%s:%d", up.Address, up.Port), "err", err)
	}
	if err := s.finishCreate(clusterID, inst); err != nil {
		return fmt.Errorf("rewind %s: %w", inst, err)
	}
	// A standby missing the WAL it must replay never becomes ready: watch
	// its log while it starts, and give up on the start if it says so.
	startCtx, cancelStart := context.WithCancel(ctx)
	gone := make(chan string, 1)
	go func() {
		for {
			if seg := walGoneIn(dd); seg != "" {
				gone <- seg
				cancelStart()
				return
			}
			select {
			case <-startCtx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	err = s.startLocked(startCtx, inst)
	cancelStart()
	select {
	case seg := <-gone:
		return fmt.Errorf("rewind %s: %w", inst, s.walGoneFailure(ctx, clusterID, inst, up, seg))
	default:
	}
	if err != nil {
		if l := newestLog(dd); l != "" {
			err = fmt.Errorf("%w (server log %s: %s)", err, l, tail(l, 0, 3))
		}
		return fmt.Errorf("rewind %s: rewound but not started: %w", inst, err)
	}
	if err := s.awaitStream(ctx, clusterID, inst, up); err != nil {
		return fmt.Errorf("rewind %s: %w", inst, err)
	}
	s.log.Info("rewound instance started as a standby", "dbid", inst.DBID, "upstream", fmt.Sprintf("%s:%d", up.Address, up.Port), "took", time.Since(start))
	return nil
}

// walGone is what a standby's log says when its upstream no longer has
// the WAL it must replay from.
var walGone = regexp.MustCompile(`requested WAL segment (\S+) has already been removed`)

// awaitStream watches a rewound standby start. After pg_rewind it must
// replay from the last checkpoint before the divergence; if the upstream
// has recycled that WAL (wal_keep_size smaller than what was written
// since), it would wait for it forever. That is reported, the instance
// stopped and left for a full recovery, rather than a recovery that
// never ends.
func (s *Supervisor) awaitStream(ctx context.Context, clusterID string, inst Instance, up Upstream) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if seg := walGoneIn(inst.DataDir); seg != "" {
			return s.walGoneFailure(ctx, clusterID, inst, up, seg)
		}
		if h, err := s.Probe(ctx, inst); err == nil && h.Receiver != nil && h.Receiver.Status == "streaming" {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return nil
}

// walGoneIn returns the WAL segment a standby's newest log says its
// upstream no longer has, or "".
func walGoneIn(dataDir string) string {
	if l := newestLog(dataDir); l != "" {
		if m := walGone.FindStringSubmatch(tail(l, 0, 20)); m != nil {
			return m[1]
		}
	}
	return ""
}

// walGoneFailure stops a rewound standby that cannot get the WAL it must
// replay, marks its data dir unfinished (the next Rewind refuses it,
// CreateMirror clears and rebuilds it) and says why.
func (s *Supervisor) walGoneFailure(ctx context.Context, clusterID string, inst Instance, up Upstream, seg string) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	_ = s.stopLocked(sctx, inst)
	cancel()
	_ = s.writeMarker(inst.DataDir+intentSuffix, clusterID, inst)
	_ = os.Remove(filepath.Join(inst.DataDir, markerFile))
	return fmt.Errorf("%w: the acting primary %s:%d no longer has WAL segment %s, which the rewound instance must replay (wal_keep_size %s was smaller than the WAL written since the divergence); recover it with a full copy (recoverseg -F)",
		ErrRewindImpossible, up.Address, up.Port, seg, s.cfg.WalKeepSize)
}

// checkRewindable refuses, with ErrRewindImpossible, a data directory
// that is not a finished instance of gpagent's for this cluster and dbid.
func (s *Supervisor) checkRewindable(clusterID string, inst Instance) error {
	dd := inst.DataDir
	state, err := s.classify(clusterID, inst)
	switch {
	case err != nil:
		return fmt.Errorf("rewind %s: %w: %w", inst, ErrRewindImpossible, err)
	case state == dirAbsent:
		return fmt.Errorf("rewind %s: %w: datadir %s does not exist", inst, ErrRewindImpossible, dd)
	case state == dirEmpty:
		return fmt.Errorf("rewind %s: %w: datadir %s is empty", inst, ErrRewindImpossible, dd)
	case state != dirOurs:
		return fmt.Errorf("rewind %s: %w: datadir %s holds an unfinished creation or an interrupted incremental recovery", inst, ErrRewindImpossible, dd)
	}
	if _, err := os.Stat(filepath.Join(dd, "global", "pg_control")); err != nil {
		return fmt.Errorf("rewind %s: %w: datadir %s has no control file: %w", inst, ErrRewindImpossible, dd, err)
	}
	return nil
}

// reserveSlot makes sure up has inst's physical slot, reserving WAL from
// now on, and reports whether it made it. A slot in use means some other
// server streams as this dbid (inst is stopped); the walsender of inst's
// own connection may take a moment to go after inst stopped, so that is
// waited for briefly.
func (s *Supervisor) reserveSlot(ctx context.Context, up Upstream, slot string) (created bool, err error) {
	conn, err := s.connect(ctx, up.Address, up.Port)
	if err != nil {
		return false, fmt.Errorf("upstream %s:%d: %w", up.Address, up.Port, err)
	}
	defer closeConn(conn)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var active bool
		var pid *int32
		err := conn.QueryRow(ctx, `SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&active, &pid)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			if _, err := conn.Exec(ctx, `SELECT pg_create_physical_replication_slot($1, true)`, slot); err != nil {
				return false, fmt.Errorf("create replication slot %s on %s:%d: %w", slot, up.Address, up.Port, err)
			}
			return true, nil
		case err != nil:
			return false, fmt.Errorf("upstream %s:%d: %w", up.Address, up.Port, err)
		case !active:
			return false, nil
		case time.Now().After(deadline):
			return false, fmt.Errorf("replication slot %s on %s:%d is in use (walsender pid %d): another standby streams as this dbid", slot, up.Address, up.Port, deref(pid))
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(pollEvery):
		}
	}
}

// settleStandby brings a standby that was not shut down cleanly (killed,
// or its host lost) to a clean "shut down in recovery": pg_rewind's own
// crash recovery runs postgres in single-user mode, which refuses standby
// mode, and recovering it as a primary instead would write WAL of its own
// on its old timeline. It is started as a standby of up (the topology's
// acting primary, whose slot for it is reserved) until it is consistent,
// then stopped.
func (s *Supervisor) settleStandby(ctx context.Context, inst Instance, up Upstream) error {
	dd := inst.DataDir
	if _, err := os.Stat(filepath.Join(dd, standbySignal)); err != nil {
		return nil
	}
	state, err := s.clusterState(ctx, dd)
	if err != nil {
		return err
	}
	if cleanState(state) {
		return nil
	}
	s.log.Info("standby was not shut down cleanly; recovering it before pg_rewind", "dbid", inst.DBID, "state", state)
	c, err := s.readManagedConf(dd)
	if err != nil {
		return err
	}
	want := s.standbyConf(inst, up)
	c.SyncStandbyNames, c.PrimaryConninfo, c.PrimarySlotName = "", want.PrimaryConninfo, want.PrimarySlotName
	if err := s.writeManagedConf(dd, c); err != nil {
		return err
	}
	if err := s.startLocked(ctx, inst); err != nil {
		return fmt.Errorf("recover unclean standby: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := s.stopLocked(sctx, inst); err != nil {
		return err
	}
	if state, err = s.clusterState(ctx, dd); err != nil {
		return err
	}
	if !cleanState(state) {
		return fmt.Errorf("standby still not shut down cleanly after recovery (state %q)", state)
	}
	return waitNoProcessIn(ctx, dd)
}

func cleanState(state string) bool { return state == "shut down" || state == "shut down in recovery" }

// clusterState is the "Database cluster state" of a data directory's
// control file.
func (s *Supervisor) clusterState(ctx context.Context, dataDir string) (string, error) {
	var state string
	err := s.runTool(ctx, "pg_controldata", []string{"-D", dataDir}, nil, func(line string) {
		if v, ok := strings.CutPrefix(line, "Database cluster state:"); ok {
			state = strings.TrimSpace(v)
		}
	})
	if err == nil && state == "" {
		err = fmt.Errorf("pg_controldata %s: no cluster state", dataDir)
	}
	return state, err
}

// rewindResult is what the supervisor learnt from pg_rewind's output.
type rewindResult struct {
	lines    []string // every line, for the failure analysis
	modified bool     // it passed its point of no return
	noRewind bool     // "no rewind required"
	copied   int64    // bytes, from the last progress report
}

var (
	// rewindProgress matches "  1234/56789 kB (2%) copied".
	rewindProgress = regexp.MustCompile(`^(\d+)/(\d+) kB \(\d+%\) copied`)
	// rewindNeed is printed (with --progress) right before the point of
	// no return: "need to copy 12 MB (total source directory size is 80 MB)".
	rewindNeed = regexp.MustCompile(`need to copy (\d+) MB \(total source directory size is (\d+) MB\)`)
)

// pgRewind runs pg_rewind on dataDir with up as the source server.
func (s *Supervisor) pgRewind(ctx context.Context, dataDir string, up Upstream, progress func(done, total int64)) (rewindResult, error) {
	var res rewindResult
	onLine := func(line string) {
		res.lines = append(res.lines, line)
		if m := rewindProgress.FindStringSubmatch(line); m != nil {
			res.modified = true
			done, _ := strconv.ParseInt(m[1], 10, 64)
			total, _ := strconv.ParseInt(m[2], 10, 64)
			res.copied = done << 10
			if progress != nil {
				progress(done<<10, total<<10)
			}
			return
		}
		if m := rewindNeed.FindStringSubmatch(line); m != nil {
			res.modified = true
			total, _ := strconv.ParseInt(m[1], 10, 64)
			if progress != nil {
				progress(0, total<<20)
			}
			return
		}
		if strings.Contains(line, "no rewind required") {
			res.noRewind = true
		}
	}
	// pg_rewind reads files through functions only a superuser (or a
	// role granted them) may call; the agent's superuser it is.
	dsn := connString(up.Address, up.Port, s.cfg.SuperUser, "",
		"dbname", "postgres", "sslmode", "disable", "application_name", "gpagent_rewind", "connect_timeout", "10")
	args := []string{
		"--target-pgdata=" + dataDir,
		"--source-server=" + dsn,
		"--progress",
	}
	if s.noSync {
		args = append(args, "--no-sync")
	}
	s.log.Info("running pg_rewind", "datadir", dataDir, "source", fmt.Sprintf("%s:%d", up.Address, up.Port))
	err := s.runTool(ctx, "pg_rewind", args, []string{"PGPASSWORD=" + s.cfg.SuperPassword}, onLine)
	return res, err
}

var (
	missingWALFile = regexp.MustCompile(`could not open file "([^"]*pg_wal/[0-9A-Fa-f]{24})"`)
	walRecordAt    = regexp.MustCompile(`could not (?:find previous|read) WAL record at ([0-9A-Fa-f]+/[0-9A-Fa-f]+)`)
)

// rewindFailure reads pg_rewind's output after a failure: the one-line
// reason, and whether it means that no incremental recovery can ever work
// for this directory (as opposed to, say, an unreachable source).
func rewindFailure(lines []string, walKeepSize string) (reason string, impossible bool) {
	has := func(sub string) (string, bool) {
		for _, l := range lines {
			if strings.Contains(l, sub) {
				return l, true
			}
		}
		return "", false
	}
	if _, ok := has("source and target clusters are from different systems"); ok {
		return "the source and the target are different database systems (separate initdb): they share no history", true
	}
	if _, ok := has("could not find common ancestor"); ok {
		return "the source and the target have no common timeline history", true
	}
	var seg, lsn string
	for _, l := range lines {
		if m := missingWALFile.FindStringSubmatch(l); m != nil {
			seg = filepath.Base(m[1])
		}
		if m := walRecordAt.FindStringSubmatch(l); m != nil {
			lsn = m[1]
		}
	}
	if seg != "" || lsn != "" {
		r := "the target's WAL back to the point of divergence is gone"
		switch {
		case seg != "" && lsn != "":
			r += fmt.Sprintf(": segment %s is missing (needed to read WAL at %s)", seg, lsn)
		case seg != "":
			r += fmt.Sprintf(": segment %s is missing", seg)
		default:
			r += fmt.Sprintf(": WAL at %s cannot be read", lsn)
		}
		return r + fmt.Sprintf("; wal_keep_size (%s) was too small to keep it", walKeepSize), true
	}
	if _, ok := has("target server needs to use either data checksums"); ok {
		return "the target has neither data checksums nor wal_log_hints = on", true
	}
	if l, ok := has("clusters are not compatible with this version of pg_rewind"); ok {
		return strings.TrimPrefix(l, "pg_rewind: error: "), true
	}
	if _, ok := has("postgres single-user mode in target cluster failed"); ok {
		// The server said why on the lines before, as FATAL or PANIC.
		why := ""
		for _, l := range lines {
			if i := strings.Index(l, "FATAL:"); i >= 0 {
				why = l[i:]
			} else if i := strings.Index(l, "PANIC:"); i >= 0 {
				why = l[i:]
			}
		}
		if why == "" {
			why = "see the agent's log"
		}
		return "crash recovery of the target failed: " + why, true
	}
	return "", false
}

// rewindErrors is what pg_rewind said as errors, in one line; err's text
// if it said nothing of the kind.
func rewindErrors(lines []string, err error) string {
	var errs []string
	for _, l := range lines {
		if v, ok := strings.CutPrefix(l, "pg_rewind: error: "); ok {
			errs = append(errs, v)
		}
	}
	if len(errs) == 0 {
		return strings.ReplaceAll(err.Error(), "\n", " ")
	}
	return strings.Join(errs, "; ")
}

// repairAfterRewind undoes what pg_rewind copied from up that does not
// describe inst, and makes inst a standby of up.
func (s *Supervisor) repairAfterRewind(inst Instance, up Upstream, saved string) error {
	dd := inst.DataDir
	// up's startup log and its record of where its logs are. The logging
	// collector rewrites current_logfiles when it starts.
	for _, f := range []string{startupLogFile, "current_logfiles"} {
		if err := os.Remove(filepath.Join(dd, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if saved != "" {
		if err := os.RemoveAll(filepath.Join(dd, "log")); err != nil {
			return err
		}
		s.restoreLogs(dd, saved)
	} else if err := clearDir(filepath.Join(dd, "log")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	// pg_rewind leaves pg_replslot alone: the slots inst held as a
	// primary are still there, and on a standby nothing advances them.
	if err := clearDir(filepath.Join(dd, "pg_replslot")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Remove(filepath.Join(dd, "recovery.signal")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	// gpagent.conf is now up's: rewritten whole, as inst's.
	if err := s.writeManagedConf(dd, s.standbyConf(inst, up)); err != nil {
		return err
	}
	return s.writeOwnedFile(filepath.Join(dd, standbySignal), nil, 0o600)
}

// saveLogs moves the instance's startup log and server logs out of the
// data directory, next to it, and returns where; "" if there was nothing
// to keep or no room next to the directory (a non-root agent may not
// write there), in which case pg_rewind replaces them.
func (s *Supervisor) saveLogs(dd string) string {
	var names []string
	for _, n := range []string{"log", startupLogFile} {
		if _, err := os.Lstat(filepath.Join(dd, n)); err == nil {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return ""
	}
	dir := fmt.Sprintf("%s%s-%d", dd, rewindLogsSuffix, time.Now().UnixNano())
	if err := os.Mkdir(dir, 0o700); err != nil {
		s.log.Warn("cannot keep the instance's own logs across pg_rewind; they will be replaced by the source's", "err", err)
		return ""
	}
	for _, n := range names {
		if err := os.Rename(filepath.Join(dd, n), filepath.Join(dir, n)); err != nil {
			s.log.Warn("cannot keep a log across pg_rewind", "file", n, "err", err)
		}
	}
	return dir
}

// restoreLogs moves what saveLogs kept back into the data directory, over
// whatever pg_rewind put in their place.
func (s *Supervisor) restoreLogs(dd, saved string) {
	if saved == "" {
		return
	}
	names, _ := os.ReadDir(saved)
	for _, e := range names {
		dst := filepath.Join(dd, e.Name())
		if err := os.RemoveAll(dst); err != nil {
			s.log.Warn("cannot restore a log after pg_rewind", "file", dst, "err", err)
			return
		}
		if err := os.Rename(filepath.Join(saved, e.Name()), dst); err != nil {
			s.log.Warn("cannot restore a log after pg_rewind", "file", dst, "err", err)
			return
		}
	}
	os.Remove(saved)
}

// waitNoProcessIn waits until no process runs in dataDir (has it as its
// working directory, as every process of a postmaster does), for at most
// 30 seconds.
func waitNoProcessIn(ctx context.Context, dataDir string) error {
	want, err := filepath.EvalSymlinks(dataDir)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		pids := processesIn(want)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v still run in %s", pids, dataDir)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("processes %v still run in %s: %w", pids, dataDir, ctx.Err())
		case <-time.After(pollEvery):
		}
	}
}

// processesIn lists the live postgres processes whose working directory
// is dir. Others (an operator's shell looking around) do not count, nor
// do processes whose cwd cannot be read (another user's, agent not root):
// they are not the OS user's PostgreSQL.
func processesIn(dir string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		proc := "/proc/" + e.Name()
		// comm keeps the executable's name when a backend retitles itself.
		if comm, err := os.ReadFile(proc + "/comm"); err != nil || strings.TrimSpace(string(comm)) != "postgres" {
			continue
		}
		if cwd, err := os.Readlink(proc + "/cwd"); err == nil && cwd == dir {
			pids = append(pids, pid)
		}
	}
	return pids
}

// removeStalePidFile removes a postmaster.pid that names no live
// postmaster of dataDir: single-user mode would refuse to start if the
// pid now belongs to another process.
func removeStalePidFile(dataDir string) error {
	pf, err := readPidFile(dataDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err == nil {
		ok, err := isPostmasterOf(pf.pid, dataDir)
		if err != nil {
			return err
		}
		if ok {
			return fmt.Errorf("postmaster %d still runs in %s", pf.pid, dataDir)
		}
	}
	if err := os.Remove(filepath.Join(dataDir, "postmaster.pid")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// DataDirSize returns the bytes of the files under a data directory,
// following the symbolic links PostgreSQL makes (pg_wal, tablespaces in
// pg_tblspc), for progress and for comparing an incremental recovery's
// copy with a full one. Files that vanish meanwhile (a running server
// removes WAL and temporary files) are skipped.
func DataDirSize(dataDir string) (int64, error) {
	root, err := filepath.EvalSymlinks(dataDir) // a symlinked datadir is fine
	if err != nil {
		return 0, err
	}
	var total int64
	var walk func(dir string, top bool) error
	walk = func(dir string, top bool) error {
		return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) && path != dir {
					return nil
				}
				return err
			}
			if d.Type()&fs.ModeSymlink != 0 {
				rel, _ := filepath.Rel(root, path)
				if top && (rel == "pg_wal" || filepath.Dir(rel) == "pg_tblspc") {
					if target, err := filepath.EvalSymlinks(path); err == nil {
						if fi, err := os.Stat(target); err == nil && fi.IsDir() {
							return walk(target, false)
						}
					}
				}
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			total += fi.Size()
			return nil
		})
	}
	if err := walk(root, true); err != nil {
		return 0, err
	}
	return total, nil
}

// flushWAL makes up flush its WAL to disk, to where it inserts now. The
// rewound standby is consistent only once it has replayed the source's
// WAL to the insert position pg_rewind read; a walsender sends only
// flushed WAL, and a last record that is no commit (a checkpoint's
// running-transactions record, say) can stay unflushed on an idle
// primary for many seconds (17 s seen). A commit of its own, flushed
// locally (the mirror being rewound is not in sync yet), flushes
// everything before it.
func (s *Supervisor) flushWAL(ctx context.Context, up Upstream) error {
	conn, err := s.connect(ctx, up.Address, up.Port)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit TO local"); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "SELECT pg_current_xact_id()"); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// checkpoint runs CHECKPOINT on up.
func (s *Supervisor) checkpoint(ctx context.Context, up Upstream) error {
	conn, err := s.connect(ctx, up.Address, up.Port)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	_, err = conn.Exec(ctx, "CHECKPOINT")
	return err
}
