package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

const rebalanceSynopsis = `usage: gpbench rebalance [flags]

Measures write unavailability during 'gpagent recoverseg -r' (a planned
switchover of each content back to its preferred roles). Each trial, on a
demo cluster (gpagent demo --dir TMP --hosts N; reused while every pair is
in sync in its preferred roles, else replaced), with a client inserting one
row every --interval into content 0 and one into content 1 through their
multi-host connection strings, and a watcher per content as in failover:
  1. kill -9 of content 0's acting primary (a failover);
  2. gpagent recoverseg -a: the old primary comes back as a mirror;
  3. after --warmup, gpagent recoverseg -r -a, timed start to exit: the
     rebalance window. Writes go on for --tail after writes came back.
Measured per trial and content:
  unavailable   the longest time between two acknowledged inserts where
                that gap overlaps the rebalance window (includes stalls
                that end in no error)
  lost          acknowledged ids (of the whole trial) missing afterwards
  split brain   watcher polls at which two instances of the content
                answered pg_is_in_recovery() = false (whole trial)
A trial's unavailability is the larger of the two contents'.

Per-trial lines go to stderr. The last line on stdout is one JSON object:
  {"trials":N,"unavailable_ms":{"p50":..,"p90":..,"max":..},
   "lost_acked_writes":n,"split_brain_events":m,
   "by_content":{"0":{"p50":..,"p90":..,"max":..},"1":{..}},
   "rebalance_ms":{..},"failover_unavailable_ms":{..}}
whole milliseconds; p50 and p90 by nearest rank over the trials.

Flags:
`

type rebalanceOptions struct {
	trials         int
	hosts          int
	timeout        time.Duration
	warmup         time.Duration
	tail           time.Duration
	interval       time.Duration
	opTimeout      time.Duration
	gpagent        string
	buildGpagent   bool
	keep           bool
	startTimeout   time.Duration
	recoverTimeout time.Duration
}

func cmdRebalance(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rebalance", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, rebalanceSynopsis)
		fs.PrintDefaults()
	}
	var o rebalanceOptions
	fs.IntVar(&o.trials, "trials", 3, "number of trials")
	fs.IntVar(&o.hosts, "hosts", 3, "demo hosts (gpagent demo --hosts); contents 0 and 1 must exist")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "how long writes may stay unavailable after the kill or the rebalance")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "workload before the kill and before the rebalance")
	fs.DurationVar(&o.tail, "tail", time.Second, "workload after writes came back from the rebalance")
	fs.DurationVar(&o.interval, "interval", 10*time.Millisecond, "time between inserts, per content")
	fs.DurationVar(&o.opTimeout, "op-timeout", time.Second, "limit of one INSERT; on expiry the client reconnects")
	fs.StringVar(&o.gpagent, "gpagent", "", "gpagent binary for the demo (default: next to gpbench, else in PATH)")
	fs.BoolVar(&o.buildGpagent, "build-gpagent", false, "go build ./cmd/gpagent into a temporary folder and use it (run from inside the gpagent source tree)")
	fs.BoolVar(&o.keep, "keep", false, "keep the demo folders (by default removed, except those of trials that went wrong)")
	fs.DurationVar(&o.startTimeout, "start-timeout", 5*time.Minute, "how long a demo may take to come up")
	fs.DurationVar(&o.recoverTimeout, "recover-timeout", 5*time.Minute, "limit of one recoverseg")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	switch {
	case o.trials < 1:
		return errors.New("--trials: must be at least 1")
	case o.hosts < 1 || o.hosts > 9:
		return errors.New("--hosts: must be 1 to 9")
	case o.timeout <= 0 || o.warmup < 0 || o.tail < 0 || o.interval <= 0 || o.opTimeout <= 0:
		return errors.New("--timeout, --interval and --op-timeout must be positive; --warmup and --tail not negative")
	case o.gpagent != "" && o.buildGpagent:
		return errors.New("--gpagent and --build-gpagent: give at most one")
	case o.startTimeout <= 0 || o.recoverTimeout <= 0:
		return errors.New("--start-timeout and --recover-timeout must be positive")
	}
	return runRebalance(ctx, o, stdout, stderr)
}

// rebalanceContents are the contents with a workload; the first is the
// one failed over and switched back.
var rebalanceContents = []int{0, 1}

// laneResult is what one content's workload measured in a trial.
type laneResult struct {
	content     int
	unavailable time.Duration // longest ack gap overlapping the rebalance window
	closed      bool          // an ack came after the window (else the gap runs to the end)
	failed      int           // failed inserts that started in the window
	acked       int
	lost        int
	splitBrain  int
	verifyErr   error
}

// rebalanceTrial is one trial.
type rebalanceTrial struct {
	failoverUnavailable time.Duration // kill to writes back on content 0
	recoverseg          time.Duration // recoverseg -a
	rebalance           time.Duration // recoverseg -r -a
	lanes               []laneResult
}

// unavailable is the trial's figure: the worst content's.
func (t rebalanceTrial) unavailable() time.Duration {
	var m time.Duration
	for _, l := range t.lanes {
		m = max(m, l.unavailable)
	}
	return m
}

func (t rebalanceTrial) line(i, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "trial %d/%d: rebalance (recoverseg -r -a) took %d ms; unavailable", i, n, ms(t.rebalance))
	for j, l := range t.lanes {
		if j > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " content %d %d ms", l.content, ms(l.unavailable))
		if !l.closed {
			b.WriteString(" (writes not back)")
		}
	}
	for _, l := range t.lanes {
		if l.verifyErr != nil {
			fmt.Fprintf(&b, ", content %d lost ? (verify: %v)", l.content, l.verifyErr)
		} else {
			fmt.Fprintf(&b, ", content %d lost %d", l.content, l.lost)
		}
		if l.splitBrain > 0 {
			fmt.Fprintf(&b, ", content %d SPLIT BRAIN at %d polls", l.content, l.splitBrain)
		}
	}
	fmt.Fprintf(&b, " (failover: writes back after %d ms; recoverseg -a %d ms", ms(t.failoverUnavailable), ms(t.recoverseg))
	for _, l := range t.lanes {
		fmt.Fprintf(&b, "; content %d: %d acknowledged, %d failed in the window", l.content, l.acked, l.failed)
	}
	b.WriteString(")")
	return b.String()
}

// rebalanceSummary is the last line of stdout. Field order is output order.
type rebalanceSummary struct {
	Trials                int                    `json:"trials"`
	UnavailableMS         percentiles            `json:"unavailable_ms"`
	LostAckedWrites       int                    `json:"lost_acked_writes"`
	SplitBrainEvents      int                    `json:"split_brain_events"`
	ByContent             map[string]percentiles `json:"by_content"`
	RebalanceMS           percentiles            `json:"rebalance_ms"`
	FailoverUnavailableMS percentiles            `json:"failover_unavailable_ms"`
}

func pct(values []int64) percentiles {
	return percentiles{P50: nearestRank(values, 50), P90: nearestRank(values, 90), Max: nearestRank(values, 100)}
}

func summarizeRebalance(trials []rebalanceTrial) rebalanceSummary {
	s := rebalanceSummary{Trials: len(trials), ByContent: map[string]percentiles{}}
	var un, reb, fo []int64
	by := map[int][]int64{}
	for _, t := range trials {
		un = append(un, ms(t.unavailable()))
		reb = append(reb, ms(t.rebalance))
		fo = append(fo, ms(t.failoverUnavailable))
		for _, l := range t.lanes {
			by[l.content] = append(by[l.content], ms(l.unavailable))
			s.LostAckedWrites += l.lost
			s.SplitBrainEvents += l.splitBrain
		}
	}
	s.UnavailableMS, s.RebalanceMS, s.FailoverUnavailableMS = pct(un), pct(reb), pct(fo)
	for c, v := range by {
		s.ByContent[strconv.Itoa(c)] = pct(v)
	}
	return s
}

func (s rebalanceSummary) jsonLine() string {
	b, err := json.Marshal(s) // map keys come out sorted
	if err != nil {
		panic(err)
	}
	return string(b)
}

// longestAckGap is the longest time between two consecutive acknowledged
// ops (by end) among the gaps that overlap [t0, t1]; a gap before the
// first acknowledgement starts at the first op's start. closed is false
// when no acknowledgement ended after t1: the last gap then runs to end.
// Ops are in the order the writer made them.
func longestAckGap(ops []op, t0, t1, end time.Time) (gap time.Duration, closed bool) {
	var prev time.Time
	if len(ops) > 0 {
		prev = ops[0].start
	} else {
		prev = t0
	}
	for _, o := range ops {
		if !o.ok {
			continue
		}
		if !o.end.Before(t0) && !prev.After(t1) {
			gap = max(gap, o.end.Sub(prev))
		}
		prev = o.end
		if o.end.After(t1) {
			return gap, true
		}
	}
	if !prev.After(t1) {
		gap = max(gap, end.Sub(prev))
	}
	return gap, false
}

// failedIn counts the failed ops that started in [t0, t1].
func failedIn(ops []op, t0, t1 time.Time) int {
	n := 0
	for _, o := range ops {
		if !o.ok && !o.start.Before(t0) && !o.start.After(t1) {
			n++
		}
	}
	return n
}

func (w *writer) snapshot() []op {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]op(nil), w.ops...)
}

func runRebalance(ctx context.Context, o rebalanceOptions, stdout, stderr io.Writer) error {
	return withDemos(ctx, o.gpagent, o.buildGpagent, o.keep, stderr, func(bin string, demos *demoSet) error {
		return rebalanceTrials(ctx, o, bin, demos, stdout, stderr)
	})
}

// rebalanceTrials runs the trials, replacing the demo whenever it is not
// balanced and in sync any more.
func rebalanceTrials(ctx context.Context, o rebalanceOptions, bin string, demos *demoSet, stdout, stderr io.Writer) error {
	started := time.Now()
	ids := &atomic.Int64{}
	var cur *demo
	var trials []rebalanceTrial
	for i := range o.trials {
		if ctx.Err() != nil {
			return errors.New("interrupted")
		}
		if cur != nil {
			if st, err := cur.state(ctx); err != nil || !balancedInSync(st) {
				fmt.Fprintln(stderr, "gpbench: the demo is not balanced and in sync any more; replacing it")
				demos.keepDir(cur)
				demos.stop(cur)
				cur = nil
			}
		}
		if cur == nil {
			d, err := startDemoRetry(ctx, bin, o.startTimeout, stderr, demos.track, "--hosts", strconv.Itoa(o.hosts))
			if err != nil {
				demos.keepDir(d)
				if ctx.Err() != nil {
					return errors.New("interrupted")
				}
				return err
			}
			cur = d
		}
		res, err := rebalanceOnce(ctx, o, cur, ids, stderr)
		if err != nil {
			demos.keepDir(cur)
			if ctx.Err() != nil {
				return errors.New("interrupted")
			}
			return fmt.Errorf("trial %d (demo in %s): %w", i+1, cur.dir, err)
		}
		fmt.Fprintln(stderr, res.line(i+1, o.trials))
		for _, l := range res.lanes {
			if l.lost > 0 || l.splitBrain > 0 || l.verifyErr != nil || !l.closed {
				demos.keepDir(cur)
			}
		}
		trials = append(trials, res)
	}
	fmt.Fprintf(stderr, "gpbench: %d trials in %s\n", len(trials), time.Since(started).Round(100*time.Millisecond))
	fmt.Fprintln(stdout, summarizeRebalance(trials).jsonLine())
	return nil
}

// balancedInSync: every content of the workload is in sync, each instance
// in its preferred role.
func balancedInSync(st *clusterState) bool {
	for _, c := range rebalanceContents {
		if !st.inSync(c) {
			return false
		}
		for _, x := range st.Segments {
			if x.Content == c && x.Role != x.PreferredRole {
				return false
			}
		}
	}
	return true
}

// lane is one content's workload and watcher.
type lane struct {
	content int
	cfg     *pgx.ConnConfig
	w       *writer
	wa      *watcher
}

func rebalanceOnce(ctx context.Context, o rebalanceOptions, d *demo, ids *atomic.Int64, log io.Writer) (rebalanceTrial, error) {
	var res rebalanceTrial
	st, err := waitState(ctx, d, time.Minute, "every pair in sync in its preferred roles", balancedInSync)
	if err != nil {
		return res, err
	}
	var lanes []*lane
	for _, c := range rebalanceContents {
		cfg, insts, err := contentTarget(ctx, d, st, c)
		if err != nil {
			return res, err
		}
		pctx, cancel := context.WithTimeout(ctx, o.timeout)
		err = prepareTable(pctx, cfg, ids)
		cancel()
		if err != nil {
			return res, fmt.Errorf("content %d: %w", c, err)
		}
		lanes = append(lanes, &lane{
			content: c,
			cfg:     cfg,
			w:       newWriter(cfg, o.interval, o.opTimeout, ids),
			wa:      &watcher{base: cfg, instances: insts, interval: 50 * time.Millisecond, timeout: 300 * time.Millisecond},
		})
	}

	// Hard limit of the whole workload.
	wctx, stopWork := context.WithTimeout(ctx, 2*o.recoverTimeout+3*o.timeout+3*o.warmup+o.tail+time.Minute)
	defer stopWork()
	var wg sync.WaitGroup
	for _, l := range lanes {
		wg.Go(func() { l.w.run(wctx) })
		wg.Go(func() { l.wa.run(wctx) })
	}
	stop := func() { stopWork(); wg.Wait() }
	defer stop()

	waitAll := func(t time.Time, anySession bool, what string) error {
		for _, l := range lanes {
			actx, cancel := context.WithTimeout(wctx, o.timeout)
			_, ok := l.w.waitAckAfter(actx, t, anySession)
			cancel()
			if !ok {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				_, _, _, lastErr := l.w.stats()
				return fmt.Errorf("content %d: no write acknowledged %s within %s: %s", l.content, what, o.timeout, lastErr)
			}
		}
		return nil
	}

	warm := time.Now()
	sleepCtx(wctx, o.warmup)
	if err := waitAll(warm, true, "before the kill"); err != nil {
		return res, err
	}
	for _, l := range lanes {
		if err := l.wa.check(); err != nil {
			return res, fmt.Errorf("content %d before the kill: %w", l.content, err)
		}
	}

	// 1. Failover of the first content.
	fc := lanes[0].content
	p, m, _, _ := st.pair(fc)
	pid, err := postmasterPID(p.DataDir)
	if err != nil {
		return res, err
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return res, fmt.Errorf("kill -9 %d: %w", pid, err)
	}
	tKill := time.Now()
	actx, cancel := context.WithTimeout(wctx, o.timeout)
	end, ok := lanes[0].w.waitAckAfter(actx, tKill, false)
	cancel()
	if !ok {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		_, _, _, lastErr := lanes[0].w.stats()
		return res, fmt.Errorf("content %d: writes not back within %s of kill -9: %s", fc, o.timeout, lastErr)
	}
	res.failoverUnavailable = end.Sub(tKill)
	if _, err := waitState(wctx, d, o.timeout, fmt.Sprintf("dbid %d acting primary, dbid %d down", m.DBID, p.DBID), func(s *clusterState) bool {
		np, om, ok, _ := s.pair(fc)
		return ok && np.DBID == m.DBID && om.DBID == p.DBID && om.Status == "d"
	}); err != nil {
		return res, err
	}
	fmt.Fprintf(log, "gpbench: content %d failed over: writes back %d ms after kill -9; recoverseg -a\n", fc, ms(res.failoverUnavailable))

	// 2. The old primary back as a mirror.
	t := time.Now()
	if _, err := d.gpagentWithin(wctx, o.recoverTimeout, "recoverseg", "-a"); err != nil {
		return res, err
	}
	res.recoverseg = time.Since(t)
	if err := checkInSync(wctx, d, fc); err != nil {
		return res, fmt.Errorf("after recoverseg -a: %w", err)
	}

	// 3. The rebalance, under the workload.
	sleepCtx(wctx, o.warmup)
	if err := waitAll(t, true, "before the rebalance"); err != nil {
		return res, err
	}
	fmt.Fprintf(log, "gpbench: recoverseg -a took %d ms; recoverseg -r -a\n", ms(res.recoverseg))
	tR0 := time.Now()
	_, rerr := d.gpagentWithin(wctx, o.recoverTimeout, "recoverseg", "-r", "-a")
	tR1 := time.Now()
	res.rebalance = tR1.Sub(tR0)
	if rerr != nil {
		return res, rerr
	}
	berr := waitAll(tR1, true, "after the rebalance")
	if berr == nil {
		sleepCtx(wctx, o.tail)
	}
	stop()
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	stEnd, err := d.state(ctx)
	if err == nil && !balancedInSync(stEnd) {
		b, _ := json.Marshal(stEnd.Segments)
		err = fmt.Errorf("recoverseg -r -a returned but the cluster is not balanced and in sync: %s", b)
	}
	if err != nil {
		return res, err
	}

	for _, l := range lanes {
		ops := l.w.snapshot()
		lr := laneResult{content: l.content, failed: failedIn(ops, tR0, tR1)}
		lr.unavailable, lr.closed = longestAckGap(ops, tR0, tR1, time.Now())
		var acked []int64
		acked, _, _, _ = l.w.stats()
		lr.acked = len(acked)
		lr.splitBrain = l.wa.splitBrain()
		vctx, cancel := context.WithTimeout(ctx, o.timeout)
		missing, err := missingIDs(vctx, l.cfg, acked)
		cancel()
		if err != nil {
			lr.verifyErr = err
		}
		lr.lost = len(missing)
		res.lanes = append(res.lanes, lr)
	}
	if berr != nil {
		fmt.Fprintf(log, "gpbench: warning: %v\n", berr)
	}
	return res, nil
}
