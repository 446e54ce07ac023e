package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sys/unix"

	"github.com/gpagent/gpagent/supervisor"
)

const recoverSynopsis = `usage: gpbench recover [flags]

Measures gpagent recoverseg on content 0 of a demo cluster, for each scale
of --scales:
  1. starts a demo (gpagent demo --dir TMP --hosts N), loads content 0's
     acting primary with pgbench -i -s SCALE (data generated server-side),
     runs CHECKPOINT on it (unless --checkpoint=false) and waits until the
     pair is in sync;
  2. --runs times: kill -9 of the acting primary's postmaster, wait until
     its mirror is promoted (recorded so, and out of recovery), change about --change-mb of WAL worth of rows
     on the new primary (UPDATE pgbench_accounts by id range, WAL measured
     with pg_current_wal_lsn), then time 'gpagent recoverseg -a' from start
     to exit (it returns when the pair is back in sync: mode s);
  3. --full-runs times: kill -9, promotion, time 'gpagent recoverseg -F
     -a'; then time 'cp -a' of the recovered mirror's data dir (running:
     not a consistent copy, only a throughput baseline on the same disk)
     into a temporary folder, and the same copy followed by a syncfs of it
     (durable, as the recovered mirror is). With --drop-caches (the
     default as root) the page cache is written back and dropped before
     the recovery and before the copy, so both read from the disk.

MB are MiB (2^20 bytes). Per-run lines go to stderr. The last line on
stdout is one JSON object:
  {"scales":[{"scale":64,"runs":3,"datadir_mb":..,"changed_wal_mb":..,
    "incremental_s":{"p50":..,"max":..},"full_runs":3,
    "full_s":{"p50":..,"max":..},"full_mb":..,"full_mb_per_s":..,
    "cp_mb_per_s":..,"full_vs_cp":{"p50":..,"worst":..},
    "cp_sync_mb_per_s":..,"full_vs_cp_sync":{..},"copy_s":{..},
    "copy_mb_per_s":..,"copy_vs_cp":{..},"copy_vs_cp_sync":{..}},...]}
datadir_mb: the primary's data dir after the load (du, apparent size);
changed_wal_mb: mean WAL per run; p50 is the nearest-rank median, max the
longest, worst the lowest ratio; incremental_s: recoverseg -a; full_s:
recoverseg -F -a; full_mb: the recovered data dir; *_mb_per_s: medians;
full_vs_cp: full recovery throughput over the throughput of the cp -a made
after it; full_vs_cp_sync: the same over cp -a then syncfs; copy_*: the
copy phase alone, read from the mirror agent's log (pg_backup_start to the
copy flushed to disk), its throughput and its ratios to the same two
baselines (zeros when pg_basebackup made the copy).

Flags:
`

type recoverOptions struct {
	scales         []int
	changeMB       float64
	runs           int
	fullRuns       int
	hosts          int
	gpagent        string
	buildGpagent   bool
	keep           bool
	startTimeout   time.Duration
	recoverTimeout time.Duration
	pgbin          string
	checkpoint     bool
	dropCaches     bool
}

func cmdRecover(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("recover", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, recoverSynopsis)
		fs.PrintDefaults()
	}
	var o recoverOptions
	scales := fs.String("scales", "64,256", "pgbench scales, comma-separated (scale 1 ≈ 16 MB of data dir)")
	fs.Float64Var(&o.changeMB, "change-mb", 10, "WAL to generate on the new primary before each incremental recovery, MiB")
	fs.IntVar(&o.runs, "runs", 3, "incremental recoveries per scale")
	fs.IntVar(&o.fullRuns, "full-runs", 3, "full recoveries per scale (each with its cp -a baseline)")
	fs.IntVar(&o.hosts, "hosts", 3, "demo hosts (gpagent demo --hosts); with 2 or more, content 0's mirror is on another host than its primary, and a full recovery copies between two agents")
	fs.StringVar(&o.gpagent, "gpagent", "", "gpagent binary for the demo (default: next to gpbench, else in PATH)")
	fs.BoolVar(&o.buildGpagent, "build-gpagent", false, "go build ./cmd/gpagent into a temporary folder and use it (run from inside the gpagent source tree)")
	fs.BoolVar(&o.keep, "keep", false, "keep the demo folders (by default removed, except those where something went wrong)")
	fs.DurationVar(&o.startTimeout, "start-timeout", 5*time.Minute, "how long a demo may take to come up")
	fs.DurationVar(&o.recoverTimeout, "recover-timeout", 30*time.Minute, "limit of one recoverseg, and of the pgbench load")
	fs.BoolVar(&o.dropCaches, "drop-caches", os.Geteuid() == 0, "before the full recovery and before the cp -a baseline, write back and drop the page cache (root only), so both read the data from disk")
	fs.BoolVar(&o.checkpoint, "checkpoint", true, "CHECKPOINT the primary after the load (=false: the first incremental recovery must rewind across the whole load's WAL)")
	fs.StringVar(&o.pgbin, "pg-bin", "/usr/lib/postgresql/15/bin", "folder of pgbench")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	var err error
	if o.scales, err = parseScales(*scales); err != nil {
		return err
	}
	switch {
	case o.runs < 1:
		return errors.New("--runs: must be at least 1")
	case o.fullRuns < 1:
		return errors.New("--full-runs: must be at least 1")
	case !(o.changeMB > 0) || math.IsInf(o.changeMB, 0):
		return errors.New("--change-mb: must be positive")
	case o.hosts < 1 || o.hosts > 9:
		return errors.New("--hosts: must be 1 to 9")
	case o.gpagent != "" && o.buildGpagent:
		return errors.New("--gpagent and --build-gpagent: give at most one")
	case o.startTimeout <= 0 || o.recoverTimeout <= 0:
		return errors.New("--start-timeout and --recover-timeout must be positive")
	}
	return runRecover(ctx, o, stdout, stderr)
}

// parseScales parses --scales: positive integers, comma-separated, each
// once, in the order given.
func parseScales(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--scales %q: %q is not a positive integer", s, f)
		}
		if slices.Contains(out, n) {
			return nil, fmt.Errorf("--scales %q: %d given twice", s, n)
		}
		out = append(out, n)
	}
	return out, nil
}

// incrementalRun is one kill, change and recoverseg -a.
type incrementalRun struct {
	failover time.Duration // kill to the mirror recorded as acting primary
	walBytes int64         // WAL generated by the changes
	rows     int64         // rows updated
	recover  time.Duration // recoverseg -a, start to exit
}

// fullRun is the kill and recoverseg -F -a, and the cp -a baseline.
type fullRun struct {
	failover time.Duration
	recover  time.Duration
	bytes    int64 // the recovered data dir
	cp       time.Duration
	cpBytes  int64
	cpSync   time.Duration // cp -a, then syncfs of the copy's file system
	// The copy phase alone, from the mirror agent's log: pg_backup_start
	// to the copy flushed to disk (0 if not found: pg_basebackup ran).
	copyPhase time.Duration
	copyBytes int64
}

// secondsSummary is p50 and max of durations, in seconds.
type secondsSummary struct {
	P50 float64 `json:"p50"`
	Max float64 `json:"max"`
}

// scaleResult is one scale in the summary. Field order is output order.
// Rates are medians over the full runs; each ratio is taken per run (the
// recovery against the cp -a made right after it) and given as its
// median and worst.
type scaleResult struct {
	Scale        int            `json:"scale"`
	Runs         int            `json:"runs"`
	DatadirMB    float64        `json:"datadir_mb"`
	ChangedWALMB float64        `json:"changed_wal_mb"`
	IncrementalS secondsSummary `json:"incremental_s"`
	FullRuns     int            `json:"full_runs"`
	FullS        secondsSummary `json:"full_s"`
	FullMB       float64        `json:"full_mb"`
	FullMBPerS   float64        `json:"full_mb_per_s"`
	CpMBPerS     float64        `json:"cp_mb_per_s"`
	FullVsCp     ratioSummary   `json:"full_vs_cp"`
	// The copy made durable, as the recovered mirror is before it counts.
	CpSyncMBPerS float64      `json:"cp_sync_mb_per_s"`
	FullVsCpSync ratioSummary `json:"full_vs_cp_sync"`
	// The copy phase alone (the fixed steps around it left out: the
	// command, the standby's start, the sync handshake).
	CopyS        secondsSummary `json:"copy_s"`
	CopyMBPerS   float64        `json:"copy_mb_per_s"`
	CopyVsCp     ratioSummary   `json:"copy_vs_cp"`
	CopyVsCpSync ratioSummary   `json:"copy_vs_cp_sync"`
}

// ratioSummary is the median and the worst (lowest) of per-run ratios.
type ratioSummary struct {
	P50   float64 `json:"p50"`
	Worst float64 `json:"worst"`
}

type recoverSummary struct {
	Scales []scaleResult `json:"scales"`
}

func (s recoverSummary) jsonLine() string {
	if s.Scales == nil {
		s.Scales = []scaleResult{}
	}
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // numbers only, all finite
	}
	return string(b)
}

const mib = 1 << 20

// summarizeScale turns one scale's measurements into its summary entry.
func summarizeScale(scale int, datadirBytes int64, runs []incrementalRun, fulls []fullRun) scaleResult {
	r := scaleResult{Scale: scale, Runs: len(runs), FullRuns: len(fulls), DatadirMB: round(float64(datadirBytes)/mib, 1)}
	var wal int64
	var durs []int64
	for _, x := range runs {
		wal += x.walBytes
		durs = append(durs, int64(x.recover))
	}
	if len(runs) > 0 {
		r.ChangedWALMB = round(float64(wal)/float64(len(runs))/mib, 1)
	}
	r.IncrementalS = summarizeSeconds(durs)
	var fullDurs, copyDurs []int64
	var fullRates, cpRates, cpSyncRates, copyRates, fullVsCp, fullVsCpSync, copyVsCp, copyVsCpSync []float64
	for _, f := range fulls {
		fullDurs = append(fullDurs, int64(f.recover))
		r.FullMB = round(float64(f.bytes)/mib, 1)
		fr, cr, sr := rate(f.bytes, f.recover), rate(f.cpBytes, f.cp), rate(f.cpBytes, f.cpSync)
		fullRates, cpRates, cpSyncRates = append(fullRates, fr), append(cpRates, cr), append(cpSyncRates, sr)
		fullVsCp, fullVsCpSync = append(fullVsCp, ratio(fr, cr)), append(fullVsCpSync, ratio(fr, sr))
		if xr := rate(f.copyBytes, f.copyPhase); xr > 0 {
			copyDurs = append(copyDurs, int64(f.copyPhase))
			copyRates = append(copyRates, xr)
			copyVsCp, copyVsCpSync = append(copyVsCp, ratio(xr, cr)), append(copyVsCpSync, ratio(xr, sr))
		}
	}
	r.FullS, r.CopyS = summarizeSeconds(fullDurs), summarizeSeconds(copyDurs)
	r.FullMBPerS, r.CpMBPerS = round(median(fullRates), 1), round(median(cpRates), 1)
	r.CpSyncMBPerS, r.CopyMBPerS = round(median(cpSyncRates), 1), round(median(copyRates), 1)
	r.FullVsCp, r.FullVsCpSync = summarizeRatios(fullVsCp), summarizeRatios(fullVsCpSync)
	r.CopyVsCp, r.CopyVsCpSync = summarizeRatios(copyVsCp), summarizeRatios(copyVsCpSync)
	return r
}

func summarizeSeconds(durs []int64) secondsSummary {
	return secondsSummary{
		P50: round(time.Duration(nearestRank(durs, 50)).Seconds(), 3),
		Max: round(time.Duration(nearestRank(durs, 100)).Seconds(), 3),
	}
}

func summarizeRatios(rs []float64) ratioSummary {
	if len(rs) == 0 {
		return ratioSummary{}
	}
	return ratioSummary{P50: round(median(rs), 3), Worst: round(slices.Min(rs), 3)}
}

// median is the lower median (nearest rank), 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// ratio is a/b, 0 when b is not positive.
func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

var (
	copiedLine  = regexp.MustCompile(`msg="data files copied" .*datadir=(\S+) .*bytes=(\d+) checkpoint=(\S+) copy=(\S+) stop=(\S+)`)
	flushedLine = regexp.MustCompile(`msg="copy flushed to disk" .*datadir=(\S+) syncfs=(\S+)`)
)

// copyPhase reads, from the agents' logs under demoDir, how long the
// last file copy into dataDir took from pg_backup_start to flushed, and
// its bytes; 0 and 0 if there is none (pg_basebackup made the copy).
func copyPhase(demoDir, dataDir string) (time.Duration, int64) {
	logs, _ := filepath.Glob(filepath.Join(demoDir, "*", "agent.log"))
	var phase, synced time.Duration
	var bytes int64
	for _, l := range logs {
		data, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if m := copiedLine.FindStringSubmatch(line); m != nil && m[1] == dataDir {
				bytes, _ = strconv.ParseInt(m[2], 10, 64)
				phase = 0
				for _, d := range m[3:] {
					x, _ := time.ParseDuration(d)
					phase += x
				}
			} else if m := flushedLine.FindStringSubmatch(line); m != nil && m[1] == dataDir {
				synced, _ = time.ParseDuration(m[2])
			}
		}
	}
	if phase == 0 {
		return 0, 0
	}
	return phase + synced, bytes
}

// rate is MiB per second; 0 when d is not positive.
func rate(bytes int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(bytes) / mib / d.Seconds()
}

// round rounds to the given decimals.
func round(x float64, decimals int) float64 {
	p := math.Pow(10, float64(decimals))
	return math.Round(x*p) / p
}

func secs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + " s" }

func runRecover(ctx context.Context, o recoverOptions, stdout, stderr io.Writer) error {
	return withDemos(ctx, o.gpagent, o.buildGpagent, o.keep, stderr, func(bin string, demos *demoSet) error {
		return recoverScales(ctx, o, bin, demos, stdout, stderr)
	})
}

// recoverScales measures each scale on a demo of its own.
func recoverScales(ctx context.Context, o recoverOptions, bin string, demos *demoSet, stdout, stderr io.Writer) error {
	started := time.Now()
	var sum recoverSummary
	for _, scale := range o.scales {
		res, err := recoverScale(ctx, o, bin, demos, scale, stderr)
		if err != nil {
			if ctx.Err() != nil {
				return errors.New("interrupted")
			}
			return fmt.Errorf("scale %d: %w", scale, err)
		}
		b, _ := json.Marshal(res)
		fmt.Fprintf(stderr, "gpbench: scale %d: %s\n", scale, b)
		sum.Scales = append(sum.Scales, res)
	}
	fmt.Fprintf(stderr, "gpbench: %d scales in %s\n", len(sum.Scales), time.Since(started).Round(100*time.Millisecond))
	fmt.Fprintln(stdout, sum.jsonLine())
	return nil
}

// recoverScale runs one scale on a fresh demo, stopped at the end.
func recoverScale(ctx context.Context, o recoverOptions, bin string, demos *demoSet, scale int, log io.Writer) (res scaleResult, err error) {
	warnSpace(log, scale)
	d, err := startDemoRetry(ctx, bin, o.startTimeout, log, demos.track, "--hosts", strconv.Itoa(o.hosts))
	if err != nil {
		demos.keepDir(d)
		return res, err
	}
	defer func() {
		if err != nil {
			demos.keepDir(d)
			err = fmt.Errorf("%w (demo in %s)", err, d.dir)
		}
		demos.stop(d)
	}()
	const content = 0
	st, err := waitState(ctx, d, 2*time.Minute, "content 0 in sync", func(s *clusterState) bool { return s.inSync(content) })
	if err != nil {
		return res, err
	}
	p, _, _, _ := st.pair(content)
	fmt.Fprintf(log, "gpbench: scale %d: pgbench -i -s %d on content %d's primary %s:%d\n", scale, scale, content, p.Address, p.Port)
	begin := time.Now()
	if err := pgbenchInit(ctx, o, d, p, scale); err != nil {
		return res, err
	}
	loaded := time.Since(begin)
	if o.checkpoint {
		// Without it, the last checkpoint before the first kill may lie a
		// whole load's WAL back, and pg_rewind's crash recovery of the
		// target recycles the WAL it then needs (gpagent keeps only
		// wal_keep_size of it).
		if err := checkpoint(ctx, p); err != nil {
			return res, err
		}
	}
	st, err = waitState(ctx, d, o.recoverTimeout, "content 0 in sync after the load", func(s *clusterState) bool { return s.inSync(content) })
	if err != nil {
		return res, err
	}
	// The first kill must find the mirror caught up with the load and its
	// checkpoint: pg_rewind copies every block changed since the last
	// checkpoint the two share, so a mirror still replaying the load's
	// tail would make the first run measure the load, not the change.
	_, m, _, _ := st.pair(content)
	if err := waitReplayed(ctx, p, m, o.recoverTimeout); err != nil {
		return res, err
	}
	size, err := dirSize(p.DataDir)
	if err != nil {
		return res, err
	}
	fmt.Fprintf(log, "gpbench: scale %d: loaded in %s, pair in sync after %s; data dir %.1f MB\n",
		scale, secs(loaded), secs(time.Since(begin)), float64(size)/mib)

	naccounts := int64(scale) * 100000
	var runs []incrementalRun
	for i := range o.runs {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		var run incrementalRun
		np, failover, err := killAndPromote(ctx, d, content)
		if err != nil {
			return res, fmt.Errorf("run %d: %w", i+1, err)
		}
		run.failover = failover
		start := naccounts * int64(i) / int64(o.runs)
		run.walBytes, run.rows, err = changeRows(ctx, np, int64(o.changeMB*mib), start, naccounts)
		if err != nil {
			return res, fmt.Errorf("run %d: change rows on %s:%d: %w", i+1, np.Address, np.Port, err)
		}
		t := time.Now()
		if _, err := d.gpagentWithin(ctx, o.recoverTimeout, "recoverseg", "-a"); err != nil {
			return res, fmt.Errorf("run %d: %w", i+1, err)
		}
		run.recover = time.Since(t)
		if err := checkInSync(ctx, d, content); err != nil {
			return res, fmt.Errorf("run %d: after recoverseg -a: %w", i+1, err)
		}
		fmt.Fprintf(log, "scale %d run %d/%d: mirror promoted %s after kill -9; changed %.1f MB of WAL (%d rows); recoverseg -a: pair in sync after %s\n",
			scale, i+1, o.runs, secs(run.failover), float64(run.walBytes)/mib, run.rows, secs(run.recover))
		runs = append(runs, run)
	}

	var fulls []fullRun
	for i := range o.fullRuns {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		var full fullRun
		old, _, _, _ := mustState(ctx, d).pair(content)
		_, full.failover, err = killAndPromote(ctx, d, content)
		if err != nil {
			return res, fmt.Errorf("full run %d: %w", i+1, err)
		}
		fmt.Fprintf(log, "gpbench: scale %d full %d/%d: mirror promoted %s after kill -9; recoverseg -F -a\n", scale, i+1, o.fullRuns, secs(full.failover))
		if o.dropCaches {
			if err := dropCaches(); err != nil {
				return res, err
			}
		}
		t := time.Now()
		if _, err := d.gpagentWithin(ctx, o.recoverTimeout, "recoverseg", "-F", "-a"); err != nil {
			return res, fmt.Errorf("full run %d: %w", i+1, err)
		}
		full.recover = time.Since(t)
		if err := checkInSync(ctx, d, content); err != nil {
			return res, fmt.Errorf("full run %d: after recoverseg -F -a: %w", i+1, err)
		}
		if full.bytes, err = dirSize(old.DataDir); err != nil {
			return res, err
		}
		if o.dropCaches {
			if err := dropCaches(); err != nil {
				return res, err
			}
		}
		full.cp, full.cpSync, full.cpBytes, err = timeCopy(ctx, old.DataDir)
		if err != nil {
			return res, err
		}
		full.copyPhase, full.copyBytes = copyPhase(d.dir, old.DataDir)
		if full.copyPhase > 0 {
			fmt.Fprintf(log, "scale %d full %d/%d: its copy phase (pg_backup_start to flushed): %.1f MB in %s (%.1f MB/s)\n",
				scale, i+1, o.fullRuns, float64(full.copyBytes)/mib, secs(full.copyPhase), rate(full.copyBytes, full.copyPhase))
		} else {
			fmt.Fprintf(log, "scale %d full %d/%d: no file copy in the agents' logs (pg_basebackup made the copy)\n", scale, i+1, o.fullRuns)
		}
		fmt.Fprintf(log, "scale %d full %d/%d: recoverseg -F -a: %.1f MB in %s (%.1f MB/s); cp -a: %.1f MB in %s (%.1f MB/s); cp -a then syncfs: %s (%.1f MB/s)\n",
			scale, i+1, o.fullRuns, float64(full.bytes)/mib, secs(full.recover), rate(full.bytes, full.recover),
			float64(full.cpBytes)/mib, secs(full.cp), rate(full.cpBytes, full.cp), secs(full.cpSync), rate(full.cpBytes, full.cpSync))
		fulls = append(fulls, full)
	}
	return summarizeScale(scale, size, runs, fulls), nil
}

// warnSpace warns when the temporary folder's file system looks too small
// for a scale: primary, mirror and a copy, with WAL.
func warnSpace(log io.Writer, scale int) {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(os.TempDir(), &fs); err != nil {
		return
	}
	free := int64(fs.Bavail) * int64(fs.Bsize)
	need := 3 * (int64(scale)*16*mib + 512*mib)
	if free < need {
		fmt.Fprintf(log, "gpbench: warning: scale %d wants about %d MB free in %s, %d MB are\n", scale, need/mib, os.TempDir(), free/mib)
	}
}

// pgbenchInit runs pgbench -i against an instance, with the demo's
// password file; data generated on the server side (-I dtGvp).
func pgbenchInit(ctx context.Context, o recoverOptions, d *demo, p segment, scale int) error {
	ctx, cancel := context.WithTimeout(ctx, o.recoverTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(o.pgbin, "pgbench"), "-i", "-q", "-I", "dtGvp", "-s", strconv.Itoa(scale),
		"-h", p.Address, "-p", strconv.Itoa(p.Port), "-U", "gpadmin", "postgres")
	cmd.Env = append(os.Environ(), "PGPASSFILE="+d.passfile, "PGCONNECT_TIMEOUT=10")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pgbench -i -s %d: %v: %s", scale, err, lastLines(out.String(), 3))
	}
	return nil
}

// waitReplayed waits until mirror m has replayed everything primary p
// has written so far.
func waitReplayed(ctx context.Context, p, m segment, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var target string
	if err := queryOne(ctx, p, "SELECT pg_current_wal_lsn()::text", &target); err != nil {
		return err
	}
	for {
		var done bool
		err := queryOne(ctx, m, "SELECT coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)", &done, target)
		if err == nil && done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("mirror %s:%d did not replay up to %s within %s (last error: %v)", m.Address, m.Port, target, timeout, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// queryOne runs a one-value query on an instance.
func queryOne(ctx context.Context, x segment, sql string, dst any, args ...any) error {
	cfg, err := instanceConfig(x)
	if err != nil {
		return err
	}
	conn, err := connectRetry(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	if err := conn.QueryRow(ctx, sql, args...).Scan(dst); err != nil {
		return fmt.Errorf("%s on %s:%d: %w", sql, x.Address, x.Port, err)
	}
	return nil
}

// checkpoint runs CHECKPOINT on an instance.
func checkpoint(ctx context.Context, p segment) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cfg, err := instanceConfig(p)
	if err != nil {
		return err
	}
	conn, err := connectRetry(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		return fmt.Errorf("CHECKPOINT on %s:%d: %w", p.Address, p.Port, err)
	}
	return nil
}

// waitState polls the state until ok holds.
func waitState(ctx context.Context, d *demo, timeout time.Duration, what string, ok func(*clusterState) bool) (*clusterState, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		st, err := d.state(ctx)
		if err == nil && ok(st) {
			return st, nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return nil, fmt.Errorf("%s: not within %s (last error: %v)", what, timeout, last)
			}
			return nil, fmt.Errorf("%s: not within %s", what, timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// mustState is the state, or an empty one (whose pair() finds nothing).
func mustState(ctx context.Context, d *demo) *clusterState {
	st, err := d.state(ctx)
	if err != nil {
		return &clusterState{}
	}
	return st
}

// checkInSync: a recoverseg that returned must have left the pair in sync.
func checkInSync(ctx context.Context, d *demo, content int) error {
	st, err := d.state(ctx)
	if err != nil {
		return err
	}
	if !st.inSync(content) {
		b, _ := json.Marshal(st.Segments)
		return fmt.Errorf("content %d not in sync: %s", content, b)
	}
	return nil
}

// killAndPromote kills content's acting primary's postmaster with SIGKILL
// and waits until its mirror is recorded as the acting primary, up, and
// has left recovery. It returns the new primary and the time from the kill.
func killAndPromote(ctx context.Context, d *demo, content int) (segment, time.Duration, error) {
	st, err := d.state(ctx)
	if err != nil {
		return segment{}, 0, err
	}
	if !st.inSync(content) {
		return segment{}, 0, fmt.Errorf("content %d not in sync before the kill", content)
	}
	p, m, _, _ := st.pair(content)
	pid, err := postmasterPID(p.DataDir)
	if err != nil {
		return segment{}, 0, err
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return segment{}, 0, fmt.Errorf("kill -9 %d: %w", pid, err)
	}
	t0 := time.Now()
	st, err = waitState(ctx, d, time.Minute, fmt.Sprintf("promotion of dbid %d after kill -9 of dbid %d", m.DBID, p.DBID), func(s *clusterState) bool {
		np, _, ok, _ := s.pair(content)
		return ok && np.DBID == m.DBID
	})
	if err != nil {
		return segment{}, 0, err
	}
	np, _, _, _ := st.pair(content)
	// The topology records the promotion before the instance has left
	// recovery: wait until it takes writes.
	if err := waitOutOfRecovery(ctx, np, time.Minute); err != nil {
		return segment{}, 0, err
	}
	return np, time.Since(t0), nil
}

// instanceConfig connects to one instance as the demo's superuser (the
// password from $PGPASSFILE, which startDemo set).
func instanceConfig(p segment) (*pgx.ConnConfig, error) {
	return pgx.ParseConfig(fmt.Sprintf("host=%s port=%d dbname=postgres user=gpadmin connect_timeout=5", p.Address, p.Port))
}

// waitOutOfRecovery polls an instance until pg_is_in_recovery() is false.
func waitOutOfRecovery(ctx context.Context, p segment, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cfg, err := instanceConfig(p)
	if err != nil {
		return err
	}
	last := "no answer"
	for {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			var inRecovery bool
			err = conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery)
			closeConn(conn)
			if err == nil && !inRecovery {
				return nil
			}
			if err == nil {
				last = "still in recovery"
			}
		}
		if err != nil {
			last = oneLine(err.Error())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dbid %d (%s:%d) not out of recovery within %s: %s", p.DBID, p.Address, p.Port, timeout, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// changeRows updates pgbench_accounts in id ranges from start on, in
// batches of their own transactions, until the instance has written at
// least target bytes of WAL. It returns the WAL written and rows updated.
func changeRows(ctx context.Context, p segment, target, start, naccounts int64) (wal, rows int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cfg, err := instanceConfig(p)
	if err != nil {
		return 0, 0, err
	}
	conn, err := connectRetry(ctx, cfg)
	if err != nil {
		return 0, 0, err
	}
	defer closeConn(conn)
	var before string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&before); err != nil {
		return 0, 0, err
	}
	// Batches of 1% of the table, at most 5000 rows, to stop close to
	// the target.
	batch := max(min(naccounts/100, 5000), 1)
	lo := start % naccounts
	for wal < target {
		hi := min(lo+batch-1, naccounts-1)
		// A commit that hangs would mean the new primary still waits for
		// its dead mirror.
		bctx, cancel := context.WithTimeout(ctx, time.Minute)
		tag, err := conn.Exec(bctx, "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid BETWEEN $1 AND $2", lo+1, hi+1)
		cancel()
		if err != nil {
			return wal, rows, err
		}
		rows += tag.RowsAffected()
		if err := conn.QueryRow(ctx, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::bigint", before).Scan(&wal); err != nil {
			return wal, rows, err
		}
		lo = (hi + 1) % naccounts
	}
	return wal, rows, nil
}

// dirSize is the apparent size of the regular files below dir; files that
// vanish while it walks (a running instance's WAL, temp files) are skipped.
func dirSize(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path != dir {
				return nil
			}
			return err
		}
		if !e.Type().IsRegular() {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		total += info.Size()
		return nil
	})
	return total, err
}

// timeCopy times cp -a of dir into a new temporary folder beside the
// demos, and removes the copy. A running instance's files may vanish
// under cp: those complaints are not failures.
func timeCopy(ctx context.Context, dir string) (plain, durable time.Duration, n int64, err error) {
	tmp, err := os.MkdirTemp("", "gpbench-cp-")
	if err != nil {
		return 0, 0, 0, err
	}
	defer os.RemoveAll(tmp)
	// Nothing written before the copy is flushed on its clock.
	if err := supervisor.SyncFS(tmp); err != nil {
		return 0, 0, 0, err
	}
	dst := filepath.Join(tmp, "x")
	cmd := exec.CommandContext(ctx, "cp", "-a", dir, dst)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t := time.Now()
	err = cmd.Run()
	plain = time.Since(t)
	if err != nil && !onlyVanished(out.String()) {
		return 0, 0, 0, fmt.Errorf("cp -a %s: %v: %s", dir, err, lastLines(out.String(), 3))
	}
	if err := supervisor.SyncFS(dst); err != nil {
		return 0, 0, 0, err
	}
	durable = time.Since(t)
	n, err = dirSize(dst)
	return plain, durable, n, err
}

// dropCaches writes back every dirty page and drops the page cache, so
// that what is timed next reads from the disk, as a copy on a busy host
// mostly would.
func dropCaches() error {
	unix.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		return fmt.Errorf("--drop-caches: %w (needs root; --drop-caches=false to time with a warm cache)", err)
	}
	return nil
}

// onlyVanished: every line of cp's complaints is about a file that was
// gone by the time it got to it.
func onlyVanished(out string) bool {
	out = strings.TrimSpace(out)
	if out == "" {
		return false
	}
	for l := range strings.SplitSeq(out, "\n") {
		if !strings.Contains(l, "No such file or directory") {
			return false
		}
	}
	return true
}
