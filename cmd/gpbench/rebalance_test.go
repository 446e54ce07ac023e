package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestLongestAckGap(t *testing.T) {
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(msec int) time.Time { return base.Add(time.Duration(msec) * time.Millisecond) }
	ack := func(start, end int) op { return op{start: at(start), end: at(end), ok: true} }
	fail := func(start, end int) op { return op{start: at(start), end: at(end)} }
	ops := []op{
		ack(0, 5), ack(10, 15), ack(20, 25), // steady before the window
		ack(30, 35),                   // last ack before the window [100, 900]
		fail(40, 300), fail(310, 320), // failures inside it
		ack(330, 400),                 // gap 35 -> 400 = 365
		ack(410, 415), fail(420, 800), // ...
		ack(810, 1000), // gap 415 -> 1000 = 585, ends after t1
		ack(1010, 1015),
	}
	gap, closed := longestAckGap(ops, at(100), at(900), at(2000))
	if gap != 585*time.Millisecond || !closed {
		t.Errorf("gap %s closed %v, want 585ms true", gap, closed)
	}
	if n := failedIn(ops, at(100), at(900)); n != 2 {
		t.Errorf("failedIn = %d, want 2 (the one at 40 started before the window)", n)
	}
	// A gap spanning the whole window counts.
	gap, closed = longestAckGap([]op{ack(0, 5), ack(10, 20), ack(900, 910)}, at(100), at(200), at(2000))
	if gap != 890*time.Millisecond || !closed {
		t.Errorf("spanning gap %s closed %v, want 890ms true", gap, closed)
	}
	// Writes never came back: the gap runs to end, not closed.
	gap, closed = longestAckGap([]op{ack(0, 5), fail(10, 20)}, at(100), at(200), at(1000))
	if gap != 995*time.Millisecond || closed {
		t.Errorf("open gap %s closed %v, want 995ms false", gap, closed)
	}
	// No op at all.
	gap, closed = longestAckGap(nil, at(100), at(200), at(300))
	if gap != 200*time.Millisecond || closed {
		t.Errorf("no ops: gap %s closed %v, want 200ms false", gap, closed)
	}
}

func TestLongestAckGapNoAckAfterWindow(t *testing.T) {
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(msec int) time.Time { return base.Add(time.Duration(msec) * time.Millisecond) }
	ops := []op{{start: at(0), end: at(5), ok: true}, {start: at(500), end: at(510), ok: true}}
	// Window [600, 700] after every ack: the gap from the last ack runs
	// to end.
	gap, closed := longestAckGap(ops, at(600), at(700), at(2000))
	if gap != 1490*time.Millisecond || closed {
		t.Errorf("gap %s closed %v, want 1.49s false", gap, closed)
	}
}

func TestRebalanceSummary(t *testing.T) {
	lanes := func(u0, u1 time.Duration, lost, sb int) []laneResult {
		return []laneResult{{content: 0, unavailable: u0, lost: lost, splitBrain: sb, closed: true}, {content: 1, unavailable: u1, closed: true}}
	}
	trials := []rebalanceTrial{
		{failoverUnavailable: 200 * time.Millisecond, rebalance: 1800 * time.Millisecond, lanes: lanes(360*time.Millisecond, 30*time.Millisecond, 0, 0)},
		{failoverUnavailable: 250 * time.Millisecond, rebalance: 2000 * time.Millisecond, lanes: lanes(400*time.Millisecond, 500*time.Millisecond, 1, 2)},
		{failoverUnavailable: 150 * time.Millisecond, rebalance: 1700 * time.Millisecond, lanes: lanes(300*time.Millisecond, 20*time.Millisecond, 0, 0)},
	}
	want := `{"trials":3,"unavailable_ms":{"p50":360,"p90":500,"max":500},"lost_acked_writes":1,"split_brain_events":2,` +
		`"by_content":{"0":{"p50":360,"p90":400,"max":400},"1":{"p50":30,"p90":500,"max":500}},` +
		`"rebalance_ms":{"p50":1800,"p90":2000,"max":2000},"failover_unavailable_ms":{"p50":200,"p90":250,"max":250}}`
	if got := summarizeRebalance(trials).jsonLine(); got != want {
		t.Errorf("summary\n got %s\nwant %s", got, want)
	}
	if got := summarizeRebalance(nil).jsonLine(); !strings.HasPrefix(got, `{"trials":0,"unavailable_ms":{"p50":0,"p90":0,"max":0},"lost_acked_writes":0,"split_brain_events":0,"by_content":{}`) {
		t.Errorf("empty summary: %s", got)
	}
	line := trials[1].line(2, 3)
	if !strings.HasPrefix(line, "trial 2/3: rebalance (recoverseg -r -a) took 2000 ms; unavailable content 0 400 ms, content 1 500 ms, content 0 lost 1, content 0 SPLIT BRAIN at 2 polls, content 1 lost 0") {
		t.Errorf("trial line %q", line)
	}
}

func TestRebalanceUsage(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"rebalance", "-h"}, 0, "usage: gpbench rebalance"},
		{[]string{"rebalance", "--trials", "0"}, 1, "--trials"},
		{[]string{"rebalance", "--hosts", "0"}, 1, "--hosts"},
		{[]string{"rebalance", "--interval", "0"}, 1, "--interval"},
		{[]string{"rebalance", "--gpagent", "x", "--build-gpagent"}, 1, "at most one"},
		{[]string{"rebalance", "--gpagent", "/nonexistent/gpagent"}, 1, "/nonexistent/gpagent"},
		{[]string{"rebalance", "extra"}, 2, "unexpected argument"},
	}
	for _, tc := range cases {
		var out, errOut bytes.Buffer
		code := run(context.Background(), tc.args, &out, &errOut)
		if code != tc.code || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("gpbench %v: exit %d, stderr %q; want exit %d and %q", tc.args, code, errOut.String(), tc.code, tc.want)
		}
	}
}

// TestRebalanceSmoke runs one rebalance trial on a real three-host demo.
func TestRebalanceSmoke(t *testing.T) {
	bin := testGpagent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	started := time.Now()
	code := run(ctx, []string{"rebalance", "--gpagent", bin, "--trials", "1"}, &out, &errOut)
	t.Logf("gpbench rebalance --trials 1 took %s; stderr:\n%s", time.Since(started).Round(time.Millisecond), errOut.String())
	if code != 0 {
		t.Fatalf("exit %d; stdout:\n%s", code, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	last := lines[len(lines)-1]
	var s rebalanceSummary
	dec := json.NewDecoder(strings.NewReader(last))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("last stdout line %q: %v", last, err)
	}
	t.Logf("summary: %s", last)
	if s.Trials != 1 || len(s.ByContent) != 2 {
		t.Errorf("trials %d, contents %d; want 1 and 2", s.Trials, len(s.ByContent))
	}
	if s.LostAckedWrites != 0 {
		t.Errorf("%d acknowledged writes lost", s.LostAckedWrites)
	}
	if s.SplitBrainEvents != 0 {
		t.Errorf("%d split-brain events", s.SplitBrainEvents)
	}
	if s.UnavailableMS.Max <= 0 || s.UnavailableMS.Max >= 30000 || s.RebalanceMS.Max <= 0 {
		t.Errorf("implausible figures: %s", last)
	}
}
