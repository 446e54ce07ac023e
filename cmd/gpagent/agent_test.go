package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestHelperProcess is not a test: it is the gpagent binary when a test
// re-runs its own executable with GPAGENT_HELPER_PROCESS=1, so a test can
// signal a real process without building the binary.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("GPAGENT_HELPER_PROCESS") != "1" {
		return
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	os.Exit(run(args, os.Stdin, os.Stdout, os.Stderr))
}

// helperGPAgent is a command that runs gpagent with args in a new process.
func helperGPAgent(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestHelperProcess$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), "GPAGENT_HELPER_PROCESS=1")
	return cmd
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitLog waits for the log to hold want, failing with what it holds.
func waitLog(t *testing.T, log *lockedBuffer, exited <-chan error, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(log.String(), want) {
		select {
		case err := <-exited:
			t.Fatalf("agent exited (%v) before logging %q; log:\n%s", err, want, log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log after 30 s; log:\n%s", want, log)
		}
	}
}

// TestAgent_SIGHUPReloads: a real agent process survives SIGHUP, applies a
// changed log level, and refuses a bad config whole, keeping its own.
// secretFiles writes a cluster token and a gossip key into dir, as
// gpagent keygen makes them, and returns the config lines naming them:
// an agent refuses to start without them.
func secretFiles(t *testing.T, dir string) string {
	t.Helper()
	token, key := filepath.Join(dir, "token"), filepath.Join(dir, "gossip.key")
	for _, f := range []string{token, key} {
		if err := os.WriteFile(f, []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return fmt.Sprintf("token_file: %s\ngossip_key_file: %s\n", token, key)
}

func TestAgent_SIGHUPReloads(t *testing.T) {
	dir := t.TempDir()
	base := fmt.Sprintf(`name: hup
address: 127.0.0.1
data_dir: %s
api_addr: 127.0.0.1:0
raft_addr: 127.0.0.1:0
gossip_addr: 127.0.0.1:0
bootstrap: true
postgres: {superuser_password: a, replication_password: b}
`, filepath.Join(dir, "data")) + secretFiles(t, dir)
	path := filepath.Join(dir, "agent.yaml")
	write := func(doc string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(base + "log_level: warn\n")
	cmd := helperGPAgent("agent", "--config", path)
	log := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	// The API address file is written once the agent runs (and so once
	// its SIGHUP handler is in place).
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "data", "api.addr")); err == nil {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("agent exited at start: %v; log:\n%s", err, log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent did not start; log:\n%s", log)
		}
	}
	if strings.Contains(log.String(), "level=INFO") {
		t.Fatalf("info lines at log_level warn:\n%s", log)
	}
	addr, err := os.ReadFile(filepath.Join(dir, "data", "api.addr"))
	if err != nil {
		t.Fatal(err)
	}

	// A file with an unknown field is refused whole: its log_level is
	// not applied either.
	write(base + "log_level: info\nprobe_intervall: 2s\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, log, exited, "config reload refused")
	if !strings.Contains(log.String(), path) || !strings.Contains(log.String(), "probe_intervall") {
		t.Errorf("the refusal names neither the file nor the field:\n%s", log)
	}

	// gpagent reload: the level is still warn, so it changes now; the
	// API address needs a restart.
	write(strings.Replace(base, "api_addr: 127.0.0.1:0", "api_addr: 127.0.0.1:7999", 1) + "log_level: info\n")
	t.Setenv("GPAGENT_TOKEN", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=") // secretFiles' token
	code, stdout, stderr := runCLI(t, "", "reload", "--addr", strings.TrimSpace(string(addr)))
	if code != 0 || !strings.Contains(stdout, "applied: log_level\n") || !strings.Contains(stdout, "restart (left as they were): api_addr") {
		t.Fatalf("gpagent reload: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	waitLog(t, log, exited, "level=INFO msg=\"config reloaded\"")
	if !strings.Contains(log.String(), `fields=[api_addr]`) {
		t.Errorf("the restart-only field api_addr is not named in the log:\n%s", log)
	}

	// SIGHUP again: the agent is still there and logs at info.
	before := strings.Count(log.String(), "config reloaded")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for strings.Count(log.String(), "config reloaded") == before {
		select {
		case err := <-exited:
			t.Fatalf("agent exited after SIGHUP: %v; log:\n%s", err, log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no second reload logged:\n%s", log)
		}
	}
	select {
	case err := <-exited:
		t.Fatalf("agent exited: %v; log:\n%s", err, log)
	default:
	}
}
