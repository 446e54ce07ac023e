package consensus

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/gpagent/gpagent/topology"
)

func TestCodec_RoundTrip(t *testing.T) {
	cases := []struct {
		name string
		cmd  topology.Command
	}{
		{"init", initCommand()},
		{"add mirrors", addMirrorsCommand(3)},
		{"update segments", failoverCommand(2)},
		{"set paused", pausedCommand(9, true)},
		{"resume", pausedCommand(10, false)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := encodeCommand(tc.cmd)
			if err != nil {
				t.Fatal(err)
			}
			if topology.CommandType(b[0]) != tc.cmd.Type || b[1] != commandFormat1 {
				t.Fatalf("header % x, want type %d format 1", b[:2], tc.cmd.Type)
			}
			got, err := decodeCommand(b)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(got, tc.cmd) {
				t.Fatalf("decoded\n%+v\nwant\n%+v", got, tc.cmd)
			}
		})
	}
}

func TestCodec_EncodeRejectsTypeZero(t *testing.T) {
	if _, err := encodeCommand(topology.Command{}); !errors.Is(err, errBadCommand) {
		t.Fatalf("error %v, want errBadCommand", err)
	}
}

func TestCodec_DecodeRejects(t *testing.T) {
	init := byte(topology.CmdInit)
	cases := []struct {
		name string
		data []byte
	}{
		{"nil", nil},
		{"header only short", []byte{init}},
		{"type zero", []byte{0, 1, '{', '}'}},
		{"unknown format", []byte{init, 2, '{', '"', 't', 'y', 'p', 'e', '"', ':', '1', '}'}},
		{"empty payload", []byte{init, 1}},
		{"not json", append([]byte{init, 1}, "hello"...)},
		{"type byte disagrees with payload", append([]byte{byte(topology.CmdSetPaused), 1}, `{"type":1}`...)},
		{"payload without type", append([]byte{init, 1}, `{"base_version":0}`...)},
		{"trailing data", append([]byte{init, 1}, `{"type":1} {}`...)},
		{"wrong field type", append([]byte{init, 1}, `{"type":1,"base_version":"x"}`...)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if cmd, err := decodeCommand(tc.data); !errors.Is(err, errBadCommand) {
				t.Fatalf("decoded %+v, err %v; want errBadCommand", cmd, err)
			}
		})
	}
}

// TestCodec_NewerAgent: what a newer agent may write decodes without
// errBadCommand: an unknown field is ignored, an unknown type is
// errUnknownCommand.
func TestCodec_NewerAgent(t *testing.T) {
	init := byte(topology.CmdInit)
	cmd, err := decodeCommand(append([]byte{init, 1}, `{"type":1,"colour":"red"}`...))
	if err != nil || cmd.Type != topology.CmdInit {
		t.Fatalf("unknown field: decoded %+v, err %v; want the init command", cmd, err)
	}
	_, err = decodeCommand(append([]byte{99, 1}, `{"type":99,"segments":"not a list"}`...))
	if !errors.Is(err, errUnknownCommand) || errors.Is(err, errBadCommand) {
		t.Fatalf("unknown type: err %v; want errUnknownCommand only", err)
	}
}

// FuzzDecodeCommand holds decodeCommand to never panicking, and checks that whatever it accepts
// encodes to a stable form.
func FuzzDecodeCommand(f *testing.F) {
	for _, cmd := range []topology.Command{initCommand(), addMirrorsCommand(1), failoverCommand(2), pausedCommand(3, true)} {
		b, err := encodeCommand(cmd)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{1, 1, '{', '}'})
	f.Add([]byte{3, 1, 'n', 'u', 'l', 'l'})
	f.Fuzz(func(t *testing.T, b []byte) {
		cmd, err := decodeCommand(b)
		if err != nil {
			return
		}
		enc, err := encodeCommand(cmd)
		if err != nil {
			t.Fatalf("accepted %q but cannot encode it: %v", b, err)
		}
		again, err := decodeCommand(enc)
		if err != nil {
			t.Fatalf("re-encoding of %q does not decode: %v", b, err)
		}
		enc2, err := encodeCommand(again)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable:\n%q\n%q (%v)", enc, enc2, err)
		}
	})
}
