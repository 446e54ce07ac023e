// Package watchdog fences a host's primaries when its agent cannot.
//
// The agent fences its primaries the moment its lease runs out, and the
// leader promotes their mirrors only a margin after that (DESIGN.md,
// safety rule 5). But the fence runs inside the agent's process: an agent
// that is stopped (SIGSTOP, a debugger, a process stuck in the kernel),
// killed, or exited leaves its postmasters running, writable, while the
// leader, which no longer hears it, promotes their mirrors. Found by
// `gpbench chaos --seed 3`: a SIGSTOPped agent, and for 3.9 s two
// writable primaries of one content.
//
// The watchdog is a small process of its own, in a session of its own,
// that the agent starts. It holds no state but what the agent leaves in
// its data dir (files.go): the lease renewal, the agent's record of its
// own fence, and the local instances. When the lease has run out for a
// grace (a part of the leader's margin) and the agent has not recorded
// its fence of every primary, the watchdog kills them: SIGKILL to the
// postmaster and every process of its data directory, which works on a
// stopped process too. A killed primary loses nothing it acknowledged
// (crash recovery replays its WAL); a mirror promoted meanwhile has every
// synchronously acknowledged commit.
//
// It reads the clock the agent records on (CLOCK_BOOTTIME), never the
// agent's: a frozen agent's clock is whatever it read last.
package watchdog

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gpagent/gpagent/topology"
)

// maxSleep bounds one sleep: the watchdog notices its agent's exit and
// new primaries within it.
const maxSleep = time.Second

// retryKill is the wait before looking again after a kill that failed or
// with primaries still running past the deadline.
const retryKill = 100 * time.Millisecond

// Config is one watchdog's: whose data dir, and how it acts.
type Config struct {
	// DataDir is the agent's data dir (the files of files.go).
	DataDir string
	// Lease is the agent's lease. Grace is how long past its end the
	// watchdog waits before it kills the primaries of a stopped or gone
	// agent; LiveGrace how long a running agent has to record its own
	// fence (longer: a fence takes a reload per primary). Both must leave
	// the kill time to land before the leader may promote (lease plus
	// its margin after it last heard the host).
	Lease, Grace, LiveGrace time.Duration
	// Kill ends one local instance at once (supervisor.KillDataDir).
	Kill func(ctx context.Context, s topology.Segment) error
	// Running reports whether a postmaster runs on s's data dir.
	Running func(s topology.Segment) bool
	// AgentAlive reports whether the agent that started the watchdog
	// still exists; AgentStopped (nil: never) whether its process is
	// stopped (SIGSTOP, ptrace), so that it fences nothing.
	AgentAlive   func() bool
	AgentStopped func() bool
	// Now reads the boot clock (BootNanos) and BootID the boot; nil: the
	// host's.
	Now    func() (int64, error)
	BootID string
	// After waits (time.After when nil).
	After func(time.Duration) <-chan time.Time
	Log   *slog.Logger
	// ID names this watchdog in WatchdogFile, unique on the host (pid
	// and start time when empty).
	ID string
	// Stop is the agent asking the watchdog to end as it exits (having
	// stopped its instances): it ends if none of the listed primaries
	// runs, and stays at its post otherwise.
	Stop <-chan struct{}
}

// view is what the watchdog reads on one look.
type view struct {
	stamp     Stamp
	stampOK   bool
	fenced    Fenced
	fencedOK  bool
	instances Instances
}

// verdict is Decide's answer.
type verdict struct {
	// kill: the primaries to fence now.
	kill []topology.Segment
	// wait until the next look.
	wait time.Duration
}

// agentState is what the watchdog sees of its agent.
type agentState int

const (
	agentRunning agentState = iota
	// agentStopped: the agent's process is stopped (SIGSTOP, a
	// debugger): alive, but it acts on nothing.
	agentStopped
	// agentGone: the agent's process exited.
	agentGone
)

// decide is the watchdog's rule, on the boot clock at now. The lease,
// when there is one of this boot, ends at Renewed+Lease; no lease (none
// recorded, another boot) ended long ago.
//
// A running agent fences its primaries itself when its lease ends, and
// records them fenced; a fence can take a while on a loaded host (a
// reload each, in parallel). Past the lease plus liveGrace, every
// primary it has not recorded fenced for this very renewal is killed (a
// primary the topology gave the host since is not covered). A stopped
// agent fences nothing, and an agent that exited supervises nothing:
// their primaries are killed past the lease plus grace (< liveGrace),
// recorded fenced or not.
func decide(v view, bootID string, now int64, lease, grace, liveGrace time.Duration, agent agentState) verdict {
	renewed, deadline := int64(0), int64(0)
	if v.stampOK && v.stamp.BootID == bootID {
		renewed = v.stamp.Renewed
		deadline = renewed + int64(lease) + int64(grace)
		if agent == agentRunning {
			deadline = renewed + int64(lease) + int64(max(liveGrace, grace))
		}
	}
	if now < deadline {
		return verdict{wait: min(time.Duration(deadline-now), maxSleep)}
	}
	vouched := agent == agentRunning && v.fencedOK && v.fenced.Renewed == renewed
	var kill []topology.Segment
	for _, s := range v.instances.Primaries() {
		if !vouched || !v.fenced.Covers(s.DBID) {
			kill = append(kill, s)
		}
	}
	if len(kill) == 0 {
		return verdict{wait: maxSleep}
	}
	return verdict{kill: kill, wait: retryKill}
}

// Run watches until ctx ends or the agent is gone and there is nothing
// left to do: its lease ran out and its primaries are no longer running,
// or another agent renewed the lease (a restarted agent, which started
// its own watchdog).
func Run(ctx context.Context, cfg Config) error {
	if cfg.Now == nil {
		cfg.Now = BootNanos
	}
	if cfg.After == nil {
		cfg.After = time.After
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.ID == "" {
		cfg.ID = fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano())
	}
	// In charge from now on: a watchdog left by an earlier run of the
	// agent, which outlives it, hands over once it sees this.
	if err := WriteFileAtomic(filepath.Join(cfg.DataDir, WatchdogFile), []byte(cfg.ID+"\n")); err != nil {
		return fmt.Errorf("fence watchdog: %w", err)
	}
	stop, stopAsked := cfg.Stop, false
	var orphanedAt *Stamp // the lease when the agent was first seen gone
	var known Instances   // the last instance list read
	killed := map[int]bool{}
	for {
		now, err := cfg.Now()
		if err != nil {
			return err
		}
		var v view
		v.stamp, v.stampOK = ReadStamp(cfg.DataDir)
		v.fenced, v.fencedOK = ReadFenced(cfg.DataDir)
		v.instances, err = ReadInstances(cfg.DataDir)
		switch {
		case err != nil:
			// Rewritten by rename, this cannot be half a file: it is
			// unreadable for a reason that will not pass. Say so, and
			// go on with the last good list.
			cfg.Log.Error("cannot read the local instances; using the last list read", "err", err)
			v.instances = known
		case len(v.instances.Instances) == 0 && !exists(filepath.Join(cfg.DataDir, InstancesFile)):
			// Gone: the data dir was wiped (the agent never removes it).
			// The postmasters it listed run on all the same.
			v.instances = known
		default:
			known = v.instances
		}
		alive := cfg.AgentAlive()
		if !alive || stopAsked {
			// Nothing left to guard: no primary runs. A new agent that
			// starts one starts its own watchdog.
			running := false
			for _, s := range v.instances.Primaries() {
				if cfg.Running(s) {
					running = true
					break
				}
			}
			if !running {
				cfg.Log.Info("the agent is gone or stopping and none of its primaries runs: this watchdog ends")
				return nil
			}
			if stopAsked {
				cfg.Log.Warn("the agent is stopping but primaries still run: the watchdog stays until they are fenced")
				stopAsked, stop = false, nil
			}
		}
		if !alive && orphanedAt == nil {
			s := v.stamp
			orphanedAt = &s
			cfg.Log.Info("agent gone: fencing its primaries when its lease ends", "data_dir", cfg.DataDir)
		}
		if orphanedAt != nil && v.stampOK && v.stamp != *orphanedAt {
			cfg.Log.Info("lease renewed by a new agent: this watchdog ends")
			return nil
		}
		if orphanedAt != nil && !inCharge(cfg.DataDir, cfg.ID) {
			// A new agent started, and with it a watchdog that reads the
			// same lease and, unlike this one, its agent's fence records:
			// fenced primaries of a live agent are not killed.
			cfg.Log.Info("a new agent's watchdog is in charge: this watchdog ends")
			return nil
		}
		state := agentRunning
		switch {
		case !alive:
			state = agentGone
		case cfg.AgentStopped != nil && cfg.AgentStopped():
			state = agentStopped
		}
		d := decide(v, cfg.BootID, now, cfg.Lease, cfg.Grace, cfg.LiveGrace, state)
		running := 0
		if len(d.kill) > 0 {
			// In parallel: a process stuck in the kernel (uninterruptible
			// I/O) delays the end of its own kill only.
			var wg sync.WaitGroup
			for _, s := range d.kill {
				if !cfg.Running(s) {
					continue
				}
				running++
				if !killed[s.DBID] {
					cfg.Log.Error("the agent's lease ran out and it did not fence this primary (stopped, hung or gone): killing it", "dbid", s.DBID, "content", s.Content, "data_dir", s.DataDir, "lease", cfg.Lease, "grace", cfg.Grace)
					killed[s.DBID] = true
				}
				wg.Go(func() {
					kctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					defer cancel()
					if err := cfg.Kill(kctx, s); err != nil {
						cfg.Log.Error("kill failed", "dbid", s.DBID, "err", err)
					}
				})
			}
			wg.Wait()
			if running == 0 {
				d.wait = maxSleep
			}
		}
		if len(d.kill) == 0 {
			clear(killed)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-stop:
			stopAsked = true
		case <-cfg.After(d.wait):
		}
	}
}

// inCharge reports whether WatchdogFile names id (an unreadable file
// leaves it in charge).
func inCharge(dir, id string) bool {
	b, err := os.ReadFile(filepath.Join(dir, WatchdogFile))
	return err != nil || strings.TrimSpace(string(b)) == id
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}
