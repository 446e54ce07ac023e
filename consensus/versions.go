package consensus

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/gpagent/gpagent/topology"
)

// The upgrade gate. An agent on an older version ignores JSON fields it
// does not know and rejects command types it does not know (codec.go), so
// it neither stops nor applies a different history, as long as nobody
// writes what it cannot apply. A newer leader therefore writes a command
// type or a field only when every member runs at least the version that
// introduced it (Nomad's and Consul's ServersMeetMinimumVersion). The
// tables below say which version introduced what; a change that adds a
// command type or a field adds its line here, with the new version, and
// in DESIGN.md.

// BaselineVersion is the first version; what it introduced is always
// written, even while a member's version is unknown.
const BaselineVersion = "0.1.0"

// ErrNeedsNewerCluster is returned, before anything is sent to Raft, for a
// command that uses a type or a field some member's version does not know.
var ErrNeedsNewerCluster = errors.New("command needs a newer version on every member")

// commandTypeSince is the version that introduced each command type. It is
// also the list of types this version knows: decodeCommand rejects others.
var commandTypeSince = map[topology.CommandType]string{
	topology.CmdInit:           "0.1.0",
	topology.CmdAddMirrors:     "0.1.0",
	topology.CmdUpdateSegments: "0.1.0",
	topology.CmdSetPaused:      "0.1.0",
	topology.CmdSwitchover:     "0.1.0",
	topology.CmdRecover:        "0.1.0",
}

// commandFieldSince is the version that introduced each JSON field of a
// command, by path ("updates[].rejoin": the rejoin field of an element of
// updates). TestCommandFieldSince_CoversEveryField keeps it complete.
var commandFieldSince = map[string]string{
	"type": "0.1.0", "base_version": "0.1.0", "time": "0.1.0",
	"cluster_id": "0.1.0", "seg_prefix": "0.1.0", "databases": "0.1.0",
	"mirrors": "0.1.0", "mirrors.port_base": "0.1.0", "mirrors.datadirs": "0.1.0", "mirrors.placement": "0.1.0",
	"segments": "0.1.0", "segments[].dbid": "0.1.0", "segments[].content": "0.1.0",
	"segments[].role": "0.1.0", "segments[].preferred_role": "0.1.0", "segments[].mode": "0.1.0",
	"segments[].status": "0.1.0", "segments[].port": "0.1.0", "segments[].hostname": "0.1.0",
	"segments[].address": "0.1.0", "segments[].datadir": "0.1.0",
	"updates": "0.1.0", "updates[].dbid": "0.1.0", "updates[].role": "0.1.0", "updates[].status": "0.1.0",
	"updates[].mode": "0.1.0", "updates[].rejoin": "0.1.0", "updates[].recovery_failed": "0.1.0",
	"updates[].desc": "0.1.0",
	"paused":         "0.1.0", "content": "0.1.0",
	"recover": "0.1.0", "recover[].dbid": "0.1.0", "recover[].kind": "0.1.0", "recover[].move": "0.1.0",
	"recover[].move.hostname": "0.1.0", "recover[].move.address": "0.1.0", "recover[].move.port": "0.1.0",
	"recover[].move.datadir": "0.1.0",
	"parallel":               "0.1.0", "auto": "0.1.0",
}

// requiredVersion is the newest version among those that introduced cmd's
// type and the fields it sets (zero fields are omitted from the JSON, so
// an older agent never sees them). A type or field missing from the
// tables counts as the baseline; the coverage test keeps that from
// happening.
func requiredVersion(cmd topology.Command, typeSince map[topology.CommandType]string, fieldSince map[string]string) (string, error) {
	need := BaselineVersion
	if v, ok := typeSince[cmd.Type]; ok {
		need = newerVersion(need, v)
	}
	b, err := json.Marshal(cmd)
	if err != nil {
		return "", fmt.Errorf("encode %s command: %w", cmd.Type, err)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		return "", fmt.Errorf("decode %s command: %w", cmd.Type, err)
	}
	for _, path := range jsonPaths(doc, "") {
		if v, ok := fieldSince[path]; ok {
			need = newerVersion(need, v)
		}
	}
	return need, nil
}

// jsonPaths lists the paths of every field present in a decoded JSON
// value, elements of arrays under "name[]".
func jsonPaths(v any, prefix string) []string {
	var out []string
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			out = append(out, p)
			out = append(out, jsonPaths(e, p)...)
		}
	case []any:
		for _, e := range x {
			out = append(out, jsonPaths(e, prefix+"[]")...)
		}
	}
	return out
}

// checkVersionGate refuses cmd when min (the lowest version among the
// members) is older than what cmd needs. An unknown min ("", or not
// major.minor.patch) allows only what the baseline introduced.
func checkVersionGate(cmd topology.Command, min string) error {
	return gate(cmd, min, commandTypeSince, commandFieldSince)
}

func gate(cmd topology.Command, min string, typeSince map[topology.CommandType]string, fieldSince map[string]string) error {
	need, err := requiredVersion(cmd, typeSince, fieldSince)
	if err != nil {
		return err
	}
	if !VersionLess(BaselineVersion, need) {
		return nil
	}
	if _, ok := parseVersion(min); ok && !VersionLess(min, need) {
		return nil
	}
	return fmt.Errorf("%w: %s command needs %s, the oldest member runs %q", ErrNeedsNewerCluster, cmd.Type, need, min)
}

// parseVersion reads "major.minor.patch", with an optional leading "v" and
// anything after a "-" or "+" (pre-release, build) ignored.
func parseVersion(s string) ([3]int, bool) {
	var v [3]int
	s = strings.TrimPrefix(s, "v")
	if i := strings.IndexAny(s, "-+"); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return v, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return v, false
		}
		v[i] = n
	}
	return v, true
}

// VersionLess reports whether a is older than b. An unparsable version is
// older than any parsable one.
func VersionLess(a, b string) bool {
	va, oka := parseVersion(a)
	vb, okb := parseVersion(b)
	if !oka || !okb {
		return !oka && okb
	}
	for i := range va {
		if va[i] != vb[i] {
			return va[i] < vb[i]
		}
	}
	return false
}

func newerVersion(a, b string) string {
	if VersionLess(a, b) {
		return b
	}
	return a
}
