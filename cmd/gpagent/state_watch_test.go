package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

// TestWatchState: a drawing for each change, none for a repeat, and the
// watch ends without error when interrupted.
func TestWatchState(t *testing.T) {
	seq := []string{"version 1\n", "version 1\n", "version 2\n", "version 2\n", "version 3\n"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	fetch := func(context.Context) string {
		s := seq[min(calls, len(seq)-1)]
		calls++
		if calls == len(seq)+1 {
			cancel() // as Ctrl-C
		}
		return s
	}
	var out bytes.Buffer
	if err := watchState(ctx, &out, time.Millisecond, fetch); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, v := range []string{"version 1", "version 2", "version 3"} {
		if n := strings.Count(got, v); n != 1 {
			t.Errorf("%q drawn %d times, want once:\n%s", v, n, got)
		}
	}
	if strings.Contains(got, "\x1b[") {
		t.Errorf("escape codes into a non-terminal:\n%q", got)
	}
}

func TestDatabaseStateLine(t *testing.T) {
	s := &api.State{Segments: []topology.Segment{
		{DBID: 1, Content: -1, Role: topology.RolePrimary, PreferredRole: topology.RolePrimary, Status: topology.StatusUp},
		{DBID: 2, Content: 0, Role: topology.RoleMirror, PreferredRole: topology.RolePrimary, Mode: topology.ModeSynced, Status: topology.StatusUp},
		{DBID: 3, Content: 0, Role: topology.RolePrimary, PreferredRole: topology.RoleMirror, Mode: topology.ModeSynced, Status: topology.StatusUp},
	}}
	var b bytes.Buffer
	if err := printSummary(&b, s); err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(b.String(), "\n")
	if want := "Database State: Unbalanced (2 instances not in preferred role); next: gpagent recoverseg -r"; first != want {
		t.Errorf("first line %q, want %q", first, want)
	}
}

// `state --json` printed from the agent's encoding (indentStateJSON) is
// byte for byte what printing the decoded state gives, stale flag and all.
func TestIndentStateJSON_AsPrintStateJSON(t *testing.T) {
	for _, stale := range []bool{false, true} {
		s := &api.State{ConfigVersion: 9, ClusterID: "c1", Leader: "mdw", Stale: stale, Paused: true,
			Segments: []topology.Segment{
				{DBID: 2, Content: 0, Role: topology.RolePrimary, PreferredRole: topology.RolePrimary, Mode: topology.ModeSynced, Status: topology.StatusUp, Hostname: "sdw1", Address: "10.0.0.1", Port: 6000, DataDir: "/data/p<0>&\n  \"stale\": true"}, // no top-level key, whatever it holds
				{DBID: 3, Content: 0, Role: topology.RoleMirror, PreferredRole: topology.RoleMirror, Mode: topology.ModeSynced, Status: topology.StatusUp, Hostname: "sdw2", Address: "10.0.0.2", Port: 7000, DataDir: "/data/m0"},
			},
			Pending: []int{3}, Switchovers: []topology.Switchover{{Content: 0, From: 2, To: 3, Version: 8}},
			Recoveries: []topology.Recovery{{DBID: 3, Kind: topology.RecoveryIncremental, Job: 4}}}
		raw, err := json.Marshal(s) // as the agent encodes it
		if err != nil {
			t.Fatal(err)
		}
		got, gotStale, err := indentStateJSON(raw)
		if err != nil {
			t.Fatal(err)
		}
		// An agent that indents it itself (indent=true): printed as is.
		indented, err := api.IndentState(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got2, stale2, err := indentStateJSON(indented); err != nil || !bytes.Equal(got2, got) || stale2 != gotStale {
			t.Fatalf("stale %v: the agent's indented answer printed differently (err %v, stale %v):\n%s\nwant\n%s", stale, err, stale2, got2, got)
		}
		var want bytes.Buffer
		decoded := &api.State{}
		if err := json.Unmarshal(raw, decoded); err != nil {
			t.Fatal(err)
		}
		if err := printStateJSON(&want, decoded, false); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) || gotStale != stale {
			t.Fatalf("stale %v: printed from the encoding:\n%s\nfrom the decoded state:\n%s\n(stale read %v)", stale, got, want.Bytes(), gotStale)
		}
	}
}
