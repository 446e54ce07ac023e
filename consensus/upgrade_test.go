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
