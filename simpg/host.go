package simpg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gpagent/gpagent/supervisor"
)

// Host is the driver of one host's instances, what supervisor.Supervisor
// is for real ones (it satisfies agent.Driver). Operations on one dbid
// are serialized, as the supervisor's are.
type Host struct {
	w     *World
	name  string
	exits chan int

	// dead: killed, or replaced by a newer driver of the host. Set
	// before the host's instances are crashed, and read with the
	// instance's lock held, so nothing starts on a dead host.
	dead atomic.Bool

	mu      sync.Mutex
	tracked map[string]int // instances started or adopted here: key -> pid
	locks   map[int]chan struct{}
}

// track records in's postmaster as started or adopted here.
func (h *Host) track(in *instance) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tracked[in.key] = in.pid
}

// untrack forgets in's postmaster: its exit is not reported.
func (h *Host) untrack(in *instance) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.tracked, in.key)
}

// exited reports in's postmaster's death on Exits if this driver tracks
// it.
func (h *Host) exited(in *instance) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.dead.Load() || h.tracked[in.key] != in.pid {
		return
	}
	delete(h.tracked, in.key)
	select {
	case h.exits <- in.dbid:
	default:
	}
}

// Name is the host's name.
func (h *Host) Name() string { return h.name }

// Exits delivers the dbid of a tracked postmaster that died (not one this
// driver stopped). Buffered; an exit is dropped when it is full.
func (h *Host) Exits() <-chan int { return h.exits }

func validate(inst supervisor.Instance) error {
	switch {
	case inst.DBID <= 0:
		return fmt.Errorf("instance dbid %d: must be positive", inst.DBID)
	case inst.Address == "":
		return fmt.Errorf("%s: address is empty", inst)
	case inst.Port <= 0 || inst.Port > 65535:
		return fmt.Errorf("%s: port out of range", inst)
	case !strings.HasPrefix(inst.DataDir, "/") || inst.DataDir == "/":
		return fmt.Errorf("%s: datadir must be an absolute path", inst)
	}
	return nil
}

// enter checks the call and takes the dbid's operation lock, waiting for
// it no longer than ctx.
func (h *Host) enter(ctx context.Context, inst supervisor.Instance) (unlock func(), err error) {
	if err := validate(inst); err != nil {
		return nil, err
	}
	if h.dead.Load() {
		return nil, ErrHostDown
	}
	h.mu.Lock()
	ch, ok := h.locks[inst.DBID]
	if !ok {
		ch = make(chan struct{}, 1)
		h.locks[inst.DBID] = ch
	}
	h.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("dbid %d: waiting for another operation on it: %w", inst.DBID, ctx.Err())
	}
}

// answer waits, with ls held (it holds in's lock), until the server at
// in answers a connection: not while it is hung; an error if it is not
// running.
func (ls *lockSet) answer(ctx context.Context, in *instance) error {
	for in.running && in.hung {
		ch := in.changed
		ls.unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			ls.relock()
			return fmt.Errorf("%s: no answer: %w", in.key, ctx.Err())
		}
		ls.relock()
	}
	if !in.running {
		return fmt.Errorf("%s: connection refused", in.key)
	}
	return nil
}

// at returns the record of inst's address and port, and whether the
// server running there (if any) is inst's, from its data directory;
// in's lock is held.
func (w *World) at(inst supervisor.Instance) (in *instance, ours bool) {
	in = w.get(inst.Address, inst.Port)
	return in, isAt(in, inst)
}

func isAt(in *instance, inst supervisor.Instance) bool {
	return in.dir != dirAbsent && in.dataDir == inst.DataDir
}

// PID is the pid of inst's running postmaster, 0 if none. Like the
// supervisor's, it does not need the postmaster to be adopted.
func (h *Host) PID(inst supervisor.Instance) int {
	in := h.w.get(inst.Address, inst.Port)
	defer h.w.lockOne(in).unlock()
	if h.dead.Load() || !isAt(in, inst) || !in.running {
		return 0
	}
	return in.pid
}

// Adopt tracks inst's running postmaster, so its death is reported on
// Exits, and returns its pid.
func (h *Host) Adopt(inst supervisor.Instance) (pid int, ok bool, err error) {
	if err := validate(inst); err != nil {
		return 0, false, err
	}
	in := h.w.get(inst.Address, inst.Port)
	defer h.w.lockOne(in).unlock()
	if h.dead.Load() {
		return 0, false, ErrHostDown
	}
	if !isAt(in, inst) || !in.running {
		return 0, false, nil
	}
	h.track(in)
	return in.pid, true, nil
}

// Probe reads inst's health within the World's probe timeout; a hung
// server makes it wait the whole timeout and fail.
func (h *Host) Probe(ctx context.Context, inst supervisor.Instance) (supervisor.Health, error) {
	w := h.w
	if delay := time.Duration(w.probeDelay.Load()); delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return supervisor.Health{}, fmt.Errorf("probe %s: no answer: %w", inst, ctx.Err())
		}
	}
	in := w.get(inst.Address, inst.Port)
	ls := w.lock(in)
	defer ls.unlock()
	if h.dead.Load() {
		return supervisor.Health{}, ErrHostDown
	}
	if in.hung {
		// Only a hung server needs the timeout: the rest answer at once.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, w.opts.ProbeTimeout)
		defer cancel()
	}
	if err := ls.answer(ctx, in); err != nil {
		return supervisor.Health{}, fmt.Errorf("probe %s: %w", inst, err)
	}
	hl := supervisor.Health{
		InRecovery:       in.inRecovery,
		CurrentLSN:       in.insertLSN(),
		SyncStandbyNames: syncNamesValue(in.syncNames),
		Replication:      w.replication(in),
	}
	if in.inRecovery {
		hl.CurrentLSN = in.flushLSN() // replay follows flush at once
		if up := w.lookup(in.connected); up != nil {
			hl.Receiver = &supervisor.Receiver{Status: "streaming", SenderHost: up.address, SenderPort: up.port, FlushedLSN: in.flushLSN()}
		}
	}
	return hl, nil
}

// syncNamesValue is synchronous_standby_names as the server shows it.
func syncNamesValue(names []string) string {
	if len(names) == 1 && names[0] == supervisor.FencedStandby {
		return supervisor.FencedStandby
	}
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = `"` + n + `"`
	}
	return strings.Join(q, ", ")
}

// Start starts inst unless it runs already (then it is adopted).
func (h *Host) Start(ctx context.Context, inst supervisor.Instance) error {
	unlock, err := h.enter(ctx, inst)
	if err != nil {
		return err
	}
	defer unlock()
	defer h.w.lockOne(h.w.get(inst.Address, inst.Port)).unlock()
	return h.startLocked(inst)
}

// startLocked starts inst with its lock held: not on a dead host (its
// instances were crashed, or are being).
func (h *Host) startLocked(inst supervisor.Instance) error {
	w := h.w
	in, ours := w.at(inst)
	if h.dead.Load() {
		return ErrHostDown
	}
	if !ours || in.dir != dirOurs {
		return fmt.Errorf("start %s: datadir holds no PostgreSQL instance", inst)
	}
	if !in.running {
		if err := w.injected(in, ToolStart); err != nil {
			return fmt.Errorf("start %s: postmaster exited during startup: %w", inst, err)
		}
		in.syncNames, in.readOnly = slices.Clone(in.confSyncNames), in.confReadOnly
		w.start(in)
	}
	h.track(in)
	return nil
}

// Stop shuts inst down cleanly; a hung one is killed once ctx ends. Its
// exit is not reported on Exits.
func (h *Host) Stop(ctx context.Context, inst supervisor.Instance) error {
	unlock, err := h.enter(ctx, inst)
	if err != nil {
		return err
	}
	defer unlock()
	ls := h.w.lock(h.w.get(inst.Address, inst.Port))
	defer ls.unlock()
	h.stopLocked(ctx, ls, inst)
	return nil
}

// stopLocked stops inst with ls, the locks of its neighbourhood, held.
func (h *Host) stopLocked(ctx context.Context, ls *lockSet, inst supervisor.Instance) {
	w := h.w
	in, ours := w.at(inst)
	if !ours || !in.running {
		return
	}
	h.untrack(in)
	for in.running && in.hung {
		ch := in.changed
		ls.unlock()
		select {
		case <-ch:
			ls.relock()
		case <-ctx.Done():
			// Immediate shutdown, then SIGKILL: a crash, which the
			// next start recovers.
			ls.relock()
			w.crash(in)
			return
		}
	}
	w.stop(in)
}

// Kill ends inst at once, hung or not, as the supervisor's Kill does
// with SIGKILL to every process of the data directory (which works on a
// stopped process): a crash, which the next start recovers. It takes no
// per-instance lock, so it lands while another operation waits on the hung
// server. Its exit is not reported on Exits.
func (h *Host) Kill(ctx context.Context, inst supervisor.Instance) error {
	if err := validate(inst); err != nil {
		return err
	}
	w := h.w
	in := w.get(inst.Address, inst.Port)
	defer w.lock(in).unlock()
	if h.dead.Load() {
		return ErrHostDown
	}
	if !isAt(in, inst) || !in.running {
		return nil
	}
	h.untrack(in)
	w.crash(in)
	return nil
}

// SetSyncStandby sets synchronous_standby_names of the running inst
// (kept across restarts, as gpagent.conf keeps it).
func (h *Host) SetSyncStandby(ctx context.Context, inst supervisor.Instance, appNames []string) error {
	for _, a := range appNames {
		if a == "" || strings.ContainsAny(a, "\",\n") {
			return fmt.Errorf("application name %q cannot be used in synchronous_standby_names", a)
		}
	}
	return h.reconfigure(ctx, inst, "set sync standby", func(in *instance, applied bool) {
		in.confSyncNames = slices.Clone(appNames)
		if applied {
			in.syncNames = slices.Clone(appNames)
		}
	})
}

// Fence makes the running primary inst acknowledge no commit (every one
// waits for supervisor.FencedStandby) and refuse new writes.
func (h *Host) Fence(ctx context.Context, inst supervisor.Instance) error {
	fenced := []string{supervisor.FencedStandby}
	return h.reconfigure(ctx, inst, "fence", func(in *instance, applied bool) {
		in.confReadOnly, in.confSyncNames = true, fenced
		if applied {
			if !in.readOnly || in.fencedAt.IsZero() {
				in.fencedAt = time.Now()
			}
			in.readOnly, in.syncNames = true, fenced
		}
	})
}

// Unfence lifts the read-only default; synchronous_standby_names stays.
func (h *Host) Unfence(ctx context.Context, inst supervisor.Instance) error {
	if err := validate(inst); err != nil {
		return err
	}
	in := h.w.get(inst.Address, inst.Port)
	ls := h.w.lockOne(in)
	fenced := in.confReadOnly
	ls.unlock()
	if !fenced {
		return nil
	}
	return h.reconfigure(ctx, inst, "unfence", func(in *instance, applied bool) {
		in.confReadOnly = false
		if applied {
			in.readOnly, in.fencedAt = false, time.Time{}
		}
	})
}

// reconfigure writes inst's configuration, then applies it to the running
// server, which must answer: as the supervisor writes gpagent.conf and
// then reloads. A server that does not answer keeps its old settings
// until it restarts.
func (h *Host) reconfigure(ctx context.Context, inst supervisor.Instance, what string, set func(in *instance, applied bool)) error {
	unlock, err := h.enter(ctx, inst)
	if err != nil {
		return err
	}
	defer unlock()
	w := h.w
	ls := w.lock(w.get(inst.Address, inst.Port))
	defer ls.unlock()
	in, ours := w.at(inst)
	if !ours || in.dir != dirOurs {
		return fmt.Errorf("%s %s: no managed configuration in %s", what, inst, inst.DataDir)
	}
	set(in, false)
	for in.stuckConf {
		ch := in.changed
		ls.unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			ls.relock()
			return fmt.Errorf("%s %s: reload not applied: %w", what, inst, ctx.Err())
		}
		ls.relock()
	}
	if err := ls.answer(ctx, in); err != nil {
		return fmt.Errorf("%s %s: %w", what, inst, err)
	}
	set(in, true)
	w.recomputeSync(in)
	in.bump()
	return nil
}

// ErrNoFiles: simpg serves no data files; CreateMirror copies through the
// World whatever Upstream.Files says.
var ErrNoFiles = errors.New("simpg serves no data files")

// DataFiles fails with ErrNoFiles.
func (h *Host) DataFiles(inst supervisor.Instance) ([]supervisor.DataFile, error) {
	return nil, ErrNoFiles
}

// ServeDataFiles fails with ErrNoFiles.
func (h *Host) ServeDataFiles(inst supervisor.Instance, ranges []supervisor.FileRange, w io.Writer, setLength func(int64)) error {
	return ErrNoFiles
}
