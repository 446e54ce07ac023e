package simpg

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gpagent/gpagent/supervisor"
)

// dirOf classifies inst's data directory for clusterID as the supervisor
// does: absent, an unfinished creation of ours, finished and ours, or
// someone else's (an error).
func (w *World) dirOf(clusterID string, inst supervisor.Instance) (*instance, dirState, error) {
	in, ours := w.at(inst)
	switch {
	case !ours:
		return in, dirAbsent, nil
	case in.clusterID != clusterID || in.dbid != inst.DBID:
		return in, 0, fmt.Errorf("datadir %s belongs to gpagent cluster %s dbid %d, not cluster %s dbid %d",
			inst.DataDir, in.clusterID, in.dbid, clusterID, inst.DBID)
	}
	return in, in.dir, nil
}

// portFree says why inst's port cannot be listened on, if it cannot.
func portFree(in *instance, inst supervisor.Instance) error {
	if in.running {
		return fmt.Errorf("port %d on %s is in use", inst.Port, inst.Address)
	}
	return nil
}

// Ours reports whether inst's data dir is a finished instance of
// clusterID and inst's dbid.
func (h *Host) Ours(clusterID string, inst supervisor.Instance) bool {
	defer h.w.lockOne(h.w.get(inst.Address, inst.Port)).unlock()
	in, st, err := h.w.dirOf(clusterID, inst)
	return !h.dead.Load() && err == nil && st == dirOurs && in != nil
}

// Preflight checks that inst could be created: its data dir is absent or
// ours, and its port free unless ours runs there.
func (h *Host) Preflight(clusterID string, inst supervisor.Instance) error {
	if err := validate(inst); err != nil {
		return err
	}
	defer h.w.lockOne(h.w.get(inst.Address, inst.Port)).unlock()
	if h.dead.Load() {
		return ErrHostDown
	}
	in, st, err := h.w.dirOf(clusterID, inst)
	if err != nil {
		return err
	}
	if st == dirOurs && in.running {
		return nil
	}
	return portFree(in, inst)
}

// create makes in a fresh data directory of inst, with in's lock held.
func (h *Host) create(in *instance, clusterID string, inst supervisor.Instance, st dirState) {
	in.dir, in.dataDir, in.clusterID, in.dbid, in.host = st, inst.DataDir, clusterID, inst.DBID, h.name
	in.wal, in.flushN = nil, 0
	in.standby, in.upKey, in.confSyncNames, in.confReadOnly = false, "", nil, false
	in.ckptLSN, in.shutdown = 0, shutDown
	in.bump()
}

// InitPrimary creates inst as a new primary (timeline 1, an initial
// checkpoint) and starts it. A data dir already ours is only started.
func (h *Host) InitPrimary(ctx context.Context, clusterID string, inst supervisor.Instance) error {
	if clusterID == "" {
		return fmt.Errorf("init %s: empty cluster id", inst)
	}
	unlock, err := h.enter(ctx, inst)
	if err != nil {
		return err
	}
	defer unlock()
	w := h.w
	defer w.lockOne(w.get(inst.Address, inst.Port)).unlock()
	in, st, err := w.dirOf(clusterID, inst)
	if err != nil {
		return err
	}
	if st == dirOurs {
		return h.startLocked(inst)
	}
	if err := portFree(in, inst); err != nil {
		return fmt.Errorf("init %s: %w", inst, err)
	}
	if h.dead.Load() {
		return ErrHostDown
	}
	h.create(in, clusterID, inst, dirOurs)
	in.tli = 1
	r := w.appendRecord(in, KindCheckpoint, 0)
	in.flushN, in.ckptLSN = 1, r.LSN
	return h.startLocked(inst)
}

// CreateMirror copies up (its data and flushed WAL, straight from the
// World) into inst's data dir and starts it as a standby of up. The copy
// takes Options.CopyTime, reported through progress in bytes. A data dir
// that is already a standby of ours is only pointed at up and started.
func (h *Host) CreateMirror(ctx context.Context, clusterID string, inst supervisor.Instance, up supervisor.Upstream, progress func(done, total int64)) error {
	if clusterID == "" || up.Address == "" || up.Port <= 0 || up.Port > 65535 {
		return fmt.Errorf("create mirror %s: need a cluster id and an upstream address and port", inst)
	}
	unlock, err := h.enter(ctx, inst)
	if err != nil {
		return err
	}
	defer unlock()
	w := h.w
	u := w.get(up.Address, up.Port)
	ls := w.lock(w.get(inst.Address, inst.Port), u)
	defer ls.unlock()
	in, st, err := w.dirOf(clusterID, inst)
	if err != nil {
		return err
	}
	if st == dirOurs {
		if !in.standby {
			return fmt.Errorf("create mirror %s: datadir is a gpagent instance but not a standby; remove it for a full recovery", inst)
		}
		in.upKey = instanceKey(up.Address, up.Port)
		in.bump()
		return h.startLocked(inst)
	}
	if err := portFree(in, inst); err != nil {
		return fmt.Errorf("create mirror %s: %w", inst, err)
	}
	if err := ls.answer(ctx, u); err != nil || u.dir != dirOurs {
		return fmt.Errorf("create mirror %s: upstream %s: %w", inst, u.key, orNoInstance(err))
	}
	h.create(in, clusterID, inst, dirPartial)
	undo := func() {
		if in.dir == dirPartial {
			in.dir = dirAbsent
			in.bump()
		}
	}
	if err := w.injected(in, ToolCopy); err != nil {
		undo()
		return fmt.Errorf("create mirror %s: %w", inst, err)
	}
	if err := h.copyFrom(ctx, ls, in, u, progress); err != nil {
		if !errors.Is(err, ErrHostDown) {
			undo() // a dead agent leaves its remains, for the next one to clear
		}
		return fmt.Errorf("create mirror %s: %w", inst, err)
	}
	in.wal, in.flushN = slices.Clone(u.wal[:u.flushN]), u.flushN
	in.tli, in.standby, in.upKey = u.tli, true, u.key
	in.ckptLSN, in.shutdown = lastCheckpoint(in.wal, in.flushN), shutDownRecovery
	in.dir = dirOurs
	return h.startLocked(inst)
}

func orNoInstance(err error) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("no PostgreSQL instance there")
}

// copyFrom spends Options.CopyTime copying u, in four steps reported
// through progress, with ls (in's and u's locks) held, released while
// waiting. It fails if ctx ends, the host dies, or u stops answering.
func (h *Host) copyFrom(ctx context.Context, ls *lockSet, in, u *instance, progress func(done, total int64)) error {
	w := h.w
	total := w.opts.DataSize + int64(u.insertLSN()-walStart)
	const steps = 4
	gen := u.runGen
	for i := 1; i <= steps; i++ {
		if d := w.opts.CopyTime / steps; d > 0 {
			ls.unlock()
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
			ls.relock()
		}
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case h.dead.Load():
			return ErrHostDown
		case u.runGen != gen:
			return fmt.Errorf("upstream %s closed the connection", u.key)
		}
		if progress != nil {
			done := total * int64(i) / steps
			ls.unlock()
			progress(done, total)
			ls.relock()
		}
	}
	return nil
}

// Destroy stops inst and empties its data dir; one not ours is refused.
func (h *Host) Destroy(ctx context.Context, clusterID string, inst supervisor.Instance) error {
	unlock, err := h.enter(ctx, inst)
	if err != nil {
		return err
	}
	defer unlock()
	w := h.w
	ls := w.lock(w.get(inst.Address, inst.Port))
	defer ls.unlock()
	in, st, err := w.dirOf(clusterID, inst)
	if err != nil {
		return fmt.Errorf("destroy: %w", err)
	}
	if st == dirAbsent {
		return nil
	}
	h.stopLocked(ctx, ls, inst)
	h.create(in, clusterID, inst, dirAbsent)
	return nil
}
