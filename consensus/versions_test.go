package consensus

import (
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gpagent/gpagent/topology"
)

// TestCommandFieldSince_CoversEveryField: every JSON field of a command
// has its line in the table, so a new field cannot be added without
// saying which version introduced it.
func TestCommandFieldSince_CoversEveryField(t *testing.T) {
	var want []string
	structPaths(reflect.TypeFor[topology.Command](), "", &want)
	for _, p := range want {
		if _, ok := commandFieldSince[p]; !ok {
			t.Errorf("field %q has no version in commandFieldSince (versions.go, DESIGN.md)", p)
		}
	}
	for p := range commandFieldSince {
		if !slices.Contains(want, p) {
			t.Errorf("commandFieldSince names %q, which is no field of topology.Command", p)
		}
	}
	for typ := topology.CommandType(1); typ < 255; typ++ {
		if _, ok := commandTypeSince[typ]; !ok && !strings.HasPrefix(typ.String(), "command(") {
			t.Errorf("command type %s has no version in commandTypeSince", typ)
		}
	}
}

// structPaths lists the JSON paths of a struct type's fields, as
// jsonPaths names them in a value.
func structPaths(typ reflect.Type, prefix string, out *[]string) {
	for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
		if typ.Kind() == reflect.Slice {
			if typ.Elem().Kind() != reflect.Struct && typ.Elem().Kind() != reflect.Pointer {
				return // a list of scalars has no fields
			}
			prefix += "[]"
		}
		typ = typ.Elem()
	}
	if typ.Kind() != reflect.Struct || typ == reflect.TypeFor[time.Time]() {
		return
	}
	for f := range typ.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		p := name
		if prefix != "" {
			p = prefix + "." + name
		}
		*out = append(*out, p)
		structPaths(f.Type, p, out)
	}
}

// TestVersionGate: a command that uses a type or field introduced after
// the oldest member's version is refused; baseline commands always pass.
func TestVersionGate(t *testing.T) {
	types := maps.Clone(commandTypeSince)
	fields := maps.Clone(commandFieldSince)
	types[topology.CmdSwitchover] = "0.3.0"
	fields["updates[].rejoin"] = "0.2.0"
	rejoin := topology.Command{Type: topology.CmdUpdateSegments, Updates: []topology.SegmentUpdate{{DBID: 2, Rejoin: true, Desc: "x"}}}
	plain := topology.Command{Type: topology.CmdUpdateSegments, Updates: []topology.SegmentUpdate{{DBID: 2, Status: topology.StatusUp, Desc: "x"}}}
	switchover := topology.Command{Type: topology.CmdSwitchover, Content: 1}
	cases := []struct {
		name string
		cmd  topology.Command
		min  string
		ok   bool
	}{
		{"baseline with an old member", plain, "0.1.0", true},
		{"baseline with an unknown version", plain, "dev", true},
		{"new field, old member", rejoin, "0.1.0", false},
		{"new field, all new", rejoin, "0.2.0", true},
		{"new field, unknown version", rejoin, "", false},
		{"new field, pre-release of a newer version", rejoin, "v0.2.1-rc1", true},
		{"new type, member one minor behind", switchover, "0.2.9", false},
		{"new type, all new", switchover, "1.0.0", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := gate(tc.cmd, tc.min, types, fields)
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrNeedsNewerCluster) {
				t.Fatalf("err %v, want ErrNeedsNewerCluster", err)
			}
		})
	}
	// Today every type and field is the baseline's.
	for _, cmd := range []topology.Command{initCommand(), addMirrorsCommand(1), failoverCommand(2), pausedCommand(3, true), rejoin, switchover} {
		if err := checkVersionGate(cmd, "0.1.0"); err != nil {
			t.Errorf("%s refused with a 0.1.0 member: %v", cmd.Type, err)
		}
	}
}

func TestVersionLess(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		less bool
	}{
		{"0.1.0", "0.2.0", true}, {"0.2.0", "0.1.0", false}, {"0.1.0", "0.1.0", false},
		{"0.9.0", "0.10.0", true}, {"v1.2.3", "1.2.4", true}, {"1.0.0-rc1", "1.0.0", false},
		{"", "0.1.0", true}, {"test-a", "0.1.0", true}, {"0.1.0", "junk", false}, {"junk", "junk", false},
	} {
		if got := VersionLess(tc.a, tc.b); got != tc.less {
			t.Errorf("VersionLess(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.less)
		}
	}
}
