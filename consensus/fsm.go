package consensus

import (
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/gpagent/gpagent/topology"
)

// fsm is the Raft state machine: the committed topology and nothing else.
//
// It is deliberately thin. Apply decodes the entry, calls the pure
// topology.Apply and swaps an immutable pointer. It reads no clock (the
// leader stamped the command's time), does no I/O and starts no
// goroutine, so every replica that applies the same entries holds the same
// topology (rule 6).
type fsm struct {
	// state is never nil and never modified in place: readers may keep
	// the value they loaded for as long as they like.
	state atomic.Pointer[topology.Topology]
	// changes is signalled, coalescing and without blocking, after every
	// applied change and restore.
	changes chan struct{}
	// watchMu guards watch, the channel closed at the next change: any
	// number of readers wait on it (the blocking topology queries of
	// client agents), where changes has one reader (the executor).
	watchMu sync.Mutex
	watch   chan struct{}
	// views follows every applied topology (viewsMu): the last version
	// that changed each host's view, exactly (topology.ViewChanges).
	viewsMu sync.Mutex
	views   topology.ViewChanges
	// log reports refused entries (nil: discarded).
	log *slog.Logger
}

var _ raft.FSM = (*fsm)(nil)

func newFSM() *fsm {
	f := &fsm{changes: make(chan struct{}, 1), watch: make(chan struct{}), log: slog.New(slog.DiscardHandler)}
	f.state.Store(&topology.Topology{})
	return f
}

// current returns the committed topology.
func (f *fsm) current() *topology.Topology { return f.state.Load() }

// Apply applies one committed entry. The response is the new
// *topology.Topology, or the error with which topology.Apply rejected the
// command (stale base version, invalid change) or with which decodeEntry
// refused an entry it cannot read (a newer gpagent's, or not a command);
// a rejected command changes nothing and signals nothing, and no entry
// makes Apply panic.
func (f *fsm) Apply(l *raft.Log) any {
	cmd, err := decodeEntry(l.Index, l.Data)
	if err != nil {
		f.log.Error("raft entry refused: this agent cannot read it (written by a newer gpagent?); the topology is unchanged", "index", l.Index, "err", err)
		return err
	}
	prev := f.state.Load()
	next, err := topology.Apply(prev, cmd)
	if err != nil {
		return err
	}
	f.follow(prev, next)
	f.swap(next)
	return next
}

// Snapshot captures the current pointer. The value is immutable, so
// Persist can write it while Apply carries on (raft's contract: Snapshot
// is quick and on the FSM goroutine, Persist is slow and off it).
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{topology: f.state.Load()}, nil
}

// Restore replaces the whole state with the snapshot's. Raft closes the
// reader.
func (f *fsm) Restore(r io.ReadCloser) error {
	t, err := readSnapshot(r)
	if err != nil {
		return err
	}
	f.follow(nil, t) // every view changes
	f.swap(t)
	return nil
}

// follow records next, applied after prev, in the views' versions, before
// anyone can load next: a reader that sees next asks of a record that
// holds it.
func (f *fsm) follow(prev, next *topology.Topology) {
	f.viewsMu.Lock()
	f.views.Apply(prev, next)
	f.viewsMu.Unlock()
}

// viewSince is the version from which host's view of the latest applied
// topology has been what it is (topology.ViewChanges.Since).
func (f *fsm) viewSince(host string) uint64 {
	f.viewsMu.Lock()
	defer f.viewsMu.Unlock()
	return f.views.Since(host)
}

// rolesSince is the version from which host's roles in the latest
// applied topology have been what they are (topology.ViewChanges.RolesSince).
func (f *fsm) rolesSince(host string) uint64 {
	f.viewsMu.Lock()
	defer f.viewsMu.Unlock()
	return f.views.RolesSince(host)
}

// watchNext returns a channel closed at the next change after the call.
func (f *fsm) watchNext() <-chan struct{} {
	f.watchMu.Lock()
	defer f.watchMu.Unlock()
	return f.watch
}

func (f *fsm) swap(t *topology.Topology) {
	f.state.Store(t)
	f.watchMu.Lock()
	close(f.watch)
	f.watch = make(chan struct{})
	f.watchMu.Unlock()
	select {
	case f.changes <- struct{}{}:
	default: // a signal is already pending; the reader will load the latest value
	}
}
