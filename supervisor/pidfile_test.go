package supervisor

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestStaleStandalonePidFile: a standalone backend (the single-user
// crash recovery pg_rewind runs) writes its pid negated into
// postmaster.pid, and leaves the file behind when it is cut short. Such a
// file whose process is gone is no running server: PID and Adopt see
// none, Start goes through, and so does the full recovery (Destroy, then
// CreateMirror), which once failed with `bad pid line "-NNNN"`.
func TestStaleStandalonePidFile(t *testing.T) {
	t.Parallel()
	s := newSup(t)
	root := testRoot(t)
	prim := testInstance(t, root, 2, 0)
	old := testInstance(t, root, 3, 0)
	stopOnCleanup(t, s, prim)
	stopOnCleanup(t, s, old)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, inst := range []Instance{prim, old} {
		wg.Go(func() { errs[i] = s.InitPrimary(ctxT(t, 60*time.Second), testCluster, inst) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("InitPrimary: %v", err)
	}
	if err := s.Stop(ctxT(t, 30*time.Second), old); err != nil {
		t.Fatalf("Stop: %v", err)
	}

	writeStandalonePidFile(t, s, old)
	if pid := s.PID(old); pid != 0 {
		t.Errorf("PID with a stale standalone lock file = %d, want 0", pid)
	}
	if pid, ok, err := s.Adopt(old); ok || err != nil {
		t.Errorf("Adopt with a stale standalone lock file = %d, %v, %v; want none, no error", pid, ok, err)
	}
	if err := s.Start(ctxT(t, 60*time.Second), old); err != nil {
		t.Fatalf("Start with a stale standalone lock file: %v", err)
	}
	if err := s.Stop(ctxT(t, 30*time.Second), old); err != nil {
		t.Fatalf("Stop: %v", err)
	}

	// The full recovery path of `recoverseg -F`.
	writeStandalonePidFile(t, s, old)
	if err := s.Destroy(ctxT(t, 30*time.Second), testCluster, old); err != nil {
		t.Fatalf("Destroy with a stale standalone lock file: %v", err)
	}
	up := Upstream{Address: prim.Address, Port: prim.Port}
	if err := s.CreateMirror(ctxT(t, 90*time.Second), testCluster, old, up, nil); err != nil {
		t.Fatalf("CreateMirror after Destroy: %v", err)
	}
	if h := probe(t, s, old); !h.InRecovery {
		t.Errorf("rebuilt instance is not a standby: %+v", h)
	}
}

// writeStandalonePidFile writes the lock file a standalone backend of
// inst would leave: its pid negated, here the pid of a process that has
// exited.
func writeStandalonePidFile(t *testing.T, s *Supervisor, inst Instance) {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	body := fmt.Sprintf("-%d\n%s\n%d\n%d\n\n\n", pid, inst.DataDir, time.Now().Unix(), inst.Port)
	path := filepath.Join(inst.DataDir, "postmaster.pid")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.user.chown(path); err != nil {
		t.Fatal(err)
	}
}
