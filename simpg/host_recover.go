package simpg

import (
	"context"
	"fmt"
	"slices"

	"github.com/gpagent/gpagent/supervisor"
)

// Promote turns the running standby inst into a primary on a new
// timeline: it first clears its synchronous_standby_names and upstream,
// as the supervisor does, then ends recovery. A primary is left alone.
func (h *Host) Promote(ctx context.Context, inst supervisor.Instance) error {
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
		return fmt.Errorf("promote %s: no managed configuration in %s", inst, inst.DataDir)
	}
	in.confSyncNames, in.upKey = nil, ""
	if err := ls.answer(ctx, in); err != nil {
		return fmt.Errorf("promote %s: %w", inst, err)
	}
	in.syncNames = nil
	if !in.inRecovery {
		return nil
	}
	if err := w.injected(in, ToolPromoteCrash); err != nil {
		w.crash(in)
		return fmt.Errorf("promote %s: %w", inst, err)
	}
	if err := w.injected(in, ToolPromote); err != nil {
		return fmt.Errorf("promote %s: %w", inst, err)
	}
	w.disconnect(in)
	in.inRecovery, in.standby = false, false
	in.tli = int(w.nextTLI.Add(1))
	w.appendRecord(in, KindPromotion, 0)
	in.flushN = len(in.wal)
	in.released = in.insertLSN()
	in.bump()
	return nil
}

// WaitWritable waits until up answers as a primary.
func (h *Host) WaitWritable(ctx context.Context, up supervisor.Upstream) error {
	w := h.w
	u := w.get(up.Address, up.Port)
	ls := w.lockOne(u)
	defer ls.unlock()
	for {
		if h.dead.Load() {
			return ErrHostDown
		}
		if u.running && !u.hung && !u.inRecovery {
			return nil
		}
		ch := u.changed
		ls.unlock()
		select {
		case <-ch:
			ls.relock()
		case <-ctx.Done():
			ls.relock()
			return fmt.Errorf("upstream %s not writable: %w", u.key, ctx.Err())
		}
	}
}

// CheckpointLSN reads inst's control file: its last checkpoint and
// whether it was shut down cleanly as a primary ("shut down"; a standby's
// clean stop is "shut down in recovery", which is not).
func (h *Host) CheckpointLSN(ctx context.Context, inst supervisor.Instance) (lsn uint64, clean bool, err error) {
	if err := validate(inst); err != nil {
		return 0, false, err
	}
	w := h.w
	defer w.lockOne(w.get(inst.Address, inst.Port)).unlock()
	if h.dead.Load() {
		return 0, false, ErrHostDown
	}
	in, ours := w.at(inst)
	if !ours || in.dir != dirOurs {
		return 0, false, fmt.Errorf("pg_controldata %s: no control file", inst.DataDir)
	}
	// pg_controldata's "Latest checkpoint location" is where the
	// checkpoint record starts; a standby that replayed it reports a
	// position past it (its end). ckptLSN is the record's end, as every
	// Record.LSN is.
	lsn = in.ckptLSN
	if lsn >= walStart+recordSize {
		lsn -= recordSize
	}
	return lsn, !in.running && in.shutdown == shutDown, nil
}

// Rejoin starts the stopped instance inst as a standby of up, from the
// data it has, once up accepts writes. It does not check that inst's WAL
// is a prefix of up's: one that is not starts but never streams, as in
// PostgreSQL. A running inst only has its configuration changed.
func (h *Host) Rejoin(ctx context.Context, inst supervisor.Instance, up supervisor.Upstream) error {
	if err := validate(inst); err != nil {
		return err
	}
	if err := h.WaitWritable(ctx, up); err != nil {
		return fmt.Errorf("rejoin %s: %w", inst, err)
	}
	unlock, err := h.enter(ctx, inst)
	if err != nil {
		return err
	}
	defer unlock()
	w := h.w
	defer w.lockOne(w.get(inst.Address, inst.Port)).unlock()
	in, ours := w.at(inst)
	if !ours || in.dir != dirOurs {
		return fmt.Errorf("rejoin %s: no managed configuration in %s", inst, inst.DataDir)
	}
	in.confSyncNames, in.upKey, in.standby = nil, instanceKey(up.Address, up.Port), true
	return h.startLocked(inst)
}

// Rewind makes inst a standby of up as pg_rewind does: a running inst is
// stopped first (cleanly), up must accept writes, inst's records after
// the last one it shares with up are discarded (what up lacks is lost),
// and inst is started as a standby of up, which then streams what it
// lacks. A data dir not ours, or one with no history in common with up,
// fails with supervisor.ErrRewindImpossible.
//
// Unlike pg_rewind, which answers "no rewind required" for a target on
// the same timeline as its source and leaves it as it is, the model
// always truncates to the common prefix; the agent rewinds only towards a
// promoted mirror, whose timeline differs.
func (h *Host) Rewind(ctx context.Context, clusterID string, inst supervisor.Instance, up supervisor.Upstream, progress func(done, total int64)) error {
	if clusterID == "" || up.Address == "" || up.Port <= 0 || up.Port > 65535 {
		return fmt.Errorf("rewind %s: need a cluster id and an upstream address and port", inst)
	}
	if up.Address == inst.Address && up.Port == inst.Port {
		return fmt.Errorf("rewind %s: the upstream is the instance itself", inst)
	}
	unlock, err := h.enter(ctx, inst)
	if err != nil {
		return err
	}
	defer unlock()
	w := h.w
	in := w.get(inst.Address, inst.Port)
	ls := w.lock(in)
	_, st, err := w.dirOf(clusterID, inst)
	switch {
	case err != nil:
		ls.unlock()
		return fmt.Errorf("rewind %s: %w: %w", inst, supervisor.ErrRewindImpossible, err)
	case st != dirOurs:
		ls.unlock()
		return fmt.Errorf("rewind %s: %w: datadir %s does not exist or is unfinished", inst, supervisor.ErrRewindImpossible, inst.DataDir)
	}
	h.stopLocked(ctx, ls, inst)
	ls.unlock()
	if err := h.WaitWritable(ctx, up); err != nil {
		return fmt.Errorf("rewind %s: %w", inst, err)
	}
	u := w.get(up.Address, up.Port)
	ls = w.lock(in, u)
	defer ls.unlock()
	if in.running {
		return fmt.Errorf("rewind %s: started again while waiting for the upstream", inst)
	}
	if err := w.injected(in, ToolRewind); err != nil {
		return fmt.Errorf("rewind %s: pg_rewind failed: %w", inst, err)
	}
	fork := commonPrefix(in.wal[:in.flushN], u.wal[:u.flushN])
	if fork == 0 {
		return fmt.Errorf("rewind %s: %w: source and target clusters are from different systems", inst, supervisor.ErrRewindImpossible)
	}
	if progress != nil {
		total := int64(in.insertLSN()-in.wal[fork-1].LSN) + int64(u.flushLSN()-u.wal[fork-1].LSN)
		ls.unlock()
		progress(total, total)
		ls.relock()
	}
	in.wal = slices.Clone(in.wal[:fork])
	in.flushN = fork
	in.tli, in.standby, in.upKey = u.tli, true, u.key
	in.confSyncNames, in.confReadOnly = nil, false
	in.ckptLSN, in.shutdown = lastCheckpoint(in.wal, fork), shutDownRecovery
	in.bump()
	return h.startLocked(inst)
}
