package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gpagent/gpagent/internal/netns"
)

const failoverSynopsis = `usage: gpbench failover [flags]

Runs --trials trials. In each, a client inserts one row every --interval
through a multi-host connection string (target_session_attrs=read-write),
reconnecting at once after any error; after --warmup the fault is injected
into the acting primary; T0 is when the injection has completed. Measured
per trial:
  unavailable   T0 to the acknowledgement of the first insert started after
                T0 on a connection opened after T0 (--timeout when writes do
                not come back: a failed trial). The session open at T0 is
                left out: it can outlive a killed postmaster for a moment.
  lost          acknowledged ids missing afterwards, read through the
                connection string
  split brain   polls (every 50 ms, fresh connection, 300 ms timeout) at
                which two instances of the content answered
                pg_is_in_recovery() = false (partition: and were not
                read-only, see below)

By default it starts a gpagent demo cluster (gpagent demo --dir TMP) and
uses content trial%2, starting a fresh demo when that content has no
mirror in sync any more (after its failover). With --dsn it uses an
existing setup instead and runs --kill-cmd (sh -c) as the fault.

Faults (demo): kill = SIGKILL of the primary's postmaster; hang = SIGSTOP
of the primary's whole instance, like a frozen host: the postmaster and
every process below it (backends, WAL sender, ...; each is its own process
group, and with the postmaster alone stopped open sessions go on writing). Stopped processes get
SIGCONT at the end of the trial, after which the watcher goes on for
--tail to see whether the old primary comes back as a second primary.
host = SIGKILL of the primary's host: its agent and every postmaster
there (the demo does not restart the agent).

partition (root only) uses no demo: it builds a bridge and one network
namespace per host in a free 10.213.X.0/24 (mdw with the coordinator,
sdw1 and sdw2 with one primary each and group mirrors), runs one
gpagent agent in each and gpagent init. The fault cuts the host of the
measured content's acting primary off from the other hosts (blackhole
routes both ways); the workload and the watcher, in the root namespace,
still reach every host through the bridge. The cut-off agent fences its
primaries when its lease runs out; a fenced primary answers
pg_is_in_recovery() = false but acknowledges no commit and opens only
read-only transactions, so for this fault the watcher counts an instance
as a primary only when it is out of recovery and read-write. At the end
of the trial the cut is healed while the watcher goes on, until the
healed host's agent has stopped its demoted primary (at most --timeout),
then --tail more. Between trials: gpagent recoverseg -a, then
recoverseg -r -a, until every pair is in sync in its preferred role (a
fresh cluster, with a warning, when that fails within --recover-timeout).
Namespaces, links and agents are removed at exit, Ctrl-C included.

With --coordinator (demo only) a third client reads the demo's region
table through the coordinator (postgres_fdw partitions, one per content)
on one session every --interval, reconnecting after an error; per trial
it reports how long those reads failed after T0: T0 to the end of the
first successful read started after the last failed one (0 when none
failed), beside the content's own write unavailability.

Per-trial lines go to stderr. The last line on stdout is one JSON object:
  {"fault":"kill","trials":N,"unavailable_ms":{"p50":..,"p90":..,"max":..},
   "lost_acked_writes":n,"split_brain_events":m}
(with --coordinator also "coordinator_unavailable_ms":{...} and
"coordinator_failed_reads")
with whole milliseconds; p50 and p90 by nearest rank over the trials.

Flags:
`

type failoverOptions struct {
	trials         int
	fault          string
	timeout        time.Duration
	duration       time.Duration
	warmup         time.Duration
	tail           time.Duration
	interval       time.Duration
	opTimeout      time.Duration
	gpagent        string
	buildGpagent   bool
	keep           bool
	startTimeout   time.Duration
	dsn            string
	killCmd        string
	resumeCmd      string
	recoverCmd     string
	recoverTimeout time.Duration
	coordinator    bool
}

var demoFaults = []string{"kill", "hang", "host", "mirror", "partition"}

func cmdFailover(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("failover", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, failoverSynopsis)
		fs.PrintDefaults()
	}
	var o failoverOptions
	fs.IntVar(&o.trials, "trials", 10, "number of trials")
	fs.StringVar(&o.fault, "fault", "kill", "kill (SIGKILL of the primary's postmaster), hang (SIGSTOP of all its processes) host (its host's agent and every postmaster there killed), mirror (SIGKILL of the mirror's postmaster: how long the primary's commits wait) or partition (its host cut off from the other hosts in network namespaces; root only) (with --dsn: only the label of the output)")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "how long writes may stay unavailable before the trial counts as failed")
	fs.DurationVar(&o.duration, "duration", 0, "hard limit of one trial's workload (default --timeout + --warmup + 2×--tail + 5s)")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "workload before the fault")
	fs.DurationVar(&o.tail, "tail", time.Second, "workload after writes came back (and again after a resume)")
	fs.DurationVar(&o.interval, "interval", 10*time.Millisecond, "time between inserts")
	fs.DurationVar(&o.opTimeout, "op-timeout", time.Second, "limit of one INSERT; on expiry the client reconnects")
	fs.StringVar(&o.gpagent, "gpagent", "", "gpagent binary for the demo (default: next to gpbench, else in PATH)")
	fs.BoolVar(&o.buildGpagent, "build-gpagent", false, "go build ./cmd/gpagent into a temporary folder and use it (run from inside the gpagent source tree)")
	fs.BoolVar(&o.keep, "keep", false, "keep the demo folders (by default removed, except those of trials that went wrong)")
	fs.DurationVar(&o.startTimeout, "start-timeout", 5*time.Minute, "how long a demo may take to come up")
	fs.StringVar(&o.dsn, "dsn", "", "multi-host connection string of an existing setup (no demo is started)")
	fs.StringVar(&o.killCmd, "kill-cmd", "", "with --dsn: shell command that injects the fault")
	fs.StringVar(&o.resumeCmd, "resume-cmd", "", "with --dsn: shell command run at the end of each trial (e.g. undo a SIGSTOP)")
	fs.StringVar(&o.recoverCmd, "recover-cmd", "", "with --dsn: shell command run between trials (e.g. re-add the old primary)")
	fs.DurationVar(&o.recoverTimeout, "recover-timeout", 5*time.Minute, "with --dsn: how long to wait for writes to work before a trial; with --fault partition: limit of the recovery between trials")
	fs.BoolVar(&o.coordinator, "coordinator", false, "demo only: also read region through the coordinator (SELECT count(*) every --interval on one session, reconnecting after an error) and report how long those queries failed after the fault")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if err := o.check(); err != nil {
		return err
	}
	return runFailover(ctx, o, stdout, stderr)
}

func (o *failoverOptions) check() error {
	switch {
	case o.trials < 1:
		return errors.New("--trials: must be at least 1")
	case o.timeout <= 0 || o.warmup < 0 || o.tail < 0 || o.interval <= 0 || o.opTimeout <= 0:
		return errors.New("--timeout, --interval and --op-timeout must be positive; --warmup and --tail not negative")
	}
	if o.duration == 0 {
		o.duration = o.timeout + o.warmup + 2*o.tail + 5*time.Second
	}
	if o.duration < o.timeout+o.warmup+2*o.tail {
		return fmt.Errorf("--duration %s: must be at least --timeout + --warmup + 2×--tail (%s)", o.duration, o.timeout+o.warmup+2*o.tail)
	}
	if o.dsn == "" {
		if o.killCmd != "" || o.resumeCmd != "" || o.recoverCmd != "" {
			return errors.New("--kill-cmd, --resume-cmd and --recover-cmd go with --dsn")
		}
		if !slices.Contains(demoFaults, o.fault) {
			return fmt.Errorf("--fault %q: want one of %s", o.fault, strings.Join(demoFaults, ", "))
		}
		if o.gpagent != "" && o.buildGpagent {
			return errors.New("--gpagent and --build-gpagent: give at most one")
		}
		if o.fault == "partition" {
			if err := netns.Available(); err != nil {
				return fmt.Errorf("--fault partition: %w", err)
			}
		}
		return nil
	}
	if o.coordinator {
		return errors.New("--coordinator goes with the demo, not --dsn")
	}
	if o.killCmd == "" {
		return errors.New("--dsn needs --kill-cmd")
	}
	if o.gpagent != "" || o.buildGpagent {
		return errors.New("--gpagent and --build-gpagent are for the demo, not --dsn")
	}
	return nil
}

// trialSetup is where and how one trial injects its fault.
type trialSetup struct {
	name string // "content 1"
	cfg  *pgx.ConnConfig
	// watchCfg, if set, is the watcher's base config instead of cfg.
	watchCfg  *pgx.ConnConfig
	instances []instance
	inject    func() error
	resume    func() error // nil: nothing to undo
	keep      func()       // keep the evidence of an anomaly
	// anySession: writes count as back on the session open at the fault
	// too (a mirror's loss leaves the primary and its sessions in place).
	anySession bool
	// coordCfg, if set: the coordinator, read under load (--coordinator).
	coordCfg *pgx.ConnConfig
}

// target is a cluster to run trials on.
type target interface {
	setup(ctx context.Context, trial int) (*trialSetup, error)
	close() error
}

func runFailover(ctx context.Context, o failoverOptions, stdout, stderr io.Writer) (err error) {
	started := time.Now()
	var tgt target
	if o.dsn != "" {
		t, err := newDSNTarget(o, stderr)
		if err != nil {
			return err
		}
		tgt = t
	} else {
		bin, cleanup, err := resolveGpagent(ctx, o.gpagent, o.buildGpagent, stderr)
		if err != nil {
			return err
		}
		defer cleanup()
		if o.fault == "partition" {
			tgt = newPartitionTarget(o, bin, stderr)
		} else {
			tgt = &demoTarget{o: o, bin: bin, log: stderr}
		}
	}
	defer func() {
		if cerr := tgt.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()

	ids := &atomic.Int64{}
	var results []trialResult
	for i := range o.trials {
		if ctx.Err() != nil {
			return errors.New("interrupted")
		}
		ts, err := tgt.setup(ctx, i)
		if err != nil {
			if ctx.Err() != nil {
				return errors.New("interrupted")
			}
			return fmt.Errorf("trial %d: %w", i+1, err)
		}
		res, err := runTrial(ctx, o, ts, ids)
		if err != nil {
			if ctx.Err() != nil {
				return errors.New("interrupted")
			}
			return fmt.Errorf("trial %d (%s): %w", i+1, ts.name, err)
		}
		fmt.Fprintln(stderr, res.line(i+1, o.trials, o.fault))
		if res.timedOut || res.lost > 0 || res.splitBrain > 0 || res.verifyErr != nil {
			ts.keep()
		}
		results = append(results, res)
	}
	fmt.Fprintf(stderr, "gpbench: %d trials in %s\n", len(results), time.Since(started).Round(100*time.Millisecond))
	fmt.Fprintln(stdout, summarize(o.fault, results).jsonLine())
	return nil
}

// runTrial runs the workload and the watcher, injects the fault after the
// warm-up, waits for writes to come back, then checks every acknowledged
// write is there.
func runTrial(ctx context.Context, o failoverOptions, ts *trialSetup, ids *atomic.Int64) (trialResult, error) {
	res := trialResult{target: ts.name, promoted: -1}
	pctx, cancel := context.WithTimeout(ctx, o.timeout)
	err := prepareTable(pctx, ts.cfg, ids)
	cancel()
	if err != nil {
		return res, err
	}

	wctx, stopWork := context.WithTimeout(ctx, o.duration)
	defer stopWork()
	w := newWriter(ts.cfg, o.interval, o.opTimeout, ids)
	watchCfg := ts.cfg
	if ts.watchCfg != nil {
		watchCfg = ts.watchCfg
	}
	wa := &watcher{base: watchCfg, instances: ts.instances, interval: 50 * time.Millisecond, timeout: 300 * time.Millisecond}
	var wg sync.WaitGroup
	wg.Go(func() { w.run(wctx) })
	wg.Go(func() { wa.run(wctx) })
	var cr *coordReader
	if ts.coordCfg != nil {
		cr = &coordReader{cfg: ts.coordCfg, interval: o.interval, opTimeout: o.opTimeout}
		wg.Go(func() { cr.run(wctx) })
	}
	stop := func() { stopWork(); wg.Wait() }
	defer stop()

	warm := time.Now()
	sleepCtx(wctx, o.warmup)
	actx, cancel := context.WithTimeout(wctx, o.timeout)
	_, ok := w.waitAckAfter(actx, warm, true)
	cancel()
	if !ok {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		_, _, _, lastErr := w.stats()
		return res, fmt.Errorf("no write acknowledged before the fault within %s: %s", o.timeout, lastErr)
	}
	if err := wa.check(); err != nil {
		return res, fmt.Errorf("before the fault: %w", err)
	}

	// T0 is when the fault is fully in place: an insert that slipped in
	// while it was being injected (a hang stops the instance's processes
	// one by one; a --kill-cmd may take a while) proves nothing.
	if err := ts.inject(); err != nil {
		return res, fmt.Errorf("inject the fault: %w", err)
	}
	t0 := time.Now()
	res.t0 = t0
	resumed := ts.resume == nil
	var resumeErr error
	resume := func() {
		if !resumed {
			resumed = true
			resumeErr = ts.resume()
		}
	}
	defer resume()

	actx, cancel = context.WithDeadline(wctx, t0.Add(o.timeout))
	end, ok := w.waitAckAfter(actx, t0, ts.anySession)
	cancel()
	switch {
	case ok:
		res.unavailable = end.Sub(t0)
	case ctx.Err() != nil:
		return res, ctx.Err()
	default:
		res.unavailable, res.timedOut = o.timeout, true
	}
	sleepCtx(wctx, o.tail)
	if !resumed {
		// Wake the hung instance and watch on: a second primary now would
		// be a split brain.
		resume()
		if resumeErr != nil {
			return res, fmt.Errorf("resume: %w", resumeErr)
		}
		sleepCtx(wctx, o.tail)
	}
	stop()
	if ctx.Err() != nil {
		return res, ctx.Err()
	}

	var acked []int64
	acked, res.failedOps, res.maxGap, res.lastErr = w.stats()
	res.acked = len(acked)
	res.oldAcks = w.oldSessionAcks(t0)
	res.splitBrain = wa.splitBrain()
	res.promoted = wa.promotedAfter(t0)
	if cr != nil {
		d, failed, ok := cr.unavailable(t0)
		if !ok {
			d = o.timeout
		}
		res.coord = &coordResult{unavailable: d, failed: failed, timedOut: !ok}
	}
	vctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	missing, err := missingIDs(vctx, ts.cfg, acked)
	if err != nil {
		res.verifyErr = err
	}
	res.lost = len(missing)
	return res, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// demoTarget runs trials on gpagent demo clusters it starts itself.
type demoTarget struct {
	o   failoverOptions
	bin string
	log io.Writer

	cur     *demo
	all     []*demo
	kept    map[string]bool
	stopped []int // pids stopped with SIGSTOP and not resumed yet
	errs    []string
}

func (t *demoTarget) setup(ctx context.Context, trial int) (*trialSetup, error) {
	content := trial % 2
	fresh := false
	for {
		if t.cur == nil {
			if err := t.start(ctx); err != nil {
				return nil, err
			}
			fresh = true
		}
		st, err := t.cur.state(ctx)
		if err != nil {
			return nil, err
		}
		if st.inSync(content) {
			return t.setupOn(ctx, st, content)
		}
		if fresh {
			return nil, fmt.Errorf("content %d has no in-sync pair in a fresh demo (%s)", content, t.cur.dir)
		}
		fmt.Fprintf(t.log, "gpbench: content %d has no mirror in sync any more; replacing the demo\n", content)
		t.stopCurrent()
	}
}

// start starts a fresh demo. A demo that exits before its cluster is up
// is tried again, twice: the ports it picked may have been taken
// meanwhile by another program on this host.
func (t *demoTarget) start(ctx context.Context) error {
	var extra []string
	if t.o.fault == "host" {
		// A killed host stays down: the demo must not restart its agent.
		extra = append(extra, "--restart-agents=false")
	}
	d, err := startDemoRetry(ctx, t.bin, t.o.startTimeout, t.log, func(d *demo) {
		t.all = append(t.all, d)
		t.cur = d
	}, extra...)
	if err != nil {
		t.keepDir(d)
	}
	return err
}

func (t *demoTarget) setupOn(ctx context.Context, st *clusterState, content int) (*trialSetup, error) {
	p, _, _, _ := st.pair(content)
	cfg, insts, err := contentTarget(ctx, t.cur, st, content)
	if err != nil {
		return nil, err
	}
	pid, err := postmasterPID(p.DataDir)
	if err != nil {
		return nil, err
	}
	d := t.cur
	ts := &trialSetup{
		name:      fmt.Sprintf("content %d", content),
		cfg:       cfg,
		instances: insts,
		keep:      func() { t.keepDir(d) },
	}
	if t.o.coordinator {
		if ts.coordCfg, _, err = contentTarget(ctx, d, st, -1); err != nil {
			return nil, err
		}
	}
	switch t.o.fault {
	case "kill":
		ts.inject = func() error { return syscall.Kill(pid, syscall.SIGKILL) }
	case "mirror":
		_, m, _, _ := st.pair(content)
		mpid, err := postmasterPID(m.DataDir)
		if err != nil {
			return nil, err
		}
		ts.name += " mirror"
		ts.anySession = true
		ts.inject = func() error { return syscall.Kill(mpid, syscall.SIGKILL) }
	case "host":
		victims, err := hostProcesses(d, st, p.Hostname)
		if err != nil {
			return nil, err
		}
		ts.name += " host " + p.Hostname
		ts.inject = func() error {
			var errs []error
			for _, v := range victims {
				if err := syscall.Kill(v, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		}
	case "hang":
		ts.inject = func() error {
			pids, err := stopTree(pid)
			t.stopped = append(t.stopped, pids...)
			return err
		}
		ts.resume = t.resumeAll
	}
	return ts, nil
}

// resumeAll sends SIGCONT to every process stopped so far, children
// first.
func (t *demoTarget) resumeAll() error {
	var errs []error
	for i := len(t.stopped) - 1; i >= 0; i-- {
		if err := syscall.Kill(t.stopped[i], syscall.SIGCONT); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, err)
		}
	}
	t.stopped = nil
	return errors.Join(errs...)
}

func (t *demoTarget) keepDir(d *demo) {
	if d == nil {
		return
	}
	if t.kept == nil {
		t.kept = map[string]bool{}
	}
	t.kept[d.dir] = true
}

// stopCurrent stops the current demo; a demo that does not stop cleanly
// is remembered as an error and its folder kept.
func (t *demoTarget) stopCurrent() {
	d := t.cur
	t.cur = nil
	if d == nil {
		return
	}
	if err := t.resumeAll(); err != nil {
		fmt.Fprintf(t.log, "gpbench: warning: SIGCONT: %v\n", err)
	}
	if err := d.stop(); err != nil {
		t.errs = append(t.errs, err.Error())
		t.keepDir(d)
		fmt.Fprintf(t.log, "gpbench: warning: %v\n", err)
	}
}

func (t *demoTarget) close() error {
	t.stopCurrent()
	for _, d := range t.all {
		if t.o.keep || t.kept[d.dir] {
			fmt.Fprintf(t.log, "gpbench: kept %s\n", d.dir)
			continue
		}
		if err := os.RemoveAll(d.dir); err != nil {
			fmt.Fprintf(t.log, "gpbench: warning: %v\n", err)
		}
	}
	if len(t.errs) > 0 {
		return errors.New(strings.Join(t.errs, "; "))
	}
	return nil
}

// dsnTarget runs trials on an existing setup behind a multi-host string.
type dsnTarget struct {
	o         failoverOptions
	cfg       *pgx.ConnConfig
	instances []instance
	log       io.Writer
}

func newDSNTarget(o failoverOptions, log io.Writer) (*dsnTarget, error) {
	cfg, err := pgx.ParseConfig(o.dsn)
	if err != nil {
		return nil, fmt.Errorf("--dsn: %w", err)
	}
	t := &dsnTarget{o: o, cfg: cfg, log: log}
	t.instances = append(t.instances, instance{host: cfg.Host, port: cfg.Port})
	for _, fb := range cfg.Fallbacks {
		inst := instance{host: fb.Host, port: fb.Port}
		if !slices.Contains(t.instances, inst) {
			t.instances = append(t.instances, inst)
		}
	}
	return t, nil
}

func (t *dsnTarget) setup(ctx context.Context, trial int) (*trialSetup, error) {
	if trial > 0 && t.o.recoverCmd != "" {
		fmt.Fprintln(t.log, "gpbench: running --recover-cmd")
		if err := runShell(ctx, t.o.recoverCmd); err != nil {
			return nil, fmt.Errorf("--recover-cmd: %w", err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, t.o.recoverTimeout)
	defer cancel()
	if err := waitWritable(wctx, t.cfg); err != nil {
		return nil, err
	}
	ts := &trialSetup{
		name:      "dsn",
		cfg:       t.cfg,
		instances: t.instances,
		inject:    func() error { return runShell(ctx, t.o.killCmd) },
		keep:      func() {},
	}
	if t.o.resumeCmd != "" {
		ts.resume = func() error { return runShell(ctx, t.o.resumeCmd) }
	}
	return ts, nil
}

func (t *dsnTarget) close() error { return nil }

func runShell(ctx context.Context, command string) error {
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("sh -c %q: %v: %s", command, err, oneLine(strings.TrimSpace(out.String())))
	}
	return nil
}

// hostProcesses lists a demo host's agent and every postmaster there: a
// host loss kills them all at once.
func hostProcesses(d *demo, st *clusterState, host string) ([]int, error) {
	b, err := os.ReadFile(filepath.Join(d.dir, host, "agent.pid"))
	if err != nil {
		return nil, fmt.Errorf("agent of %s: %w", host, err)
	}
	agentPID, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("agent of %s: %w", host, err)
	}
	pids := []int{agentPID}
	for _, x := range st.Segments {
		if x.Hostname != host {
			continue
		}
		if pid, err := postmasterPID(x.DataDir); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// contentTarget is what a workload and its split-brain watcher need for
// one content: the parsed multi-host connection string gpagent connstr
// prints, and every instance of the content to poll directly.
func contentTarget(ctx context.Context, d *demo, st *clusterState, content int) (*pgx.ConnConfig, []instance, error) {
	cs, err := d.connstr(ctx, content)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := pgx.ParseConfig(cs)
	if err != nil {
		return nil, nil, fmt.Errorf("gpagent connstr: %w", err)
	}
	var insts []instance
	for _, x := range st.Segments {
		if x.Content == content {
			insts = append(insts, instance{host: x.Address, port: uint16(x.Port)})
		}
	}
	return cfg, insts, nil
}
