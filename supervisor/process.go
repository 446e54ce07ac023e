package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// pollEvery is how often start and stop look at postmaster.pid. Exits
// themselves are not polled: they arrive from cmd.Wait or a pidfd.
const pollEvery = 50 * time.Millisecond

// errShmemBusy is a start that failed because the children of a killed
// postmaster still hold its shared memory; they exit by themselves as soon
// as they notice, so the start is simply tried again.
var errShmemBusy = errors.New("shared memory of a previous postmaster still in use")

// Start starts inst's postmaster unless it is running already, and waits
// until it accepts connections or ctx ends. A running postmaster of the
// data directory is adopted, never restarted. When ctx ends first the
// server is left to finish starting (crash recovery may take long, and
// killing it would only restart that work).
func (s *Supervisor) Start(ctx context.Context, inst Instance) error {
	unlock, err := s.lockInstance(ctx, inst)
	if err != nil {
		return err
	}
	defer unlock()
	return s.startLocked(ctx, inst)
}

func (s *Supervisor) startLocked(ctx context.Context, inst Instance) error {
	p, err := s.adopt(inst)
	if err != nil {
		return err
	}
	if p != nil {
		return s.waitReady(ctx, inst, p, "", 0)
	}
	if _, err := os.Stat(filepath.Join(inst.DataDir, "PG_VERSION")); err != nil {
		return fmt.Errorf("start %s: datadir holds no PostgreSQL instance: %w", inst, err)
	}
	if err := s.syncListenConf(inst); err != nil {
		return fmt.Errorf("start %s: %w", inst, err)
	}
	for {
		p, logPath, off, err := s.launch(inst)
		if err != nil {
			return err
		}
		err = s.waitReady(ctx, inst, p, logPath, off)
		if !errors.Is(err, errShmemBusy) {
			return err
		}
		s.log.Info("waiting for the children of a dead postmaster to exit", "dbid", inst.DBID)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%w)", err, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// syncListenConf makes gpagent.conf listen where the topology says: the
// Instance is authoritative, the file only remembers it for PostgreSQL.
func (s *Supervisor) syncListenConf(inst Instance) error {
	c, err := s.readManagedConf(inst.DataDir)
	if err != nil {
		return fmt.Errorf("managed config: %w", err)
	}
	if c.ListenAddresses == inst.Address && c.Port == inst.Port {
		return nil
	}
	c.ListenAddresses, c.Port = inst.Address, inst.Port
	return s.writeManagedConf(inst.DataDir, c)
}

// launch execs the postmaster as a child of the agent, in its own session,
// with stdout and stderr appended to the startup log in the data
// directory (what it says before its logging collector takes over).
func (s *Supervisor) launch(inst Instance) (*proc, string, int64, error) {
	dd := inst.DataDir
	// A postmaster.pid whose pid is not a live postmaster of this
	// directory is stale (a crash, or a reboot that reused the pid). A
	// reused pid that now belongs to another process of the OS user, or
	// a zombie nobody reaped, would make PostgreSQL refuse to start, so it
	// goes. The shared memory interlock does not depend on this file.
	if pf, err := readPidFile(dd); err == nil {
		if ok, err := isPostmasterOf(pf.pid, dd); err == nil && !ok {
			s.log.Info("removing stale postmaster.pid", "dbid", inst.DBID, "pid", pf.pid, "standalone", pf.standalone)
			if err := os.Remove(filepath.Join(dd, "postmaster.pid")); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, "", 0, fmt.Errorf("start %s: %w", inst, err)
			}
		}
	}
	logPath := filepath.Join(dd, startupLogFile)
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, "", 0, fmt.Errorf("start %s: %w", inst, err)
	}
	defer logf.Close()
	if err := s.user.chown(logPath); err != nil {
		return nil, "", 0, err
	}
	off, _ := logf.Seek(0, 2)
	fmt.Fprintf(logf, "--- gpagent starting postmaster at %s ---\n", time.Now().UTC().Format(time.RFC3339))

	cmd := exec.Command(s.bins["postgres"], "-D", dd)
	cmd.Dir = dd
	cmd.Env = s.user.env()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = s.user.sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, "", 0, fmt.Errorf("start %s: %w", inst, err)
	}
	p := newProc(inst, cmd.Process.Pid)
	p.cmd = cmd
	s.track(p)
	s.log.Info("started postmaster", "dbid", inst.DBID, "pid", p.pid, "datadir", dd)
	go func() {
		status := "exit status 0"
		if err := cmd.Wait(); err != nil {
			status = err.Error()
		}
		s.exited(p, status)
	}()
	return p, logPath, off, nil
}

// waitReady waits until the postmaster p says in postmaster.pid that it
// accepts connections ("ready", or "standby" without hot standby), as
// pg_ctl does.
func (s *Supervisor) waitReady(ctx context.Context, inst Instance, p *proc, logPath string, off int64) error {
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		if pf, err := readPidFile(inst.DataDir); err == nil && pf.pid == p.pid && (pf.status == "ready" || pf.status == "standby") {
			return nil
		}
		select {
		case <-p.done:
			return s.startFailure(inst, logPath, off)
		case <-ctx.Done():
			return fmt.Errorf("start %s: still not accepting connections: %w", inst, ctx.Err())
		case <-t.C:
		}
	}
}

// startFailure explains a postmaster that died while starting, from what
// it wrote to the startup log and to its server log.
func (s *Supervisor) startFailure(inst Instance, logPath string, off int64) error {
	var said string
	if logPath != "" {
		said = tail(logPath, off, 5)
	}
	if strings.Contains(said, "pre-existing shared memory block") {
		return fmt.Errorf("start %s: %w", inst, errShmemBusy)
	}
	msg := fmt.Sprintf("start %s: postmaster exited during startup", inst)
	if said != "" {
		msg += ": " + said
	}
	if l := newestLog(inst.DataDir); l != "" {
		msg += fmt.Sprintf(" (server log %s: %s)", l, tail(l, 0, 3))
	}
	return errors.New(msg)
}

// Stop shuts inst down: a fast shutdown (SIGINT: sessions are ended,
// a checkpoint written) waited for until ctx ends, then an immediate
// shutdown (SIGQUIT) and finally SIGKILL. An instance that is not running
// is not an error. Its exit is not reported on Exits.
func (s *Supervisor) Stop(ctx context.Context, inst Instance) error {
	unlock, err := s.lockInstance(ctx, inst)
	if err != nil {
		return err
	}
	defer unlock()
	return s.stopLocked(ctx, inst)
}

func (s *Supervisor) stopLocked(ctx context.Context, inst Instance) error {
	p, err := s.adopt(inst)
	if err != nil || p == nil {
		return err
	}
	p.stopping.Store(true)
	s.log.Info("stopping postmaster (fast)", "dbid", inst.DBID, "pid", p.pid)
	if err := p.signal(syscall.SIGINT); err != nil {
		return fmt.Errorf("stop %s: %w", inst, err)
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
	}
	// The caller's patience has run out. An immediate shutdown loses no
	// committed data (the next start runs crash recovery); SIGKILL is for
	// a postmaster too wedged even for that.
	for _, sig := range []syscall.Signal{syscall.SIGQUIT, syscall.SIGKILL} {
		s.log.Warn("postmaster did not stop in time, escalating", "dbid", inst.DBID, "pid", p.pid, "signal", sig.String())
		if err := p.signal(sig); err != nil {
			return fmt.Errorf("stop %s: %w", inst, err)
		}
		select {
		case <-p.done:
			return nil
		case <-time.After(5 * time.Second):
		}
	}
	return fmt.Errorf("stop %s: postmaster %d survived SIGKILL", inst, p.pid)
}

// Adopt tracks inst's postmaster if one is running (postmaster.pid names a
// live postgres process whose data directory is inst's), so its exit is
// seen at once, and returns its pid. It never starts anything.
func (s *Supervisor) Adopt(inst Instance) (pid int, ok bool, err error) {
	if err := inst.validate(); err != nil {
		return 0, false, err
	}
	p, err := s.adopt(inst)
	if err != nil || p == nil {
		return 0, false, err
	}
	return p.pid, true, nil
}

// PID returns the pid of inst's tracked or running postmaster, 0 if none.
// It does not start tracking.
func (s *Supervisor) PID(inst Instance) int {
	if p := s.tracked(inst); p != nil {
		return p.pid
	}
	if pid, ok, err := findPostmaster(inst.DataDir); err == nil && ok {
		return pid
	}
	return 0
}
