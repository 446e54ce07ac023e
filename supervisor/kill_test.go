package supervisor

import (
	"context"
	"syscall"
	"testing"
	"time"
)

// TestKillStoppedPrimary: Kill ends a primary whose postmaster is
// SIGSTOPped, backends included (they run in sessions of their own and
// keep serving their clients while the postmaster is stopped), so that a
// session opened before cannot commit; the instance then starts again.
func TestKillStoppedPrimary(t *testing.T) {
	t.Parallel()
	s := newSup(t)
	root := testRoot(t)
	inst := testInstance(t, root, 1, -1)
	stopOnCleanup(t, s, inst)
	if err := s.InitPrimary(ctxT(t, 60*time.Second), testCluster, inst); err != nil {
		t.Fatalf("InitPrimary: %v", err)
	}
	sess, err := s.connect(ctxT(t, 10*time.Second), inst.Address, inst.Port)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer closeConn(sess)
	ctx := ctxT(t, 30*time.Second)
	for _, q := range []string{"SET synchronous_commit = local", "CREATE TABLE k (id int)", "INSERT INTO k VALUES (1)"} {
		if _, err := sess.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	pm := s.PID(inst)
	backends, err := dataDirProcs(inst.DataDir, pm)
	if err != nil || len(backends) == 0 {
		t.Fatalf("processes of %s: %v, %v", inst.DataDir, backends, err)
	}
	if err := syscall.Kill(pm, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pm, syscall.SIGCONT) })
	// The backend serves its session while the postmaster is stopped.
	if _, err := sess.Exec(ctx, "INSERT INTO k VALUES (2)"); err != nil {
		t.Fatalf("insert with the postmaster stopped: %v", err)
	}

	if err := s.Kill(ctxT(t, 20*time.Second), inst); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if pid := s.PID(inst); pid != 0 {
		t.Errorf("postmaster %d still running after Kill", pid)
	}
	if left, _ := dataDirProcs(inst.DataDir, pm); len(left) > 0 {
		t.Errorf("processes of %s left after Kill: %v", inst.DataDir, left)
	}
	if _, err := sess.Exec(ctx, "INSERT INTO k VALUES (3)"); err == nil {
		t.Error("a session opened before Kill still commits")
	}
	if err := s.Kill(ctx, inst); err != nil {
		t.Errorf("Kill of an instance not running: %v", err)
	}
	// Crash recovery brings it back with what it had flushed.
	if err := s.Start(ctxT(t, 60*time.Second), inst); err != nil {
		t.Fatalf("Start after Kill: %v", err)
	}
	conn, err := s.connect(ctxT(t, 10*time.Second), inst.Address, inst.Port)
	if err != nil {
		t.Fatalf("connect after restart: %v", err)
	}
	defer closeConn(conn)
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM k").Scan(&n); err != nil || n != 2 {
		t.Errorf("rows after restart: %d, %v; want 2", n, err)
	}
}
