package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestDemo_StopsUnderAClosedPipe: `gpagent demo | tee demo.log`, then
// Ctrl-C. The terminal's SIGINT reaches tee too, which exits first, so
// the demo's stop messages go to a closed pipe. The demo must still stop
// every agent and postmaster it started, and exit by itself.
func TestDemo_StopsUnderAClosedPipe(t *testing.T) {
	dir, err := os.MkdirTemp("", "gpagent-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // the postgres OS user reads it
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	d := &demo{t: t, dir: dir, out: &syncBuffer{}, done: make(chan error, 1)}
	stderr := &syncBuffer{}
	d.cmd = exec.Command(binary, "demo", "--dir", dir, "--hosts", "2", "--no-mirrors")
	d.cmd.Stdout, d.cmd.Stderr = w, stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close() // the demo holds the only write end
	go func() { d.done <- d.cmd.Wait() }()
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			_, _ = d.out.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	var pids []int // every agent and postmaster of the demo
	t.Cleanup(func() {
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if t.Failed() {
			t.Logf("kept %s for inspection", dir)
			return
		}
		os.RemoveAll(dir)
	})

	envFile := filepath.Join(dir, "env")
	waitUntil(t, 4*time.Minute, "demo writes "+envFile, func() (bool, string) {
		select {
		case err := <-d.done:
			d.done <- err
			t.Fatalf("demo exited early: %v\n%s\n%s", err, d.out, stderr)
		default:
		}
		b, err := os.ReadFile(envFile)
		if err != nil {
			return false, lastLines(d.out.String(), 5)
		}
		d.loadEnv(b)
		return d.addr != "", string(b)
	})
	for _, h := range d.hostNames() {
		pids = append(pids, d.hostAgentPID(h))
	}
	for _, s := range d.state().Segments {
		pids = append(pids, postmasterPID(s.DataDir))
	}
	for _, pid := range pids {
		if !alive(pid) {
			t.Fatalf("pid %d of the demo is not running before the stop (pids %v)", pid, pids)
		}
	}

	// tee exits on Ctrl-C before the demo writes "demo: stopping".
	r.Close()
	<-readerDone
	if err := d.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("demo exited with %v, want 0 (stderr:\n%s)", err, lastLines(stderr.String(), 20))
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("demo did not exit within 3m of SIGINT")
	}
	waitUntil(t, 2*time.Minute, "every agent and postmaster of the demo is gone", func() (bool, string) {
		var left []int
		for _, pid := range pids {
			if alive(pid) {
				left = append(left, pid)
			}
		}
		return len(left) == 0, fmt.Sprintf("still running: %v of %v", left, pids)
	})
}
