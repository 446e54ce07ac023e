package supervisor

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestPrimaryLifecycle walks one real primary through creation, probes,
// preflight refusals, stop/start, adoption by a fresh supervisor (an agent
// restart) and crash detection for a started and an adopted postmaster.
func TestPrimaryLifecycle(t *testing.T) {
	t.Parallel()
	s := newSup(t)
	root := testRoot(t)
	inst := testInstance(t, root, 1, -1)
	stopOnCleanup(t, s, inst)

	if err := s.Preflight(testCluster, inst); err != nil {
		t.Fatalf("Preflight before creation: %v", err)
	}
	if err := s.InitPrimary(ctxT(t, 60*time.Second), testCluster, inst); err != nil {
		t.Fatalf("InitPrimary: %v", err)
	}
	if !s.Ours(testCluster, inst) || s.Ours("other", inst) {
		t.Fatal("Ours does not recognize the new primary (or recognizes it for another cluster)")
	}
	checkOwnership(t, inst, true)

	h, err := s.Probe(ctxT(t, 10*time.Second), inst)
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	if h.InRecovery || h.CurrentLSN == 0 || h.Receiver != nil {
		t.Fatalf("Probe of a new primary: %+v", h)
	}

	// The replication role logs in with the password given: the SCRAM
	// verifier computed by the supervisor is right.
	conn, err := pgx.Connect(ctxT(t, 10*time.Second), connString(inst.Address, inst.Port, "replicator", testReplPassword, "dbname", "postgres", "sslmode", "disable"))
	if err != nil {
		t.Fatalf("replication role cannot log in: %v", err)
	}
	var repl bool
	if err := conn.QueryRow(context.Background(), `SELECT rolreplication FROM pg_roles WHERE rolname = current_user`).Scan(&repl); err != nil || !repl {
		t.Fatalf("replication role: rolreplication=%v err=%v", repl, err)
	}
	conn.Close(context.Background())

	// Idempotent: a second InitPrimary leaves the running server alone.
	pid := s.PID(inst)
	if err := s.InitPrimary(ctxT(t, 30*time.Second), testCluster, inst); err != nil || s.PID(inst) != pid {
		t.Fatalf("second InitPrimary: err=%v pid %d -> %d", err, pid, s.PID(inst))
	}
	if err := s.Preflight(testCluster, inst); err != nil {
		t.Fatalf("Preflight of our running instance: %v", err)
	}

	// Refusals: another dbid on the running primary's port; another
	// cluster's view of this datadir.
	other := testInstance(t, root, 2, 0)
	other.Port = inst.Port
	wantErr(t, s.Preflight(testCluster, other), "port "+itoa(inst.Port)+" on 127.0.0.1 is in use")
	wantErr(t, s.Preflight("cluster-b", inst), "belongs to gpagent cluster "+testCluster)

	// Agent restart: a fresh Supervisor adopts the running postmaster.
	s2 := newSup(t)
	if s2.PID(inst) != pid {
		t.Fatalf("fresh supervisor PID = %d, want %d", s2.PID(inst), pid)
	}
	got, ok, err := s2.Adopt(inst)
	if err != nil || !ok || got != pid {
		t.Fatalf("Adopt = %d, %v, %v; want %d", got, ok, err, pid)
	}
	if err := s2.Start(ctxT(t, 10*time.Second), inst); err != nil || s2.PID(inst) != pid {
		t.Fatalf("Start of an adopted instance restarted it or failed: err=%v pid=%d", err, s2.PID(inst))
	}

	// Stop and Start. An exit the supervisor caused is not on its Exits.
	drain(s.Exits())
	if err := s.Stop(ctxT(t, 30*time.Second), inst); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if p := s.PID(inst); p != 0 {
		t.Fatalf("PID after Stop = %d", p)
	}
	if _, err := s.Probe(ctxT(t, 10*time.Second), inst); err == nil {
		t.Fatal("Probe of a stopped instance succeeded")
	}
	select {
	case d := <-s.Exits():
		t.Fatalf("Stop reported dbid %d on Exits", d)
	default:
	}
	waitExit(t, s2.Exits(), inst.DBID, 10*time.Second) // s2 did not stop it: news to s2
	if err := s.Stop(ctxT(t, 10*time.Second), inst); err != nil {
		t.Fatalf("Stop of a stopped instance: %v", err)
	}
	if err := s.Start(ctxT(t, 30*time.Second), inst); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if _, err := s.Probe(ctxT(t, 10*time.Second), inst); err != nil {
		t.Fatalf("Probe after Start: %v", err)
	}

	// kill -9 of a postmaster this supervisor started: seen via cmd.Wait.
	pid = s.PID(inst)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExit(t, s.Exits(), inst.DBID, 10*time.Second)

	// Start after the crash: the dead postmaster's children may still hold
	// its shared memory for a moment; Start waits them out.
	if err := s.Start(ctxT(t, 30*time.Second), inst); err != nil {
		t.Fatalf("Start after kill -9: %v", err)
	}

	// A crash that leaves a child behind (stopped here, so it cannot
	// notice): the new postmaster finds the old shared memory in use, and
	// Start keeps trying until the child has let go of it.
	pid = s.PID(inst)
	child := childOf(t, pid, "checkpointer") // attached to shared memory, unlike the logger
	if err := syscall.Kill(child, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExit(t, s.Exits(), inst.DBID, 10*time.Second)
	startCtx := ctxT(t, 30*time.Second)
	started := make(chan error, 1)
	go func() { started <- s.Start(startCtx, inst) }()
	waitFor(t, 20*time.Second, "start held up by the old shared memory", func() (bool, string) {
		data, _ := os.ReadFile(filepath.Join(inst.DataDir, startupLogFile))
		return strings.Contains(string(data), "pre-existing shared memory block"), lastLines(string(data), 2)
	})
	if err := syscall.Kill(child, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := <-started; err != nil {
		t.Fatalf("Start after the leftover child exited: %v", err)
	}

	// kill -9 of an adopted postmaster: seen via the pidfd.
	s3 := newSup(t)
	pid, ok, err = s3.Adopt(inst)
	if err != nil || !ok {
		t.Fatalf("Adopt: %d %v %v", pid, ok, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExit(t, s3.Exits(), inst.DBID, 10*time.Second)
	if p, ok, err := s3.Adopt(inst); ok || err != nil {
		t.Fatalf("Adopt of a killed postmaster = %d, %v, %v", p, ok, err)
	}
}

// checkOwnership verifies the files are the OS user's, and the secrets
// are not world-readable; parentMade: the supervisor made the parent.
func checkOwnership(t *testing.T, inst Instance, parentMade bool) {
	t.Helper()
	want := map[string]os.FileMode{
		inst.DataDir: 0o700,
		filepath.Join(inst.DataDir, managedConfFile): 0o600,
		filepath.Join(inst.DataDir, markerFile):      0o600,
	}
	if parentMade {
		want[filepath.Dir(inst.DataDir)] = 0o755
	}
	for path, mode := range want {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %04o, want %04o", path, fi.Mode().Perm(), mode)
		}
		if os.Geteuid() == 0 {
			if uid := fi.Sys().(*syscall.Stat_t).Uid; uid == 0 {
				t.Errorf("%s is owned by root", path)
			}
		}
	}
	if _, err := os.Stat(inst.DataDir + intentSuffix); !os.IsNotExist(err) {
		t.Errorf("intent file left behind: %v", err)
	}
}

// TestInitPrimaryClearsPartial: the remains of a creation that crashed
// midway (intent file present, no marker) are cleared and the creation
// completes; a foreign directory is refused and left alone.
func TestInitPrimaryClearsPartial(t *testing.T) {
	t.Parallel()
	s := newSup(t)
	root := testRoot(t)
	inst := testInstance(t, root, 5, 2)
	stopOnCleanup(t, s, inst)

	if err := os.MkdirAll(filepath.Dir(inst.DataDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(inst.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(inst.DataDir, "PG_VERSION")
	if err := os.WriteFile(junk, []byte("15\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := s.InitPrimary(ctxT(t, 30*time.Second), testCluster, inst)
	wantErr(t, err, "exists and is not a gpagent instance")
	if _, err := os.Stat(junk); err != nil {
		t.Fatalf("a refused datadir was touched: %v", err)
	}

	if err := s.writeMarker(inst.DataDir+intentSuffix, testCluster, inst); err != nil {
		t.Fatal(err)
	}
	if err := s.Preflight(testCluster, inst); err != nil {
		t.Fatalf("Preflight of our unfinished datadir: %v", err)
	}
	if err := s.InitPrimary(ctxT(t, 60*time.Second), testCluster, inst); err != nil {
		t.Fatalf("InitPrimary over unfinished remains: %v", err)
	}
	checkOwnership(t, inst, false)
	if data, err := os.ReadFile(filepath.Join(inst.DataDir, "postgresql.conf")); err != nil ||
		!strings.HasSuffix(strings.TrimSpace(string(data)), "include_if_exists = 'gpagent.conf'") {
		t.Fatalf("postgresql.conf does not end with the include: %v", err)
	}

	// Destroy deletes only what is ours, and keeps the directory.
	wantErr(t, s.Destroy(ctxT(t, 10*time.Second), "cluster-b", inst), "belongs to gpagent cluster "+testCluster)
	if err := s.Destroy(ctxT(t, 30*time.Second), testCluster, inst); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if empty, err := isEmptyDir(inst.DataDir); err != nil || !empty || s.PID(inst) != 0 {
		t.Fatalf("after Destroy: empty=%v err=%v pid=%d", empty, err, s.PID(inst))
	}
}

// childOf returns the child of pid whose title contains name (a
// postmaster's auxiliary process), from /proc.
func childOf(t *testing.T, pid int, name string) int {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// Fields after the parenthesized command: state, ppid, ...
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if len(f) > 1 && f[1] == strconv.Itoa(pid) && strings.Contains(string(cmd), name) {
			return c
		}
	}
	t.Fatalf("no child %q of pid %d", name, pid)
	return 0
}
