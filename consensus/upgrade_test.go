package consensus

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/gpagent/gpagent/topology"
)

// withExtraField returns cmd's entry with one more JSON field in its
// payload, as a newer agent that added a field would write it.
func withExtraField(t *testing.T, cmd topology.Command) []byte {
	t.Helper()
	b, err := encodeCommand(cmd)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b[commandHeaderLen:], &m); err != nil {
		t.Fatal(err)
	}
	m["field_of_a_newer_agent"] = map[string]any{"x": 1}
	payload, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return append(b[:commandHeaderLen:commandHeaderLen], payload...)
}

// TestFSM_CommandOfANewerAgent: an agent still on the old version applies
// what a newer leader wrote. An extra field is ignored; a command type it
// does not know is rejected (the same error on every old replica, nothing
// changed), never a panic that stops the agent.
func TestFSM_CommandOfANewerAgent(t *testing.T) {
	f := newFSM()
	mustApply(t, f, 1, initCommand())

	t.Run("extra field", func(t *testing.T) {
		drainChanges(f)
		resp := f.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: withExtraField(t, pausedCommand(1, true))})
		next, ok := resp.(*topology.Topology)
		if !ok {
			t.Fatalf("response %T %v, want the new topology", resp, resp)
		}
		if !next.Paused || next.ConfigVersion != 2 || !signalled(f) {
			t.Fatalf("after a command with an extra field: paused %v version %d", next.Paused, next.ConfigVersion)
		}
	})

	t.Run("unknown type", func(t *testing.T) {
		before := f.current()
		drainChanges(f)
		// Its payload reuses a known field name with another JSON type, as
		// a newer command may: the decoder must not trip over it.
		data := append([]byte{200, commandFormat1}, `{"type":200,"base_version":2,"content":"all","new":[1,2]}`...)
		var resp any
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("Apply of an unknown command type panicked: %v", r)
				}
			}()
			resp = f.Apply(&raft.Log{Index: 3, Type: raft.LogCommand, Data: data})
		}()
		err, ok := resp.(error)
		if !ok {
			t.Fatalf("response %T %v, want an error", resp, resp)
		}
		if !errors.Is(err, topology.ErrInvalid) || !errors.Is(err, errUnknownCommand) || !strings.Contains(err.Error(), "command(200)") {
			t.Fatalf("error %v: want ErrInvalid and errUnknownCommand naming command(200)", err)
		}
		if f.current() != before || signalled(f) {
			t.Fatal("an unknown command type changed the state")
		}
	})
}

// TestSnapshot_GoldenRefusedWhenInvalid: a snapshot whose topology breaks
// a structural rule (here content 0 with two primaries) is refused with an
// error naming the fault, and the FSM keeps what it had.
func TestSnapshot_GoldenRefusedWhenInvalid(t *testing.T) {
	data, err := os.ReadFile("testdata/snapshot-v1-two-primaries.golden")
	if err != nil {
		t.Fatal(err)
	}
	f := newFSM()
	mustApply(t, f, 1, initCommand())
	before := f.current()
	drainChanges(f)
	err = f.Restore(io.NopCloser(bytes.NewReader(data)))
	if !errors.Is(err, topology.ErrInvalid) || !strings.Contains(err.Error(), "content 0 has two primaries") {
		t.Fatalf("restore of an invalid snapshot: %v; want ErrInvalid naming content 0's two primaries", err)
	}
	if f.current() != before || signalled(f) {
		t.Fatal("a refused snapshot changed the state")
	}
}

// TestSnapshot_GoldenOfANewerAgent: a snapshot with a field this version
// does not know (a newer leader's InstallSnapshot) restores, the field
// ignored.
func TestSnapshot_GoldenOfANewerAgent(t *testing.T) {
	data, err := os.ReadFile("testdata/snapshot-v1-newer-field.golden")
	if err != nil {
		t.Fatal(err)
	}
	f := newFSM()
	if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if got := f.current(); got.ClusterID != "c-test" || got.ConfigVersion != 4 || len(got.Segments) != 5 {
		t.Fatalf("restored %+v", got)
	}
}

// TestUpgrade_NewerLogOnOlderFSMAndBack: a rolling upgrade both ways. An
// agent of this version (the older) applies a log a newer leader wrote:
// commands with fields it does not know, a command type it does not
// know, an entry in a format it does not know, a field whose JSON type
// changed. It never panics, applies what it can read, refuses the rest
// with nothing changed. Then back: its snapshot, with a field of the
// newer version added as the newer agent's snapshot would carry it, is
// restored (Validate run) by the other side, which applies the rest of
// the log and ends where the older one does.
func TestUpgrade_NewerLogOnOlderFSMAndBack(t *testing.T) {
	entry := func(cmd topology.Command) []byte { return withExtraField(t, cmd) }
	newerLog := [][]byte{
		entry(initCommand()),
		entry(pausedCommand(1, true)),
		append([]byte{200, commandFormat1}, `{"type":200,"base_version":2,"content":"all"}`...),
		append([]byte{byte(topology.CmdSetPaused), 9}, `{"type":4,"base_version":2,"paused":false}`...),
		append([]byte{byte(topology.CmdSetPaused), commandFormat1}, `{"type":4,"base_version":2,"paused":{"until":"later"}}`...),
		entry(pausedCommand(2, false)),
		entry(failoverCommand(3)),
	}
	apply := func(f *fsm, from int, log [][]byte) (applied, refused int) {
		for i, data := range log {
			var resp any
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("entry %d: Apply panicked: %v", from+i, r)
					}
				}()
				resp = f.Apply(&raft.Log{Index: uint64(from + i), Type: raft.LogCommand, Data: data})
			}()
			switch r := resp.(type) {
			case *topology.Topology:
				applied++
			case error:
				refused++
			default:
				t.Fatalf("entry %d: response %T", from+i, r)
			}
		}
		return applied, refused
	}
	older := newFSM()
	applied, refused := apply(older, 1, newerLog)
	if applied != 4 || refused != 3 {
		t.Fatalf("older FSM: %d applied, %d refused; want 4 and 3", applied, refused)
	}
	got := older.current()
	if got.ConfigVersion != 4 || got.Paused || len(got.Segments) != 5 {
		t.Fatalf("older FSM after the newer log: version %d paused %v %d segments", got.ConfigVersion, got.Paused, len(got.Segments))
	}

	// And back: a snapshot taken halfway, as the newer agent would send
	// it (one more field), restored on the other side, which replays the
	// rest of the log.
	half := newFSM()
	apply(half, 1, newerLog[:3])
	var snap map[string]any
	if err := json.Unmarshal(bytes.SplitN(persist(t, half), []byte("\n"), 2)[1], &snap); err != nil {
		t.Fatal(err)
	}
	snap["field_of_a_newer_agent"] = []int{1, 2}
	body, _ := json.Marshal(snap)
	other := newFSM()
	if err := other.Restore(io.NopCloser(bytes.NewReader(append([]byte("{\"format\":1}\n"), body...)))); err != nil {
		t.Fatalf("restore of the newer snapshot: %v", err)
	}
	apply(other, 4, newerLog[3:])
	a, _ := json.Marshal(older.current())
	b, _ := json.Marshal(other.current())
	if !bytes.Equal(a, b) {
		t.Fatalf("the two sides differ after the same log:\n%s\n%s", a, b)
	}

	// A snapshot whose topology breaks a rule is refused on restore
	// (Validate runs), whatever version wrote it.
	snap["segments"] = append(snap["segments"].([]any), snap["segments"].([]any)[1])
	body, _ = json.Marshal(snap)
	if err := newFSM().Restore(io.NopCloser(bytes.NewReader(append([]byte("{\"format\":1}\n"), body...)))); !errors.Is(err, topology.ErrInvalid) {
		t.Fatalf("restore of a snapshot with a duplicated instance: %v, want ErrInvalid", err)
	}
}
