package supervisor

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestRewind is gprecoverseg's incremental recovery of an old primary: A
// (primary) and B (its synchronous mirror) share rows; B is cut off and A,
// no longer waiting for it, commits rows B never gets; A is killed -9; B
// is promoted and takes more rows. Rewinding A onto B must discard what
// only A had, keep everything B has, and leave A streaming from B. A
// first attempt with a WAL segment A needs hidden away must fail as
// impossible, name the segment, and leave A as it was.
func TestRewind(t *testing.T) {
	t.Parallel()
	s := newSup(t)
	root := testRoot(t)
	a := testInstance(t, root, 2, 0)
	b := testInstance(t, root, 3, 0)
	stopOnCleanup(t, s, a)
	stopOnCleanup(t, s, b)
	upA := Upstream{Address: a.Address, Port: a.Port}
	upB := Upstream{Address: b.Address, Port: b.Port}

	if err := s.InitPrimary(ctxT(t, 60*time.Second), testCluster, a); err != nil {
		t.Fatalf("InitPrimary: %v", err)
	}
	if err := s.CreateMirror(ctxT(t, 60*time.Second), testCluster, b, upA, nil); err != nil {
		t.Fatalf("CreateMirror: %v", err)
	}
	waitStreaming(t, s, a, b)
	if err := s.SetSyncStandby(ctxT(t, 20*time.Second), a, []string{AppName(b.DBID)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "B is A's sync standby", func() (bool, string) {
		h, err := s.Probe(context.Background(), a)
		if err != nil {
			return false, err.Error()
		}
		return replicaState(h, AppName(b.DBID)) == "streaming/sync", fmt.Sprintf("%+v", h.Replication)
	})
	execSQL(t, s, a, `CREATE TABLE t (v text)`,
		`INSERT INTO t VALUES ('common-1'), ('common-2')`, // synchronous commits: B has them
		`CHECKPOINT`)
	// The segment of the last checkpoint A and B share: pg_rewind reads
	// A's WAL back to it.
	commonSeg := queryString(t, s, a, `SELECT pg_walfile_name(checkpoint_lsn) FROM pg_control_checkpoint()`)
	aLSN := probe(t, s, a).CurrentLSN
	waitFor(t, 20*time.Second, "B replayed A's checkpoint", func() (bool, string) {
		h, err := s.Probe(context.Background(), b)
		if err != nil {
			return false, err.Error()
		}
		return h.CurrentLSN >= aLSN, fmt.Sprintf("B at %X, A at %X", h.CurrentLSN, aLSN)
	})

	// B is cut off; A, asynchronous now, takes rows B never receives, in
	// a new WAL segment with a checkpoint of its own there, so that its
	// crash recovery does not need commonSeg but pg_rewind does.
	if err := s.SetSyncStandby(ctxT(t, 20*time.Second), a, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(ctxT(t, 30*time.Second), b); err != nil {
		t.Fatal(err)
	}
	execSQL(t, s, a, `INSERT INTO t VALUES ('only-a-1')`, `SELECT pg_switch_wal()`,
		`INSERT INTO t VALUES ('only-a-2')`, `CHECKPOINT`, `INSERT INTO t VALUES ('only-a-3')`)
	if seg := queryString(t, s, a, `SELECT pg_walfile_name(checkpoint_lsn) FROM pg_control_checkpoint()`); seg <= commonSeg {
		t.Fatalf("A's last checkpoint is in %s, want a segment after %s", seg, commonSeg)
	}
	aStartupLog := readFile(t, filepath.Join(a.DataDir, startupLogFile))
	aLogs := logNames(t, a)
	drain(s.Exits())
	if err := syscall.Kill(s.PID(a), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExit(t, s.Exits(), a.DBID, 10*time.Second)

	// Failover: B promoted, and written to.
	if err := s.Start(ctxT(t, 30*time.Second), b); err != nil {
		t.Fatal(err)
	}
	if err := s.Promote(ctxT(t, 60*time.Second), b); err != nil {
		t.Fatal(err)
	}
	execSQL(t, s, b, `INSERT INTO t VALUES ('b-after-failover')`)

	// With commonSeg gone from A, there is no rewind: impossible, said
	// precisely, and A untouched (still ours, no slot left on B).
	hidden := filepath.Join(root, commonSeg)
	if err := os.Rename(filepath.Join(a.DataDir, "pg_wal", commonSeg), hidden); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	err := s.Rewind(ctxT(t, 60*time.Second), testCluster, a, upB, nil)
	t.Logf("Rewind without %s took %v: %v", commonSeg, time.Since(t0), err)
	if !errors.Is(err, ErrRewindImpossible) {
		t.Fatalf("Rewind with missing WAL: %v, want ErrRewindImpossible", err)
	}
	for _, want := range []string{commonSeg, "wal_keep_size (64MB) was too small", "point of divergence"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
	checkUntouched(t, s, a, b)
	if got := readFile(t, filepath.Join(a.DataDir, startupLogFile)); got != aStartupLog {
		t.Errorf("A's startup log changed by a failed rewind:\n%s", got)
	}
	if err := os.Rename(hidden, filepath.Join(a.DataDir, "pg_wal", commonSeg)); err != nil {
		t.Fatal(err)
	}

	// The rewind.
	var mu sync.Mutex
	var calls [][2]int64
	t0 = time.Now()
	err = s.Rewind(ctxT(t, 60*time.Second), testCluster, a, upB, func(done, total int64) {
		mu.Lock()
		calls = append(calls, [2]int64{done, total})
		mu.Unlock()
	})
	t.Logf("Rewind of diverged old primary took %v (progress %v)", time.Since(t0), calls)
	if err != nil {
		t.Fatalf("Rewind: %v", err)
	}
	waitStreaming(t, s, b, a)
	t.Logf("Rewind to streaming: %v", time.Since(t0))
	mu.Lock()
	if len(calls) == 0 || calls[len(calls)-1][1] <= 0 || calls[len(calls)-1][0] > calls[len(calls)-1][1] {
		t.Errorf("progress calls %v: want a last call with 0 < done <= total", calls)
	}
	mu.Unlock()
	execSQL(t, s, b, `INSERT INTO t VALUES ('b-after-rewind')`)
	wantRows(t, s, a, "b-after-failover,b-after-rewind,common-1,common-2")
	if h := probe(t, s, a); !h.InRecovery || h.Receiver == nil || h.Receiver.SenderPort != b.Port {
		t.Errorf("A after rewind: %+v receiver %+v", h, h.Receiver)
	}
	checkRewound(t, s, a, upB)
	if got := readFile(t, filepath.Join(a.DataDir, startupLogFile)); !strings.HasPrefix(got, aStartupLog) {
		t.Errorf("A's own startup log was not kept:\n%s", got)
	}
	for _, n := range aLogs {
		if _, err := os.Stat(filepath.Join(a.DataDir, "log", n)); err != nil {
			t.Errorf("A's server log %s not kept: %v", n, err)
		}
	}
	if m, _ := filepath.Glob(a.DataDir + rewindLogsSuffix + "*"); len(m) > 0 {
		t.Errorf("saved logs left next to the datadir: %v", m)
	}

	// A (a standby now) killed -9 and rewound again: an unclean standby is
	// recovered first; it is not diverged, so nothing is rewound.
	if err := syscall.Kill(s.PID(a), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	execSQL(t, s, b, `INSERT INTO t VALUES ('b-while-a-down')`)
	t0 = time.Now()
	if err := s.Rewind(ctxT(t, 60*time.Second), testCluster, a, upB, nil); err != nil {
		t.Fatalf("Rewind of a killed standby: %v", err)
	}
	t.Logf("Rewind of a killed, not diverged standby took %v", time.Since(t0))
	waitStreaming(t, s, b, a)
	wantRows(t, s, a, "b-after-failover,b-after-rewind,b-while-a-down,common-1,common-2")
	checkRewound(t, s, a, upB)

	// A running standby: stopped, nothing to rewind, started again.
	t0 = time.Now()
	if err := s.Rewind(ctxT(t, 60*time.Second), testCluster, a, upB, nil); err != nil {
		t.Fatalf("Rewind of a running standby: %v", err)
	}
	t.Logf("Rewind of a running, not diverged standby took %v", time.Since(t0))
	waitStreaming(t, s, b, a)
}

// TestRewindImpossible: directories that are not ours, and a source that
// is another database system, are refused with ErrRewindImpossible; the
// target is left as it was.
func TestRewindImpossible(t *testing.T) {
	t.Parallel()
	s := newSup(t)
	root := testRoot(t)
	up := Upstream{Address: "127.0.0.1", Port: 1} // never reached

	missing := testInstance(t, root, 4, 1)
	err := s.Rewind(ctxT(t, 10*time.Second), testCluster, missing, up, nil)
	wantImpossible(t, err, "does not exist")

	foreign := testInstance(t, root, 5, 1)
	if err := os.MkdirAll(filepath.Dir(foreign.DataDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(foreign.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(foreign.DataDir, "PG_VERSION")
	if err := os.WriteFile(junk, []byte("15\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantImpossible(t, s.Rewind(ctxT(t, 10*time.Second), testCluster, foreign, up, nil), "is not a gpagent instance")
	if _, err := os.Stat(junk); err != nil {
		t.Errorf("foreign datadir touched: %v", err)
	}
	other := foreign
	other.DBID = 6
	if err := s.writeMarker(filepath.Join(foreign.DataDir, markerFile), testCluster, foreign); err != nil {
		t.Fatal(err)
	}
	wantImpossible(t, s.Rewind(ctxT(t, 10*time.Second), testCluster, other, up, nil), "belongs to gpagent cluster "+testCluster+" dbid 5")
	wantImpossible(t, s.Rewind(ctxT(t, 10*time.Second), "cluster-b", foreign, up, nil), "belongs to gpagent cluster "+testCluster)

	// Another initdb as the source: no common history.
	a := testInstance(t, root, 2, 0)
	c := testInstance(t, root, 7, 0)
	stopOnCleanup(t, s, a)
	stopOnCleanup(t, s, c)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, inst := range []Instance{a, c} {
		wg.Go(func() { errs[i] = s.InitPrimary(ctxT(t, 60*time.Second), testCluster, inst) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("InitPrimary: %v", err)
	}
	t0 := time.Now()
	err = s.Rewind(ctxT(t, 60*time.Second), testCluster, a, Upstream{Address: c.Address, Port: c.Port}, nil)
	t.Logf("Rewind from another system took %v: %v", time.Since(t0), err)
	wantImpossible(t, err, "different database systems")
	checkUntouched(t, s, a, c)
	if err := s.Start(ctxT(t, 30*time.Second), a); err != nil {
		t.Fatalf("Start after a refused rewind: %v", err)
	}
	if h := probe(t, s, a); h.InRecovery {
		t.Errorf("a refused rewind changed the instance: %+v", h)
	}
}

// TestRewindFailsMidway: pg_rewind failing after it began changing the
// target leaves a directory that no later Rewind touches
// (ErrRewindImpossible) and that a full recovery (CreateMirror) rebuilds.
func TestRewindFailsMidway(t *testing.T) {
	t.Parallel()
	s := newSup(t)
	root := testRoot(t)
	a := testInstance(t, root, 2, 0)
	b := testInstance(t, root, 3, 0)
	stopOnCleanup(t, s, a)
	stopOnCleanup(t, s, b)
	upB := Upstream{Address: b.Address, Port: b.Port}
	if err := s.InitPrimary(ctxT(t, 60*time.Second), testCluster, a); err != nil {
		t.Fatalf("InitPrimary: %v", err)
	}
	if err := s.CreateMirror(ctxT(t, 60*time.Second), testCluster, b, Upstream{Address: a.Address, Port: a.Port}, nil); err != nil {
		t.Fatalf("CreateMirror: %v", err)
	}
	waitStreaming(t, s, a, b)
	// B promoted while A goes on writing: they diverge.
	if err := s.Promote(ctxT(t, 60*time.Second), b); err != nil {
		t.Fatal(err)
	}
	execSQL(t, s, a, `CREATE TABLE t (v text)`, `INSERT INTO t VALUES ('only-a')`)
	execSQL(t, s, b, `CREATE TABLE t (v text)`, `INSERT INTO t VALUES ('b')`)
	// A file pg_rewind must overwrite that the OS user may not write.
	locked := filepath.Join(a.DataDir, "postgresql.auto.conf")
	if err := os.Chown(locked, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(locked, 0o400); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	err := s.Rewind(ctxT(t, 60*time.Second), testCluster, a, upB, nil)
	t.Logf("Rewind failing midway took %v: %v", time.Since(t0), err)
	wantImpossible(t, err, "must now be rebuilt")
	wantErr(t, err, "postgresql.auto.conf")
	if s.Ours(testCluster, a) {
		t.Fatal("a half-rewound datadir still looks finished")
	}
	wantImpossible(t, s.Rewind(ctxT(t, 30*time.Second), testCluster, a, upB, nil), "interrupted incremental recovery")

	// The full recovery rebuilds it.
	if err := s.CreateMirror(ctxT(t, 60*time.Second), testCluster, a, upB, nil); err != nil {
		t.Fatalf("CreateMirror over a half-rewound datadir: %v", err)
	}
	waitStreaming(t, s, b, a)
	wantRows(t, s, a, "b")
	if m, _ := filepath.Glob(a.DataDir + rewindLogsSuffix + "*"); len(m) != 1 {
		t.Errorf("want A's own logs kept aside after a failed rewind, got %v", m)
	}
}

func TestRewindFailure(t *testing.T) {
	for _, tc := range []struct {
		lines      []string
		reason     string
		impossible bool
	}{
		{[]string{"pg_rewind: error: source and target clusters are from different systems"}, "different database systems", true},
		{[]string{"pg_rewind: error: could not find common ancestor of the source and target cluster's timelines"}, "no common timeline history", true},
		{[]string{
			`pg_rewind: servers diverged at WAL location 0/3000148 on timeline 1`,
			`pg_rewind: error: could not open file "/d/pg_wal/000000010000000000000003": No such file or directory`,
			`pg_rewind: error: could not find previous WAL record at 0/3000148`,
		}, "segment 000000010000000000000003 is missing (needed to read WAL at 0/3000148); wal_keep_size (1GB) was too small", true},
		{[]string{`pg_rewind: error: could not read WAL record at 0/5000028: invalid record length`}, "WAL at 0/5000028 cannot be read", true},
		{[]string{
			`2025-11-24 20:00:00 UTC [1] PANIC:  could not locate a valid checkpoint record`,
			`pg_rewind: error: postgres single-user mode in target cluster failed`,
		}, "crash recovery of the target failed: PANIC:  could not locate a valid checkpoint record", true},
		{[]string{`pg_rewind: error: connection to server at "10.0.0.1", port 6000 failed: Connection refused`}, "", false},
	} {
		if got := rewindErrors(tc.lines, errors.New("exit status 1")); got == "" || strings.Contains(got, "pg_rewind: error") {
			t.Errorf("rewindErrors(%q) = %q", tc.lines, got)
		}
		reason, impossible := rewindFailure(tc.lines, "1GB")
		if impossible != tc.impossible || !strings.Contains(reason, tc.reason) {
			t.Errorf("%q:\n got %v %q\nwant %v %q", tc.lines, impossible, reason, tc.impossible, tc.reason)
		}
	}
	for line, want := range map[string]string{
		"1234/56789 kB (2%) copied":    "1234 56789", // as runTool passes it: trimmed
		"56789/56789 kB (100%) copied": "56789 56789",
		"pg_rewind: Done!":             "",
	} {
		got := ""
		if m := rewindProgress.FindStringSubmatch(line); m != nil {
			got = m[1] + " " + m[2]
		}
		if got != want {
			t.Errorf("progress %q: got %q want %q", line, got, want)
		}
	}
}

func TestDataDirSize(t *testing.T) {
	dir := t.TempDir()
	wal := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "base", "1"), 0o700))
	must(os.WriteFile(filepath.Join(dir, "base", "1", "1234"), make([]byte, 8192), 0o600))
	must(os.WriteFile(filepath.Join(dir, "PG_VERSION"), []byte("15\n"), 0o600))
	must(os.WriteFile(filepath.Join(wal, "000000010000000000000001"), make([]byte, 1000), 0o600))
	must(os.Symlink(wal, filepath.Join(dir, "pg_wal")))
	must(os.Symlink("/etc", filepath.Join(dir, "elsewhere"))) // not PostgreSQL's: not followed
	got, err := DataDirSize(dir)
	if err != nil || got != 8192+3+1000 {
		t.Fatalf("DataDirSize = %d, %v; want %d", got, err, 8192+3+1000)
	}
	if _, err := DataDirSize(filepath.Join(dir, "nope")); err == nil {
		t.Fatal("DataDirSize of a missing dir: no error")
	}
}

// BenchmarkRewind measures an incremental recovery against a full one:
// a pgbench database (scale 64, about 1 GB, and 256, about 4 GB, unless
// REWIND_SCALES says otherwise), a failover after which the old primary
// and the new one each changed about 10 MB of rows (100 transactions
// updating 1000 adjacent pgbench_accounts rows), then Rewind until the old
// primary streams, and for comparison Destroy + CreateMirror until it
// streams. It prints the figures; it asserts nothing about them.
//
//	go test -run '^$' -bench Rewind -benchtime 1x ./supervisor/
func BenchmarkRewind(b *testing.B) {
	scales := []int{64, 256}
	if v := os.Getenv("REWIND_SCALES"); v != "" {
		scales = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				b.Fatalf("REWIND_SCALES: %v", err)
			}
			scales = append(scales, n)
		}
	}
	for _, scale := range scales {
		b.Run(fmt.Sprintf("scale%d", scale), func(b *testing.B) {
			var st syscall.Statfs_t
			if err := syscall.Statfs(os.TempDir(), &st); err != nil {
				b.Fatal(err)
			}
			// Two copies of the data, and WAL.
			if need := uint64(scale) * 16 << 20 * 3; st.Bavail*uint64(st.Bsize) < need {
				b.Fatalf("scale %d needs about %d GB free in %s", scale, need>>30, os.TempDir())
			}
			for range b.N {
				benchRewind(b, scale)
			}
		})
	}
}

func benchRewind(b *testing.B, scale int) {
	cfg := testConfig()
	cfg.WalKeepSize = "1GB" // the default
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	s.noSync = true // setup only; the measured steps sync as in production
	b.Cleanup(s.Close)
	s.bins["pgbench"] = filepath.Join(s.cfg.BinDir, "pgbench")
	root, err := os.MkdirTemp("", "gpagent-bench-*")
	if err != nil {
		b.Fatal(err)
	}
	if err := os.Chmod(root, 0o755); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(root) })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	b.Cleanup(cancel)
	var insts []Instance
	for _, dbid := range []int{2, 3} {
		inst := Instance{DBID: dbid, Content: 0, Address: "127.0.0.1", Port: benchPort(b),
			DataDir: filepath.Join(root, "data", "gpseg0-dbid"+strconv.Itoa(dbid))}
		b.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s.Stop(ctx, inst)
		})
		insts = append(insts, inst)
	}
	a, m := insts[0], insts[1]
	upA := Upstream{Address: a.Address, Port: a.Port}
	upM := Upstream{Address: m.Address, Port: m.Port}

	if err := s.InitPrimary(ctx, testCluster, a); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	pgbench(b, s, a, "-i", "-q", "-s", strconv.Itoa(scale))
	size, _ := DataDirSize(a.DataDir)
	b.Logf("scale %d: pgbench -i took %v; data dir %d MB", scale, time.Since(t0).Round(time.Millisecond), size>>20)
	t0 = time.Now()
	if err := s.CreateMirror(ctx, testCluster, m, upA, nil); err != nil {
		b.Fatal(err)
	}
	b.Logf("scale %d: initial CreateMirror took %v", scale, time.Since(t0).Round(time.Millisecond))
	waitStreaming(b, s, a, m)

	// Cut the mirror off, diverge, fail over, write on the new primary.
	script := filepath.Join(root, "update.sql")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(
		"\\set start random(1, %d)\nUPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid BETWEEN :start AND :start + 999;\n",
		scale*100000-1000)), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := s.Stop(ctx, m); err != nil {
		b.Fatal(err)
	}
	before := probe(b, s, a).CurrentLSN
	pgbench(b, s, a, "-n", "-t", "100", "-f", script)
	b.Logf("scale %d: old primary diverged by %d MB of WAL", scale, (probe(b, s, a).CurrentLSN-before)>>20)
	if err := syscall.Kill(s.PID(a), syscall.SIGKILL); err != nil {
		b.Fatal(err)
	}
	if err := s.Start(ctx, m); err != nil {
		b.Fatal(err)
	}
	if err := s.Promote(ctx, m); err != nil {
		b.Fatal(err)
	}
	before = probe(b, s, m).CurrentLSN
	pgbench(b, s, m, "-n", "-t", "100", "-f", script)
	b.Logf("scale %d: new primary wrote %d MB of WAL since the failover", scale, (probe(b, s, m).CurrentLSN-before)>>20)

	s.noSync = false
	var copied, total int64
	b.ResetTimer()
	t0 = time.Now()
	err = s.Rewind(ctx, testCluster, a, upM, func(done, tot int64) { copied, total = done, tot })
	rewound := time.Since(t0)
	if err != nil {
		b.Fatalf("Rewind: %v", err)
	}
	waitStreamingB(b, s, m, a, 10*time.Minute)
	streaming := time.Since(t0)
	b.StopTimer()
	size, _ = DataDirSize(a.DataDir)
	b.Logf("scale %d: Rewind took %v (pg_rewind copied %d of %d MB estimated), streaming after %v; data dir %d MB",
		scale, rewound.Round(time.Millisecond), copied>>20, total>>20, streaming.Round(time.Millisecond), size>>20)
	b.ReportMetric(streaming.Seconds(), "s-rewind-to-streaming")
	b.ReportMetric(float64(copied>>20), "MB-copied")
	b.ReportMetric(float64(size>>20), "MB-datadir")

	// The full recovery of the same instance, for comparison.
	t0 = time.Now()
	if err := s.Destroy(ctx, testCluster, a); err != nil {
		b.Fatal(err)
	}
	if err := s.CreateMirror(ctx, testCluster, a, upM, nil); err != nil {
		b.Fatal(err)
	}
	waitStreamingB(b, s, m, a, 10*time.Minute)
	full := time.Since(t0)
	b.Logf("scale %d: full recovery (Destroy + CreateMirror) to streaming took %v", scale, full.Round(time.Millisecond))
	b.ReportMetric(full.Seconds(), "s-full-to-streaming")
}

// benchPort is freePort for a benchmark.
func benchPort(b *testing.B) int {
	portMu.Lock()
	defer portMu.Unlock()
	for range 1000 {
		p := 10000 + rand.IntN(ephemeralMin()-10000)
		if portsGiven[p] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		ln.Close()
		portsGiven[p] = true
		return p
	}
	b.Fatal("no free port found")
	return 0
}

// pgbench runs pgbench against inst as the OS user, over TCP.
func pgbench(tb testing.TB, s *Supervisor, inst Instance, args ...string) {
	tb.Helper()
	args = append([]string{"-h", inst.Address, "-p", strconv.Itoa(inst.Port), "-U", s.cfg.SuperUser}, args...)
	args = append(args, "postgres")
	if err := s.runTool(context.Background(), "pgbench", args, []string{"PGPASSWORD=" + s.cfg.SuperPassword}, nil); err != nil {
		tb.Fatal(err)
	}
}

// waitStreaming waits until standby streams from primary, as primary's
// pg_stat_replication shows it.
func waitStreaming(tb testing.TB, s *Supervisor, primary, standby Instance) {
	tb.Helper()
	waitStreamingB(tb, s, primary, standby, 30*time.Second)
}

func waitStreamingB(tb testing.TB, s *Supervisor, primary, standby Instance, d time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		h, err := s.Probe(context.Background(), primary)
		seen := fmt.Sprint(err)
		if err == nil {
			if st := replicaState(h, AppName(standby.DBID)); strings.HasPrefix(st, "streaming/") {
				return
			}
			seen = fmt.Sprintf("%+v", h.Replication)
		}
		if time.Now().After(deadline) {
			tb.Fatalf("dbid %d not streaming from dbid %d within %v; last seen: %s", standby.DBID, primary.DBID, d, seen)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkRewound verifies what Rewind leaves: a finished instance of ours,
// configured as a standby of up, holding no replication slots.
func checkRewound(t *testing.T, s *Supervisor, inst Instance, up Upstream) {
	t.Helper()
	if !s.Ours(testCluster, inst) {
		t.Error("rewound datadir does not carry its own marker")
	}
	checkOwnership(t, inst, true)
	c, err := s.readManagedConf(inst.DataDir)
	if want := s.standbyConf(inst, up); err != nil || c != want {
		t.Errorf("gpagent.conf after rewind: %+v (%v)\nwant %+v", c, err, want)
	}
	if _, err := os.Stat(filepath.Join(inst.DataDir, standbySignal)); err != nil {
		t.Errorf("no standby.signal: %v", err)
	}
	if slots, _ := os.ReadDir(filepath.Join(inst.DataDir, "pg_replslot")); len(slots) > 0 {
		t.Errorf("rewound instance holds replication slots: %v", slots)
	}
}

// checkUntouched verifies that a refused or failed-early rewind left inst
// as it was: still ours, no intent, no saved logs, no slot on up.
func checkUntouched(t *testing.T, s *Supervisor, inst, up Instance) {
	t.Helper()
	if !s.Ours(testCluster, inst) {
		t.Error("marker not put back")
	}
	if _, err := os.Stat(inst.DataDir + intentSuffix); !os.IsNotExist(err) {
		t.Errorf("intent file left: %v", err)
	}
	if m, _ := filepath.Glob(inst.DataDir + rewindLogsSuffix + "*"); len(m) > 0 {
		t.Errorf("saved logs left next to the datadir: %v", m)
	}
	if n := queryString(t, s, up, `SELECT count(*)::text FROM pg_replication_slots WHERE slot_name = '`+SlotName(inst.DBID)+`'`); n != "0" {
		t.Errorf("slot %s left on the upstream", SlotName(inst.DBID))
	}
}

func wantImpossible(t *testing.T, err error, substr string) {
	t.Helper()
	if !errors.Is(err, ErrRewindImpossible) {
		t.Fatalf("got %v, want ErrRewindImpossible", err)
	}
	wantErr(t, err, substr)
}

func wantRows(t *testing.T, s *Supervisor, inst Instance, want string) {
	t.Helper()
	var got string
	waitFor(t, 20*time.Second, "rows on dbid "+itoa(inst.DBID), func() (bool, string) {
		conn, err := s.connect(context.Background(), inst.Address, inst.Port)
		if err != nil {
			return false, err.Error()
		}
		defer closeConn(conn)
		if err := conn.QueryRow(context.Background(), `SELECT string_agg(v, ',' ORDER BY v) FROM t`).Scan(&got); err != nil {
			return false, err.Error()
		}
		return got == want, got
	})
}

func execSQL(t *testing.T, s *Supervisor, inst Instance, stmts ...string) {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	conn, err := s.connect(ctx, inst.Address, inst.Port)
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn(conn)
	for _, q := range stmts {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s on dbid %d: %v", q, inst.DBID, err)
		}
	}
}

func queryString(t *testing.T, s *Supervisor, inst Instance, q string) string {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	conn, err := s.connect(ctx, inst.Address, inst.Port)
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn(conn)
	var v string
	if err := conn.QueryRow(ctx, q).Scan(&v); err != nil {
		t.Fatalf("%s on dbid %d: %v", q, inst.DBID, err)
	}
	return v
}

func probe(tb testing.TB, s *Supervisor, inst Instance) Health {
	tb.Helper()
	h, err := s.Probe(context.Background(), inst)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func logNames(t *testing.T, inst Instance) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(inst.DataDir, "log"))
	if err != nil || len(entries) == 0 {
		t.Fatalf("no server logs in %s: %v", inst.DataDir, err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
