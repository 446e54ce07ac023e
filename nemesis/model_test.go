package nemesis

import (
	"flag"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpagent/gpagent/topology"
)

var (
	schedules = flag.Int("schedules", 1000, "how many seeded schedules TestNemesisModel runs (env GPAGENT_NEMESIS_MODEL_SCHEDULES)")
	seedFlag  = flag.Uint64("seed", 0, "run the schedules from this seed on (env GPAGENT_NEMESIS_SEED); 0: from 1")
)

// TestNemesisModel runs seeded schedules of the model nemesis and fails
// on the first schedules that break a safety rule, printing each one's
// seed, schedule and a command that replays it (the model is
// deterministic: a seed replays tick for tick).
//
//	go test -run TestNemesisModel ./nemesis/ -schedules 100000
func TestNemesisModel(t *testing.T) {
	n, first := *schedules, *seedFlag
	if v := os.Getenv("GPAGENT_NEMESIS_MODEL_SCHEDULES"); v != "" {
		k, err := strconv.Atoi(v)
		if err != nil || k < 1 {
			t.Fatalf("GPAGENT_NEMESIS_MODEL_SCHEDULES=%q: want a positive number", v)
		}
		n = k
	}
	if v := os.Getenv("GPAGENT_NEMESIS_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("GPAGENT_NEMESIS_SEED=%q: not a number", v)
		}
		first = s
		if os.Getenv("GPAGENT_NEMESIS_MODEL_SCHEDULES") == "" && !flagSet("schedules") {
			n = 1
		}
	}
	if first == 0 {
		first = 1
	}
	// Liveness failures (a stranded content, a pair never back in sync)
	// fail the test like safety failures since issue 12's hole 4 was
	// closed (a mirror promoted in the topology whose agent is lost
	// before pg_promote; a switchover whose mirror never gets the
	// shutdown checkpoint, now abandoned at its deadline).
	// GPAGENT_NEMESIS_STRICT=0 only logs them, to look at safety alone.
	strict := os.Getenv("GPAGENT_NEMESIS_STRICT") != "0"
	start := time.Now()
	var acked, local, indet, faults, failures, stuck, stranded, split, lost int
	var splitSeeds []uint64
	// Schedules are independent: run them on every CPU, then read the
	// results in seed order.
	results := make([]*Result, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				results[i] = Run(first + uint64(i))
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, r := range results {
		seed := first + uint64(i)
		acked += r.Acked
		local += r.LocalAcked
		split += r.Split
		lost += r.Lost
		if r.Split > 0 && len(splitSeeds) < 20 {
			splitSeeds = append(splitSeeds, seed)
		}
		indet += r.Indeterminate
		faults += r.Faults
		stranded += r.Stranded
		if len(r.Liveness) > 0 {
			stuck++
			if stuck <= 3 {
				report := t.Logf
				if strict {
					report = t.Errorf
				}
				report("NEMESIS LIVENESS %s\n  rerun: go test -count=1 -run TestNemesisModel ./nemesis/ -seed %d -schedules 1", r, seed)
			}
		}
		if len(r.Violations) > 0 {
			failures++
			if failures <= 5 {
				t.Errorf("NEMESIS FAILURE %s\n  rerun: go test -count=1 -run TestNemesisModel ./nemesis/ -seed %d -schedules 1", r, seed)
			}
		}
	}
	el := time.Since(start)
	t.Logf("%d schedules from seed %d in %s (%.0f schedules/s): %d faults, %d acknowledged commits (sync) and %d (local), %d indeterminate; %d schedules broke a safety rule (%d split-brain acknowledgements, %d acknowledged commits lost; split seeds %v); %d schedules left %d contents stranded or out of sync",
		n, first, el.Round(time.Millisecond), float64(n)/el.Seconds(), faults, acked, local, indet, failures, split, lost, splitSeeds, stuck, stranded)
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// TestNemesisModel_NoWatchdog shows what the fence watchdog is for: with
// a client that commits with synchronous_commit = local, an agent that is
// stopped cannot fence its primaries, the leader promotes their mirrors,
// and the old primaries acknowledge commits beside the new ones (found on
// real PostgreSQL by `gpbench chaos --seed 3`). Without the watchdog the
// model must find that split brain, in seed 3 (three agents stopped in
// turn, no other fault) and in many schedules; with it, seed 3 is clean.
// The sync client alone never showed it: an old primary whose sync
// standby was promoted acknowledges nothing.
func TestNemesisModel_NoWatchdog(t *testing.T) {
	const n = 300
	split := 0
	for seed := uint64(1); seed <= n; seed++ {
		if run(seed, false).Split > 0 {
			split++
		}
	}
	if split < n/10 {
		t.Errorf("without the watchdog %d of %d schedules showed a split brain; want at least %d (is the local client committing?)", split, n, n/10)
	}
	r := run(3, false)
	if r.Split == 0 || !strings.Contains(strings.Join(r.Schedule, "; "), "stop agent") {
		t.Errorf("seed 3 without the watchdog: want a split brain after stopped agents, got %s", r)
	}
	if r := run(3, true); len(r.Violations) > 0 || r.LocalAcked == 0 {
		t.Errorf("seed 3 with the watchdog: want no violation and local commits acknowledged, got %s", r)
	}
	t.Logf("without the watchdog %d of %d schedules showed a split brain", split, n)
}

// TestModelHungPrimaryKilledBeforeReportedFailed: the model reports a hung
// primary as the agent does (agent/probe.go killHung): failed only once
// it is killed, so it cannot thaw writable beside the promoted mirror;
// while failover is paused neither killed nor failed.
func TestModelHungPrimaryKilledBeforeReportedFailed(t *testing.T) {
	for _, paused := range []bool{false, true} {
		w := newWorld(1, 4, true)
		for range 5 {
			w.tickOnce()
		}
		if paused {
			if err := w.apply(topology.Command{Type: topology.CmdSetPaused, Paused: true}); err != nil {
				t.Fatal(err)
			}
			w.tickOnce()
		}
		p, _ := w.t.Primary(0)
		in := w.insts[p.DBID]
		in.hung, in.hungAt = true, w.now
		failed := false
		for range 30 {
			w.tickOnce()
			if r, ok := w.reports[p.DBID]; ok && r.Observation.Failed {
				failed = true
				if in.running {
					t.Fatalf("paused=%v: dbid %d reported failed while it runs (hung=%v)", paused, p.DBID, in.hung)
				}
			}
		}
		switch {
		case paused && (failed || !in.running || !in.hung):
			t.Errorf("paused: hung primary reported failed=%v, running=%v, hung=%v; want left running, not failed", failed, in.running, in.hung)
		case !paused && (!failed || in.running):
			t.Errorf("hung primary: reported failed=%v, running=%v; want killed and reported failed", failed, in.running)
		}
	}
}
