package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/gpagent/gpagent/agent"
	"github.com/gpagent/gpagent/supervisor"
	"github.com/gpagent/gpagent/topology"
	"github.com/gpagent/gpagent/watchdog"
)

// cmdWatchdog runs the fence watchdog of the agent that started it (its
// parent): see package watchdog. Not for operators; the agent starts it.
func cmdWatchdog(ctx context.Context, io cmdIO, args []string) error {
	fs := newFlags(io, "watchdog", "--data-dir DIR --lease D --grace D (started by gpagent agent)")
	dir := fs.String("data-dir", "", "the agent's data dir")
	lease := fs.Duration("lease", 0, "the agent's lease")
	grace := fs.Duration("grace", 0, "how long past the lease the primaries of a stopped or exited agent are killed")
	liveGrace := fs.Duration("live-grace", 0, "how long past the lease a running agent has to record its own fence (default: --grace)")
	format := fs.String("log-format", agent.LogFormatText, "text or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *dir == "":
		return errors.New("--data-dir: required")
	case *lease <= 0:
		return fmt.Errorf("--lease %s: want a positive duration", *lease)
	case *grace <= 0:
		return fmt.Errorf("--grace %s: want a positive duration", *grace)
	case *liveGrace < 0:
		return fmt.Errorf("--live-grace %s: want a positive duration", *liveGrace)
	}
	var h slog.Handler = slog.NewTextHandler(io.err, nil)
	if *format == agent.LogFormatJSON {
		h = slog.NewJSONHandler(io.err, nil)
	}
	log := slog.New(h).With("component", "watchdog", "pid", os.Getpid())
	// The agent is the parent; once it is gone the watchdog is adopted
	// by init (or a subreaper) and its parent pid changes. A stopped
	// agent is still the parent: that is the case to cover.
	parent := os.Getppid()
	// SIGTERM (or SIGINT) is the agent asking the watchdog to end as it
	// exits: it ends only if none of the primaries runs. It runs in a
	// session of its own, so signals sent to the agent's process group
	// miss it; it also ends by itself once the agent is gone and its
	// primaries are fenced (or a new agent renews the lease).
	stop := make(chan struct{})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	go func() {
		<-sig
		close(stop)
	}()
	return watchdog.Run(context.WithoutCancel(ctx), watchdog.Config{
		Stop:      stop,
		DataDir:   *dir,
		Lease:     *lease,
		Grace:     *grace,
		LiveGrace: *liveGrace,
		AgentStopped: func() bool {
			return processStopped(parent)
		},
		BootID:     watchdog.BootID(),
		AgentAlive: func() bool { return os.Getppid() == parent },
		Running:    func(s topology.Segment) bool { return supervisor.Running(s.DataDir) },
		Kill: func(ctx context.Context, s topology.Segment) error {
			return supervisor.KillDataDir(ctx, s.DataDir)
		},
		Log: log,
	})
}

// watchdogProc is the agent's fence watchdog process.
type watchdogProc struct {
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// startWatchdog starts this agent's fence watchdog, a child in a session
// of its own (a SIGSTOP or SIGKILL sent to the agent's process group
// misses it), and starts it again if it exits while the agent runs.
func startWatchdog(ctx context.Context, cfg *agent.Config, log *slog.Logger) (*watchdogProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("fence watchdog: %w", err)
	}
	args := []string{"watchdog", "--data-dir", cfg.DataDir, "--lease", cfg.Lease.String(),
		"--grace", cfg.WatchdogGrace().String(), "--live-grace", cfg.WatchdogLiveGrace().String(),
		"--log-format", cfg.LogFormat}
	w := &watchdogProc{}
	start := func() error {
		cmd := exec.Command(exe, args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("fence watchdog: %w", err)
		}
		w.mu.Lock()
		w.cmd, w.done = cmd, make(chan struct{})
		w.mu.Unlock()
		return nil
	}
	if err := start(); err != nil {
		return nil, err
	}
	log.Info("fence watchdog started", "pid", w.cmd.Process.Pid, "grace", cfg.WatchdogGrace())
	go func() {
		for {
			w.mu.Lock()
			cmd, done := w.cmd, w.done
			w.mu.Unlock()
			err := cmd.Wait()
			close(done)
			if ctx.Err() != nil {
				return
			}
			log.Error("fence watchdog exited; starting it again", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			if err := start(); err != nil {
				log.Error("cannot start the fence watchdog again", "err", err)
				return
			}
		}
	}()
	return w, nil
}

// release asks the watchdog to end as the agent exits, and waits a
// moment for it: it ends if no primary runs (the agent stopped them), so
// that a stopped agent leaves no process behind; with primaries running
// it stays at its post.
func (w *watchdogProc) release(wait time.Duration) {
	w.mu.Lock()
	cmd, done := w.cmd, w.done
	w.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(wait):
	}
}

// processStopped reports whether pid is stopped (state T, by a signal,
// or t, by a tracer): it runs no code, so it fences nothing.
func processStopped(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] == 'T' || b[i+2] == 't'
}
