package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// A small scale run end to end: 3 server processes and 3 segment hosts in
// a child, an instance crash and a host loss fail over, and the JSON line
// gives every figure or says why not.
func TestScaleSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes and waits for failovers")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	code := run(ctx, []string{"scale", "--agents", "6", "--trials", "1", "--primaries-per-host", "2",
		"--idle", "1s", "--gpagent", "/nonexistent/gpagent"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("gpbench scale: exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if !strings.HasPrefix(lines[0], "agents ") || !strings.HasPrefix(lines[1], "6 ") {
		t.Errorf("no growth table:\n%s", out.String())
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		t.Fatalf("last line is not JSON: %v\n%s", err, out.String())
	}
	if r["agents"] != 6.0 || r["contents"] != 6.0 {
		t.Errorf("agents %v contents %v, want 6 and 6", r["agents"], r["contents"])
	}
	for _, f := range []string{"host_loss_ms", "kill_ms", "raft_entries_per_host_loss", "fenced_spuriously", "agent_rss_mb"} {
		if r[f] == nil {
			t.Errorf("%s not measured: %v\n%s", f, r["reasons"], errOut.String())
		}
	}
	reasons, _ := r["reasons"].(map[string]any)
	for f, v := range r {
		if v == nil && reasons[f] == nil {
			t.Errorf("%s is null with no reason", f)
		}
	}
	if reasons["state_ms"] == nil || !strings.Contains(reasons["state_ms"].(string), "gpagent") {
		t.Errorf("state_ms with no gpagent binary: reason %v", reasons["state_ms"])
	}
}
