package supervisor

import (
	"errors"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// proc is a postmaster the supervisor watches: either its own child
// (started by launch, reaped by cmd.Wait) or an adopted one that outlived a
// previous agent (watched through a pidfd, which becomes readable the
// moment the process exits, whoever its parent is).
type proc struct {
	dbid     int
	pid      int
	dataDir  string
	done     chan struct{} // closed once the exit is seen
	stopping atomic.Bool   // Stop caused the exit: not news for Exits

	mu     sync.Mutex
	cmd    *exec.Cmd // our child; nil when adopted
	pidfd  int       // adopted: open until the exit is seen; -1 otherwise
	exited bool
}

func newProc(inst Instance, pid int) *proc {
	return &proc{dbid: inst.DBID, pid: pid, dataDir: inst.DataDir, done: make(chan struct{}), pidfd: -1}
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// signal sends sig without the pid-reuse race of kill(2): a child through
// os.Process (which holds a pidfd), an adopted process through its pidfd.
func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var err error
	switch {
	case p.exited:
		return nil
	case p.cmd != nil:
		err = p.cmd.Process.Signal(sig)
	case p.pidfd >= 0:
		err = unix.PidfdSendSignal(p.pidfd, sig, nil, 0)
	default:
		err = unix.Kill(p.pid, sig)
	}
	if errors.Is(err, unix.ESRCH) || errors.Is(err, os.ErrProcessDone) {
		return nil // exited meanwhile; the watcher reports it
	}
	return err
}

func (s *Supervisor) track(p *proc) {
	s.mu.Lock()
	s.procs[p.dbid] = p
	s.mu.Unlock()
}

// tracked returns the live tracked postmaster of inst, if any.
func (s *Supervisor) tracked(inst Instance) *proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.procs[inst.DBID]
	if p == nil || !p.alive() || p.dataDir != inst.DataDir {
		return nil
	}
	return p
}

// adopt returns the tracked postmaster of inst, or starts tracking the
// one running from its data directory; nil when none runs. It takes no
// per-instance lock, so the probe loop never waits behind a long base
// backup; two racing adopters settle under s.mu.
func (s *Supervisor) adopt(inst Instance) (*proc, error) {
	if p := s.tracked(inst); p != nil {
		return p, nil
	}
	pid, ok, err := findPostmaster(inst.DataDir)
	if err != nil || !ok {
		return nil, err
	}
	p := newProc(inst, pid)
	fd, err := unix.PidfdOpen(pid, 0)
	switch {
	case errors.Is(err, unix.ESRCH):
		return nil, nil
	case err != nil:
		// No pidfd (kernel before 5.3): the watcher polls /proc instead.
		s.log.Debug("pidfd_open failed; polling for exit", "pid", pid, "err", err)
	default:
		p.pidfd = fd
		// The pid was read before the pidfd was opened: make sure it still
		// names the postmaster and not a process that reused the pid.
		if ok, _ := isPostmasterOf(pid, inst.DataDir); !ok {
			unix.Close(fd)
			return nil, nil
		}
	}
	s.mu.Lock()
	if q := s.procs[inst.DBID]; q != nil && q.alive() && q.pid == pid {
		s.mu.Unlock()
		if p.pidfd >= 0 {
			unix.Close(p.pidfd)
		}
		return q, nil
	}
	s.procs[inst.DBID] = p
	s.mu.Unlock()
	s.log.Info("adopted running postmaster", "dbid", inst.DBID, "pid", pid, "datadir", inst.DataDir)
	go s.watchAdopted(p)
	return p, nil
}

// watchAdopted waits for an adopted postmaster to exit. poll(2) on the
// pidfd returns as soon as it does; the timeout only lets Close end the
// watch.
func (s *Supervisor) watchAdopted(p *proc) {
	if p.pidfd < 0 {
		s.pollAdopted(p)
		return
	}
	fds := []unix.PollFd{{Fd: int32(p.pidfd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 1000)
		if err != nil && !errors.Is(err, unix.EINTR) {
			s.log.Warn("poll on pidfd failed; polling for exit", "pid", p.pid, "err", err)
			s.pollAdopted(p)
			return
		}
		if n > 0 {
			s.exited(p, "unknown (adopted)")
			return
		}
		select {
		case <-s.closed:
			p.mu.Lock()
			unix.Close(p.pidfd)
			p.pidfd = -1
			p.mu.Unlock()
			return
		default:
		}
	}
}

// pollAdopted is the fallback without pidfds: it checks /proc.
func (s *Supervisor) pollAdopted(p *proc) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.closed:
			return
		case <-t.C:
			if ok, err := isPostmasterOf(p.pid, p.dataDir); err == nil && !ok {
				s.exited(p, "unknown (adopted)")
				return
			}
		}
	}
}

// exited records the end of p and, unless Stop caused it, reports its
// dbid on Exits without ever blocking.
func (s *Supervisor) exited(p *proc, status string) {
	p.mu.Lock()
	p.exited = true
	if p.pidfd >= 0 {
		unix.Close(p.pidfd)
		p.pidfd = -1
	}
	p.mu.Unlock()
	close(p.done)
	s.mu.Lock()
	if s.procs[p.dbid] == p {
		delete(s.procs, p.dbid)
	}
	s.mu.Unlock()
	if p.stopping.Load() {
		s.log.Info("postmaster stopped", "dbid", p.dbid, "pid", p.pid)
		return
	}
	s.log.Warn("postmaster exited", "dbid", p.dbid, "pid", p.pid, "status", status)
	select {
	case s.exits <- p.dbid:
	default:
		s.log.Warn("exit notification dropped: channel full", "dbid", p.dbid)
	}
}
