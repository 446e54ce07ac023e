package main

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestAttributeChaos charges a synthetic run's writer and watcher records
// to the fault kinds: the stretch without writes that a fault started
// (even one whose last write came just before the injection), not one
// already under way; the p50 by nearest rank over an even count; lost ids
// by the window of their acknowledgement; split polls by the window of the
// poll; a stranded content to the fault that cut it off.
func TestAttributeChaos(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)
	at := func(msec int) time.Time { return t0.Add(time.Duration(msec) * time.Millisecond) }
	var nextID int64
	idAt := map[int]map[int]int64{} // content -> ms -> id
	// acks: one write acknowledged every 100 ms from..to (exclusive), plus
	// the extra moments.
	acks := func(content int, spans [][2]int, extra ...int) []chaosAck {
		idAt[content] = map[int]int64{}
		var msecs []int
		for _, s := range spans {
			for m := s[0]; m < s[1]; m += 100 {
				msecs = append(msecs, m)
			}
		}
		msecs = append(msecs, extra...)
		slices.Sort(msecs)
		var out []chaosAck
		for _, m := range msecs {
			nextID++
			idAt[content][m] = nextID
			out = append(out, chaosAck{id: nextID, at: at(m)})
		}
		return out
	}
	faults := []chaosFault{
		{"kill9", at(10000)},         // content 0 stops 50 ms before, back at 12 s: 2000 ms
		{"host_cut", at(20000)},      // content 1's outage began 18.5 s, in kill9's window: not this one's
		{"kill9", at(30000)},         // content 1: 30.5 -> 30.9 s: 400 ms
		{"sigstop_agent", at(40000)}, // three split polls
		{"operator", at(50000)},      // nothing
		{"kill9", at(60000)},         // content 2 stops 20 ms before and never comes back: stranded
		{"kill9", at(65000)},         // nothing new (content 2's outage was under way)
	}
	start, healed, stop := at(0), at(70000), at(80000)
	records := []chaosContentRecord{
		{content: 0, acks: acks(0, [][2]int{{0, 9950}, {12000, 80000}}, 9950)},
		{content: 1, acks: acks(1, [][2]int{{0, 18600}, {20300, 30600}, {30900, 80000}})},
		{content: 2, acks: acks(2, [][2]int{{0, 60000}}, 59980), stranded: true},
	}
	records[0].lost = []int64{idAt[0][20100], idAt[0][75000]}
	records[1].split = []time.Time{at(5000), at(41000), at(41100), at(41200)}

	got, figures := attributeChaos(faults, start, healed, stop, records)
	want := map[string]chaosKindStats{
		// unavailability 2000, 400, 20000 (60 s to the end of the
		// records), 100: nearest-rank p50 is 400 (interpolation: 1200).
		"kill9":           {Count: 4, UnavailableMS: chaosMS{P50: 400, Max: 20000}, Stranded: 1},
		"host_cut":        {Count: 1, UnavailableMS: chaosMS{P50: 100, Max: 100}, Lost: 1},
		"sigstop_agent":   {Count: 1, UnavailableMS: chaosMS{P50: 100, Max: 100}, Split: 3},
		"operator":        {Count: 1, UnavailableMS: chaosMS{P50: 100, Max: 100}},
		chaosBeforeFaults: {Split: 1},
		chaosAfterHeal:    {Lost: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("attributeChaos:\n got  %+v\n want %+v", got, want)
	}

	if f := figures[0]; f.unavailable != 2000*time.Millisecond || f.content != 0 || len(f.byContent) != 3 || f.byContent[1] != 1800*time.Millisecond {
		t.Errorf("first kill9's figure %+v, want 2000 ms on content 0 and 1800 ms on content 1 (the stretch that began in its window)", f)
	}
	b, err := json.Marshal(got["kill9"])
	if err != nil {
		t.Fatal(err)
	}
	if s := string(b); s != `{"count":4,"unavailable_ms":{"p50":400,"max":20000},"lost":0,"split":0,"stranded":1}` {
		t.Errorf("by_fault entry %s", s)
	}
	table := chaosTable(got)
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 7 || !strings.HasPrefix(lines[0], "fault") || !strings.HasPrefix(lines[5], chaosBeforeFaults) || !strings.HasPrefix(lines[6], chaosAfterHeal) {
		t.Errorf("table:\n%s", table)
	}
	if f := strings.Fields(lines[2]); strings.Join(f, " ") != "kill9 4 0 400 20000 0 0 1" {
		t.Errorf("kill9 row %q", lines[2])
	}
}

// TestAttributeChaosNoFaults: a run too short for any fault charges
// everything to the pseudo-kinds and has no fault kind.
func TestAttributeChaosNoFaults(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)
	rec := chaosContentRecord{acks: []chaosAck{{1, t0.Add(time.Second)}, {2, t0.Add(3 * time.Second)}}, lost: []int64{1, 2}, stranded: true}
	got, _ := attributeChaos(nil, t0, t0.Add(2*time.Second), t0.Add(4*time.Second), []chaosContentRecord{rec})
	want := map[string]chaosKindStats{chaosBeforeFaults: {Lost: 1, Stranded: 1}, chaosAfterHeal: {Lost: 1}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// TestAttributeChaosUnmeasured: a fault that comes while every content is
// already down, and that sees no write before the next window, is counted
// apart, not as 0 ms in the percentiles; the outage stays with the fault
// that started it.
func TestAttributeChaosUnmeasured(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)
	at := func(msec int) time.Time { return t0.Add(time.Duration(msec) * time.Millisecond) }
	faults := []chaosFault{{"kill9", at(1000)}, {"leader_cut", at(5000)}}
	rec := func(c int, id int64) chaosContentRecord {
		return chaosContentRecord{content: c, acks: []chaosAck{{id, at(990)}, {id + 1, at(10000)}, {id + 2, at(10100)}}}
	}
	got, figures := attributeChaos(faults, t0, at(8000), at(10200), []chaosContentRecord{rec(0, 1), rec(1, 10)})
	want := map[string]chaosKindStats{
		"kill9":      {Count: 1, UnavailableMS: chaosMS{P50: 9000, Max: 9000}},
		"leader_cut": {Count: 1, Unmeasured: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if figures[1].measured() || !strings.Contains(chaosFaultLine(faults[1], figures[1]), "unmeasured") {
		t.Errorf("leader_cut: %s", chaosFaultLine(faults[1], figures[1]))
	}
	if l := chaosFaultLine(faults[0], figures[0]); !strings.Contains(l, "writes unavailable 9000 ms (content 0); by content, ms: 0: 9000, 1: 9000") {
		t.Errorf("kill9: %s", l)
	}
	b, _ := json.Marshal(got["leader_cut"])
	if s := string(b); s != `{"count":1,"unavailable_ms":{"p50":0,"max":0},"unmeasured":1,"lost":0,"split":0,"stranded":0}` {
		t.Errorf("by_fault entry %s", s)
	}
}
