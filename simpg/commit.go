package simpg

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

var (
	// ErrCommitIndeterminate: the client cannot know whether its commit
	// happened. Its ctx ended while the commit waited for the synchronous
	// standby (the commit record stays in the WAL and is visible locally:
	// PostgreSQL's "canceling wait for synchronous replication"), or the
	// server died or shut down under it, or never answered (hung).
	ErrCommitIndeterminate = errors.New("simpg: commit outcome unknown")
	// ErrNotRunning: no server listens there (connection refused).
	ErrNotRunning = errors.New("simpg: server not running")
	// ErrReadOnly: the server is a standby, or fenced (read-only).
	ErrReadOnly = errors.New("simpg: cannot commit in a read-only transaction")
)

// Commit is one client transaction committed on the instance at
// address:port, as with synchronous_commit = on: the commit record is
// appended and flushed locally, then, if synchronous_standby_names names
// standbys, the call waits until the synchronous standby has flushed it.
// It returns the commit id and the commit's LSN once acknowledged.
func (w *World) Commit(ctx context.Context, address string, port int) (id, lsn uint64, err error) {
	return w.commit(ctx, address, port, true)
}

// CommitLocal is Commit as with synchronous_commit = local (or off): the
// commit is acknowledged once flushed locally, whatever
// synchronous_standby_names says. A client may set that for its own
// session; only an instance that cannot write at all keeps it from
// committing beside a promoted mirror.
func (w *World) CommitLocal(ctx context.Context, address string, port int) (id, lsn uint64, err error) {
	return w.commit(ctx, address, port, false)
}

func (w *World) commit(ctx context.Context, address string, port int, syncRep bool) (id, lsn uint64, err error) {
	// Only in's lock: what the commit reads of its standbys
	// (released) the walreceivers write into in.
	in := w.get(address, port)
	ls := w.lockOne(in)
	for in.running && in.hung {
		ch := in.changed
		ls.unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, 0, fmt.Errorf("commit on %s: no answer: %w (%w)", in.key, ErrCommitIndeterminate, ctx.Err())
		}
		ls.relock()
	}
	switch {
	case !in.running:
		ls.unlock()
		return 0, 0, fmt.Errorf("commit on %s: %w", in.key, ErrNotRunning)
	case in.inRecovery || in.readOnly:
		ls.unlock()
		return 0, 0, fmt.Errorf("commit on %s: %w", in.key, ErrReadOnly)
	}
	id = w.nextCommit.Add(1)
	r := w.appendRecord(in, KindCommit, id)
	n, gen, delay := len(in.wal), in.runGen, in.slowDisk
	ls.unlock()

	if delay > 0 {
		// The local flush is not cancellable by the client.
		select {
		case <-time.After(delay):
		case <-w.closed:
		}
	}
	ls.relock()
	defer ls.unlock()
	lost := func(why string) (uint64, uint64, error) {
		return 0, 0, fmt.Errorf("commit %d on %s: %s: %w", id, in.key, why, ErrCommitIndeterminate)
	}
	if in.runGen != gen {
		return lost("server closed the connection")
	}
	in.flushN = max(in.flushN, n)
	in.bump()
	if !syncRep || len(in.syncNames) == 0 {
		w.acked(in, id)
		return id, r.LSN, nil
	}
	for in.released < r.LSN {
		ch := in.changed
		ls.unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			ls.relock()
			return lost("canceling wait for synchronous replication (" + ctx.Err().Error() + ")")
		case <-w.closed:
			ls.relock()
			return lost("world closed")
		}
		ls.relock()
		if in.runGen != gen {
			return lost("server closed the connection")
		}
	}
	w.acked(in, id)
	return id, r.LSN, nil
}

// Ack is one commit acknowledged to its client: by which instance, on
// which timeline, in the order the World acknowledged them. A checker
// finds two writable primaries of one content as an acknowledgement on a
// timeline older than one already acknowledged on.
type Ack struct {
	Seq      int // position in the World's acknowledgement order, from 0
	Commit   uint64
	Instance string // address:port
	DBID     int
	Timeline int
	At       time.Time
}

// acked records an acknowledgement, with in's lock held: Seq is the true
// order of acknowledgements across instances (an instance's promotion or
// fence holds its lock too).
func (w *World) acked(in *instance, id uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.acks = append(w.acks, Ack{Seq: len(w.acks), Commit: id, Instance: in.key, DBID: in.dbid, Timeline: in.tli, At: time.Now()})
}

// Acks returns the acknowledgements from position from on, in order.
func (w *World) Acks(from int) []Ack {
	w.mu.Lock()
	defer w.mu.Unlock()
	if from >= len(w.acks) {
		return nil
	}
	return slices.Clone(w.acks[from:])
}

// Has reports whether the instance at address:port holds commit id
// durably (in its flushed WAL): it survives a crash there.
func (w *World) Has(address string, port int, id uint64) bool {
	in := w.get(address, port)
	defer w.lockOne(in).unlock()
	for _, r := range in.wal[:in.flushN] {
		if r.Commit == id {
			return true
		}
	}
	return false
}

// Commits returns the commit ids the instance at address:port holds
// durably, in WAL order.
func (w *World) Commits(address string, port int) []uint64 {
	in := w.get(address, port)
	defer w.lockOne(in).unlock()
	var ids []uint64
	for _, r := range in.wal[:in.flushN] {
		if r.Commit != 0 {
			ids = append(ids, r.Commit)
		}
	}
	return ids
}
