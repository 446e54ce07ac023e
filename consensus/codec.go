package consensus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/gpagent/gpagent/topology"
)

// commandFormat is the version of the payload encoding that follows the
// type byte. A new format gets a new number and a new case in
// decodeCommand; the old case stays, because entries written in it live in
// every replica's log until the next snapshot compacts them away.
const commandFormat1 byte = 1

// commandHeaderLen is the type byte plus the format byte.
const commandHeaderLen = 2

// errBadCommand marks a Raft entry that cannot be decoded.
var errBadCommand = errors.New("malformed command entry")

// errUnknownCommand marks an entry of a command type this version does not
// know: a newer agent wrote it. It is a rejection, not a malformed entry.
var errUnknownCommand = errors.New("unknown command type")

// encodeCommand lays a command out as a Raft entry: one type byte
// (topology.CommandType), one format byte, then the JSON of the command.
// The type byte lets a reader of the raw log tell entries apart without
// parsing JSON; the JSON keeps the history readable.
func encodeCommand(cmd topology.Command) ([]byte, error) {
	if cmd.Type == 0 {
		return nil, fmt.Errorf("encode command: %w: command type 0", errBadCommand)
	}
	payload, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode %s command: %w", cmd.Type, err)
	}
	out := make([]byte, 0, commandHeaderLen+len(payload))
	out = append(out, byte(cmd.Type), commandFormat1)
	return append(out, payload...), nil
}

// decodeCommand is the inverse of encodeCommand. It never panics, whatever
// the bytes (FuzzDecodeCommand holds it to that); the FSM refuses an
// entry it cannot decode, see decodeEntry.
//
// What a newer agent may add is tolerated, so that a rolling upgrade does
// not stop the agents still on the old version: a JSON field this version
// does not know is ignored, and a command type it does not know decodes
// to an errUnknownCommand error (its payload is not read at all: a newer
// command may give a known field name another JSON type). Newer agents
// write neither while an older one is a member (see versions.go), so
// every replica still applies the same history (rule 6). Malformed bytes
// (a short header, an unknown format, no JSON, trailing data, a type byte
// that disagrees with the payload) are errBadCommand.
func decodeCommand(b []byte) (topology.Command, error) {
	if len(b) < commandHeaderLen {
		return topology.Command{}, fmt.Errorf("%w: %d bytes, shorter than the header", errBadCommand, len(b))
	}
	typ, format := topology.CommandType(b[0]), b[1]
	if typ == 0 {
		return topology.Command{}, fmt.Errorf("%w: command type 0", errBadCommand)
	}
	switch format {
	case commandFormat1:
		if _, ok := commandTypeSince[typ]; !ok {
			return topology.Command{}, fmt.Errorf("%w: %w: %s (written by a newer gpagent?)", topology.ErrInvalid, errUnknownCommand, typ)
		}
		return decodeCommandV1(typ, b[commandHeaderLen:])
	default:
		return topology.Command{}, fmt.Errorf("%w: %s command in unknown format %d (written by a newer gpagent?)", errBadCommand, typ, format)
	}
}

func decodeCommandV1(typ topology.CommandType, payload []byte) (topology.Command, error) {
	var cmd topology.Command
	if err := decodeJSON(payload, &cmd, false); err != nil {
		return topology.Command{}, fmt.Errorf("%w: %s command: %w", errBadCommand, typ, err)
	}
	if cmd.Type != typ {
		return topology.Command{}, fmt.Errorf("%w: type byte says %s, payload says %s", errBadCommand, typ, cmd.Type)
	}
	return cmd, nil
}

// decodeEntry is decodeCommand for the FSM. It never panics: an entry
// it cannot read (a command type, a format or a field's JSON type of a
// newer gpagent, or bytes that are not a command at all) comes back as an
// error, which Apply returns as the entry's response: refused, nothing
// changed. Every replica of this version holds the same bytes and refuses
// them alike, so they keep one history (rule 6); the upgrade gate
// (versions.go) keeps a newer leader from writing such an entry while an
// older agent is a member. A panic here would stop every agent of the
// older version at once, the whole cluster in a rolling upgrade.
func decodeEntry(index uint64, b []byte) (topology.Command, error) {
	cmd, err := decodeCommand(b)
	if err != nil {
		return topology.Command{}, fmt.Errorf("raft entry %d: %w", index, err)
	}
	return cmd, nil
}

// decodeStrictJSON decodes exactly one JSON value into v, refusing unknown
// fields and anything after the value.
func decodeStrictJSON(b []byte, v any) error { return decodeJSON(b, v, true) }

// decodeJSON decodes exactly one JSON value into v, refusing anything
// after the value, and unknown fields when strict.
func decodeJSON(b []byte, v any, strict bool) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON value")
	}
	return nil
}
