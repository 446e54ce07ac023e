package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Kill ends inst at once, with no shutdown: SIGKILL to its postmaster and
// to every process of its data directory, and returns once they are gone.
// It is for an instance that must not write again now: a primary the
// agent is about to report failed because it hangs (frozen, SIGSTOPped,
// unresponsive), or a demoted primary still running. A graceful stop does
// neither: a stopped postmaster does not act on SIGINT until it is
// continued, and its backends, which PostgreSQL starts in sessions of
// their own, go on serving their clients meanwhile (and, with
// synchronous_commit = local, committing). SIGKILL works on a stopped
// process; a process with SIGKILL pending never returns to user space, so
// it acknowledges nothing more even if it takes a while to exit.
//
// Kill takes no per-instance lock: it must land while another operation
// (a reload waiting on the hung server, say) holds it. An instance that is
// not running is not an error; its exit is not reported on Exits. The next
// start runs crash recovery, which loses nothing flushed.
func (s *Supervisor) Kill(ctx context.Context, inst Instance) error {
	if err := inst.validate(); err != nil {
		return err
	}
	p, err := s.adopt(inst)
	if err != nil {
		return fmt.Errorf("kill %s: %w", inst, err)
	}
	pm := 0
	if p != nil {
		pm = p.pid
		p.stopping.Store(true)
		// Frozen first, so that it forks no child while its children are
		// listed (a stopped process already is: SIGSTOP is a no-op then).
		if err := p.signal(syscall.SIGSTOP); err != nil {
			return fmt.Errorf("kill %s: %w", inst, err)
		}
	}
	pids, err := dataDirProcs(inst.DataDir, pm)
	if err != nil {
		return fmt.Errorf("kill %s: %w", inst, err)
	}
	s.log.Warn("killing instance: postmaster and every process of its data directory", "dbid", inst.DBID, "postmaster", pm, "processes", len(pids))
	for _, pid := range pids {
		if err := killIfOf(pid, inst.DataDir, pm); err != nil {
			return fmt.Errorf("kill %s: process %d: %w", inst, pid, err)
		}
	}
	if p != nil {
		if err := p.signal(syscall.SIGKILL); err != nil {
			return fmt.Errorf("kill %s: postmaster %d: %w", inst, pm, err)
		}
	}
	return s.waitGone(ctx, inst, p, pids)
}

// waitGone waits until the postmaster p (when not nil) has been seen to
// exit and none of pids is a live process of dataDir any more.
func (s *Supervisor) waitGone(ctx context.Context, inst Instance, p *proc, pids []int) error {
	pmAlive := func() bool { return p != nil && p.alive() }
	if err := waitProcsGone(ctx, inst.DataDir, pids, pmAlive); err != nil {
		return fmt.Errorf("kill %s: %w", inst, err)
	}
	return nil
}

// waitProcsGone polls until none of pids is a live process of dataDir
// and pmAlive (the postmaster) is false.
func waitProcsGone(ctx context.Context, dataDir string, pids []int, pmAlive func() bool) error {
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		left := 0
		for _, pid := range pids {
			if ok, _ := isProcOf(pid, dataDir, 0); ok {
				left++
			}
		}
		if pmAlive() {
			left++
		}
		if left == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d processes still exiting after SIGKILL: %w", left, ctx.Err())
		case <-t.C:
		}
	}
}

// killIfOf sends SIGKILL to pid through a pidfd, once the pidfd is open
// and pid is checked to still be a process of dataDir, so a pid reused
// since it was listed is never signalled. A process gone meanwhile is no
// error.
func killIfOf(pid int, dataDir string, postmaster int) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		// No pidfd (kernel before 5.3): the listing was just made.
		return ignoreGone(unix.Kill(pid, unix.SIGKILL))
	}
	defer unix.Close(fd)
	if ok, _ := isProcOf(pid, dataDir, postmaster); !ok {
		return nil
	}
	return ignoreGone(unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0))
}

func ignoreGone(err error) error {
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	return err
}

// dataDirProcs lists the live processes of a data directory other than
// the postmaster itself: the postmaster's children (by parent pid; they
// run in sessions of their own, so its process group would miss them),
// and postgres processes whose working directory is the data directory
// (children orphaned by an earlier death of their postmaster).
func dataDirProcs(dataDir string, postmaster int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == postmaster || pid == os.Getpid() {
			continue
		}
		if ok, _ := isProcOf(pid, dataDir, postmaster); ok {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// isProcOf reports whether pid is a live (not zombie) child of postmaster
// (when not 0), or a postgres process working in dataDir.
func isProcOf(pid int, dataDir string, postmaster int) (bool, error) {
	dir := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return false, nil // gone
	}
	// Fields after the parenthesized command name: state, ppid, ...
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return false, nil
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 2 || f[0] == "Z" || f[0] == "X" {
		return false, nil
	}
	if ppid, _ := strconv.Atoi(f[1]); postmaster != 0 && ppid == postmaster {
		return true, nil
	}
	comm, err := os.ReadFile(dir + "/comm")
	if err != nil {
		return false, nil
	}
	if c := strings.TrimSpace(string(comm)); c != "postgres" && c != "postmaster" {
		return false, nil
	}
	want, err := filepath.EvalSymlinks(dataDir)
	if err != nil {
		return false, err
	}
	cwd, err := os.Readlink(dir + "/cwd")
	if err != nil {
		return false, nil // not ours to read: not found by this rule
	}
	return cwd == want, nil
}

// KillDataDir is Kill for a process that tracks no postmaster: the fence
// watchdog, which outlives a stopped or dead agent. It finds the
// postmaster of dataDir by its postmaster.pid (checked against /proc),
// freezes it, kills every process of the data directory and then the
// postmaster, through pidfds so that no reused pid is signalled, and
// returns once none of them runs (a zombie whose parent, the agent, is
// stopped does not count: it serves nothing).
func KillDataDir(ctx context.Context, dataDir string) error {
	pm, ok, err := findPostmaster(dataDir)
	if err != nil {
		return fmt.Errorf("kill %s: %w", dataDir, err)
	}
	fd := -1
	if ok {
		fd, err = unix.PidfdOpen(pm, 0)
		switch {
		case errors.Is(err, unix.ESRCH):
			pm = 0
		case err != nil:
			return fmt.Errorf("kill %s: postmaster %d: %w", dataDir, pm, err)
		default:
			defer unix.Close(fd)
			if ok, _ := isPostmasterOf(pm, dataDir); !ok {
				pm = 0
			} else if err := ignoreGone(unix.PidfdSendSignal(fd, unix.SIGSTOP, nil, 0)); err != nil {
				return fmt.Errorf("kill %s: postmaster %d: %w", dataDir, pm, err)
			}
		}
	} else {
		pm = 0
	}
	pids, err := dataDirProcs(dataDir, pm)
	if err != nil {
		return fmt.Errorf("kill %s: %w", dataDir, err)
	}
	for _, pid := range pids {
		if err := killIfOf(pid, dataDir, pm); err != nil {
			return fmt.Errorf("kill %s: process %d: %w", dataDir, pid, err)
		}
	}
	if pm != 0 {
		if err := ignoreGone(unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)); err != nil {
			return fmt.Errorf("kill %s: postmaster %d: %w", dataDir, pm, err)
		}
	}
	pmAlive := func() bool {
		if pm == 0 {
			return false
		}
		ok, _ := isPostmasterOf(pm, dataDir)
		return ok
	}
	if err := waitProcsGone(ctx, dataDir, pids, pmAlive); err != nil {
		return fmt.Errorf("kill %s: %w", dataDir, err)
	}
	return nil
}

// Running reports whether a postmaster (or a standalone backend) of
// dataDir is alive, by its postmaster.pid checked against /proc.
func Running(dataDir string) bool {
	_, ok, err := findPostmaster(dataDir)
	return err == nil && ok
}
