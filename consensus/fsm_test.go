package consensus

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/gpagent/gpagent/topology"
)

// memSink is a raft.SnapshotSink over a buffer.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

// applyEntry feeds one encoded command to the FSM as raft would.
func applyEntry(t *testing.T, f *fsm, index uint64, cmd topology.Command) any {
	t.Helper()
	b, err := encodeCommand(cmd)
	if err != nil {
		t.Fatalf("encode %s: %v", cmd.Type, err)
	}
	return f.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: b})
}

// mustApply applies cmd and fails unless it produced a topology.
func mustApply(t *testing.T, f *fsm, index uint64, cmd topology.Command) *topology.Topology {
	t.Helper()
	switch r := applyEntry(t, f, index, cmd).(type) {
	case *topology.Topology:
		return r
	case error:
		t.Fatalf("apply %s: %v", cmd.Type, r)
	default:
		t.Fatalf("apply %s: response %T", cmd.Type, r)
	}
	return nil
}

func drainChanges(f *fsm) {
	select {
	case <-f.changes:
	default:
	}
}

func signalled(f *fsm) bool {
	select {
	case <-f.changes:
		return true
	default:
		return false
	}
}

func persist(t *testing.T, f *fsm) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	defer snap.Release()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatalf("persist: %v", err)
	}
	if !sink.closed || sink.cancelled {
		t.Fatalf("persist left the sink closed=%v cancelled=%v", sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

func TestFSM_ApplySnapshotRestore(t *testing.T) {
	f := newFSM()
	if got := f.current(); got == nil || got.ConfigVersion != 0 || got.Initialized() {
		t.Fatalf("new FSM holds %+v, want the empty topology", got)
	}

	t.Run("apply raises the version and records history", func(t *testing.T) {
		for i, cmd := range []topology.Command{initCommand(), allUpCommand(1), failoverCommand(2)} {
			drainChanges(f)
			got := mustApply(t, f, uint64(i+1), cmd)
			if got != f.current() {
				t.Fatalf("%s: response is not the stored topology", cmd.Type)
			}
			if got.ConfigVersion != uint64(i+1) {
				t.Fatalf("%s: config version %d, want %d", cmd.Type, got.ConfigVersion, i+1)
			}
			if !signalled(f) {
				t.Fatalf("%s: Changes not signalled", cmd.Type)
			}
		}
		if n := len(f.current().History); n != 12 {
			t.Fatalf("history has %d rows, want 12", n)
		}
		if p, _ := f.current().Primary(0); p.DBID != 4 {
			t.Fatalf("content 0 primary is dbid %d, want 4", p.DBID)
		}
	})

	t.Run("snapshot is not disturbed by later applies", func(t *testing.T) {
		snap, err := f.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		before := f.current()
		mustApply(t, f, 4, pausedCommand(3, true))
		sink := &memSink{}
		if err := snap.Persist(sink); err != nil {
			t.Fatal(err)
		}
		got, err := readSnapshot(bytes.NewReader(sink.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, before) {
			t.Fatalf("snapshot holds %+v, want the value at capture %+v", got, before)
		}
	})

	t.Run("restore into a fresh FSM gives the same topology", func(t *testing.T) {
		data := persist(t, f)
		g := newFSM()
		if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			t.Fatalf("restore: %v", err)
		}
		if !reflect.DeepEqual(g.current(), f.current()) {
			t.Fatalf("restored %+v\nwant %+v", g.current(), f.current())
		}
		if !signalled(g) {
			t.Fatal("restore did not signal Changes")
		}
		// The restored FSM carries on from the same version.
		if got := mustApply(t, g, 5, pausedCommand(4, false)); got.ConfigVersion != 5 {
			t.Fatalf("apply after restore: version %d, want 5", got.ConfigVersion)
		}
	})

	t.Run("restore discards previous state", func(t *testing.T) {
		empty := persist(t, newFSM())
		if err := f.Restore(io.NopCloser(bytes.NewReader(empty))); err != nil {
			t.Fatal(err)
		}
		if got := f.current(); got.ConfigVersion != 0 || got.Initialized() {
			t.Fatalf("after restoring an empty snapshot: %+v", got)
		}
	})
}

func TestFSM_RejectedCommandChangesNothing(t *testing.T) {
	cases := []struct {
		name string
		cmd  topology.Command
		want error
	}{
		{"stale base version", allUpCommand(0), topology.ErrStale},
		{"base version from the future", allUpCommand(7), topology.ErrStale},
		{"second init", func() topology.Command { c := initCommand(); c.BaseVersion = 1; return c }(), topology.ErrInvalid},
		{"unknown dbid", topology.Command{Type: topology.CmdUpdateSegments, BaseVersion: 1, Updates: []topology.SegmentUpdate{{DBID: 99, Status: topology.StatusUp}}}, topology.ErrInvalid},
		{"unknown command type", topology.Command{Type: 200, BaseVersion: 1}, topology.ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFSM()
			mustApply(t, f, 1, initCommand())
			before := f.current()
			drainChanges(f)
			resp := applyEntry(t, f, 2, tc.cmd)
			err, ok := resp.(error)
			if !ok {
				t.Fatalf("response %T %+v, want an error", resp, resp)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if f.current() != before {
				t.Fatal("a rejected command replaced the topology")
			}
			if signalled(f) {
				t.Fatal("a rejected command signalled Changes")
			}
		})
	}
}

// TestFSM_UndecodableEntryRefused: an entry the FSM cannot read (an
// unknown format of a newer agent, a field's JSON type it changed, or no
// command at all) is refused with an error naming the entry, and changes
// nothing; Apply never panics, which would stop every agent of this
// version at once.
func TestFSM_UndecodableEntryRefused(t *testing.T) {
	cases := map[string][]byte{
		"empty":              nil,
		"unknown format":     {byte(topology.CmdInit), 9, '{', '}'},
		"garbage json":       {byte(topology.CmdInit), 1, 'x'},
		"field of new type":  append([]byte{byte(topology.CmdSetPaused), 1}, `{"type":4,"base_version":1,"paused":"yes"}`...),
		"type byte disagree": append([]byte{byte(topology.CmdSetPaused), 1}, `{"type":1}`...),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFSM()
			mustApply(t, f, 1, initCommand())
			before := f.current()
			drainChanges(f)
			var resp any
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("Apply panicked: %v", r)
					}
				}()
				resp = f.Apply(&raft.Log{Index: 7, Type: raft.LogCommand, Data: data})
			}()
			err, ok := resp.(error)
			if !ok || !strings.Contains(err.Error(), "raft entry 7") {
				t.Fatalf("response %T %v: want an error naming the entry", resp, resp)
			}
			if f.current() != before || signalled(f) {
				t.Fatal("a refused entry changed the state")
			}
		})
	}
}

func TestFSM_RestoreRejectsBadSnapshots(t *testing.T) {
	cases := []struct {
		name, data, want string
	}{
		{"empty", "", "read header"},
		{"no header", `{"config_version":1}`, "read header"},
		{"header not json", "format 1\n{}", "header"},
		{"unknown format", "{\"format\":2}\n{}", "unknown format 2"},
		{"unknown header field", "{\"format\":1,\"x\":1}\n{}", "unknown field"},
		{"invalid body", "{\"format\":1}\n{\"segments\":[{\"dbid\":1,\"role\":\"p\"},{\"dbid\":1,\"role\":\"p\"}]}", "invalid topology"},
		{"truncated body", "{\"format\":1}\n{\"config_version\":1", "format 1 body"},
		{"trailing data", "{\"format\":1}\n{} {}", "after the JSON value"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFSM()
			before := f.current()
			err := f.Restore(io.NopCloser(strings.NewReader(tc.data)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if f.current() != before || signalled(f) {
				t.Fatal("a failed restore changed the state")
			}
		})
	}
}

// Watch's channel closes at the next change, for every reader holding it,
// and a channel taken after the change waits for the one after.
func TestFSM_WatchClosesAtTheNextChange(t *testing.T) {
	f := newFSM()
	a, b := f.watchNext(), f.watchNext()
	select {
	case <-a:
		t.Fatal("closed before any change")
	default:
	}
	f.swap(&topology.Topology{ConfigVersion: 1})
	for _, ch := range []<-chan struct{}{a, b} {
		select {
		case <-ch:
		default:
			t.Fatal("a reader's channel is not closed after the change")
		}
	}
	select {
	case <-f.watchNext():
		t.Fatal("a channel taken after the change is closed already")
	default:
	}
}
