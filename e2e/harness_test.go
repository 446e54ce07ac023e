// Package e2e runs the gpagent binary against real PostgreSQL instances,
// as an operator would: the demo cluster, the CLI, kill -9.
package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gpagent/gpagent/agent"
	"github.com/gpagent/gpagent/api"
)

// binary is the gpagent built once for the package's tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gpagent-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "gpagent")
	// A race-built gpagent sleeps GORACE's atexit_sleep_ms (1 s by
	// default) before it exits: every CLI call of the tests would cost
	// that second, and a time measured around one would be off by it.
	if raceEnabled && !strings.Contains(os.Getenv("GORACE"), "atexit_sleep_ms") {
		os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=50"))
	}
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/gpagent")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build gpagent:", err)
		os.Exit(1)
	}
	// Every cluster the tests start (gpagent demo, the netns cluster)
	// takes $GPAGENT_TOKEN as its cluster token, and the gpagent commands
	// the tests run send it, as an operator's shell would.
	if os.Getenv("GPAGENT_TOKEN") == "" {
		os.Setenv("GPAGENT_TOKEN", "e2e-token-"+strconv.Itoa(os.Getpid()))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// newClient is an API client of the agent at addr with the tests'
// cluster token (the netns cluster's credential).
func newClient(addr string) *api.Client {
	return api.NewClient(addr).WithToken(os.Getenv("GPAGENT_TOKEN"))
}

// client is an API client of the demo's agent at addr, as the shell
// that sourced the demo's env file: HTTPS trusting the demo's CA, with
// its operator certificate. A view of the netns cluster (no env file)
// uses the token.
func (d *demo) client(addr string) *api.Client {
	d.t.Helper()
	if d.envVar("GPAGENT_CACERT") == "" {
		return newClient(addr)
	}
	cfg, err := d.tlsConfig(true)
	if err != nil {
		d.t.Fatal(err)
	}
	return api.NewTLSClient(addr, cfg)
}

// tlsConfig trusts the demo's CA (GPAGENT_CACERT of its env file) and,
// when operator is set, presents its operator certificate.
func (d *demo) tlsConfig(operator bool) (*tls.Config, error) {
	ca, err := os.ReadFile(d.envVar("GPAGENT_CACERT"))
	if err != nil {
		return nil, fmt.Errorf("the demo's CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("the demo's CA %s: no PEM certificate", d.envVar("GPAGENT_CACERT"))
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if operator {
		pair, err := tls.LoadX509KeyPair(d.envVar("GPAGENT_CLIENT_CERT"), d.envVar("GPAGENT_CLIENT_KEY"))
		if err != nil {
			return nil, fmt.Errorf("the demo's operator certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// envVar is a variable the demo's env file exports.
func (d *demo) envVar(name string) string {
	for _, kv := range d.env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

// demo is a running `gpagent demo` process and its folder.
type demo struct {
	t    testing.TB
	dir  string
	cmd  *exec.Cmd
	out  *syncBuffer
	addr string
	// env is what the demo's env file exports, as NAME=value.
	env  []string
	done chan error
}

// startDemo runs `gpagent demo --dir DIR args...` and waits until it has
// written DIR/env, i.e. the cluster is up. Cleanup stops it with SIGINT
// and checks it exits 0.
func startDemo(t testing.TB, args ...string) *demo {
	t.Helper()
	dir, err := os.MkdirTemp("", "gpagent-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	// The instances run as the postgres OS user: it must reach the folder.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d := &demo{t: t, dir: dir, out: &syncBuffer{}, done: make(chan error, 1)}
	d.cmd = exec.Command(binary, append([]string{"demo", "--dir", dir}, args...)...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			t.Logf("kept %s for inspection (agent logs in <host>/agent.log)", dir)
			return
		}
		os.RemoveAll(dir)
	})

	envFile := filepath.Join(dir, "env")
	waitUntil(t, 4*time.Minute, "demo writes "+envFile, func() (bool, string) {
		select {
		case err := <-d.done:
			d.done <- err
			t.Fatalf("demo exited early: %v\n%s\nagent log:\n%s", err, d.out, d.agentLog())
		default:
		}
		b, err := os.ReadFile(envFile)
		if err != nil {
			return false, lastLines(d.out.String(), 5)
		}
		d.loadEnv(b)
		return d.addr != "", string(b)
	})
	return d
}

// loadEnv takes what the demo's env file exports: the address, and
// the TLS files of the shell that sources it.
func (d *demo) loadEnv(b []byte) {
	d.env = nil
	for _, line := range strings.Split(string(b), "\n") {
		if kv, ok := strings.CutPrefix(line, "export "); ok {
			d.env = append(d.env, strings.TrimSpace(kv))
		}
		if v, ok := strings.CutPrefix(line, "export GPAGENT_ADDR="); ok {
			d.addr = strings.TrimSpace(v)
		}
	}
}

func (d *demo) stop() {
	if d.cmd.ProcessState != nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-d.done:
		if err != nil {
			d.t.Errorf("demo did not exit cleanly on SIGINT: %v\n%s", err, lastLines(d.out.String(), 20))
		}
	case <-time.After(2 * time.Minute):
		_ = d.cmd.Process.Kill()
		d.t.Errorf("demo did not stop within 2m of SIGINT\n%s", lastLines(d.out.String(), 20))
	}
}

// agentLog is the end of every host's agent log.
func (d *demo) agentLog() string {
	var out []string
	for _, h := range d.hostNames() {
		b, _ := os.ReadFile(filepath.Join(d.dir, h, "agent.log"))
		out = append(out, "--- "+h+":", lastLines(string(b), 30))
	}
	return strings.Join(out, "\n")
}

// hostNames lists the demo's hosts, the coordinator's (first in the
// layout) first.
func (d *demo) hostNames() []string {
	entries, _ := os.ReadDir(d.dir)
	var out []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(d.dir, e.Name(), "agent.yaml")); err == nil {
			out = append(out, e.Name())
		}
	}
	slices.SortFunc(out, func(a, b string) int {
		// mdw before sdw1, sdw2...
		return strings.Compare(a, b)
	})
	return out
}

// environ is the environment of a shell that sourced the demo's env
// file.
func (d *demo) environ() []string {
	return append(os.Environ(), d.env...)
}

// gpagent runs a CLI subcommand against the demo, as a shell that
// sourced its env file, and returns its stdout.
func (d *demo) gpagent(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(d.environ(), "GPAGENT_ADDR="+d.addr)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("gpagent %s: %w\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// in is d reporting to t: a subtest must fail itself, not its parent
// (a parent's FailNow from a subtest hides the message behind a Goexit).
func (d *demo) in(t testing.TB) *demo {
	c := *d
	c.t = t
	return &c
}

// mustGpagent is gpagent that fails the test on error.
func (d *demo) mustGpagent(args ...string) string {
	d.t.Helper()
	out, err := d.gpagent(args...)
	if err != nil {
		d.t.Fatalf("%v\nagent log:\n%s", err, d.agentLog())
	}
	return out
}

func (d *demo) state() api.State {
	d.t.Helper()
	var s api.State
	out := d.mustGpagent("state", "-s", "--json")
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		d.t.Fatalf("state --json: %v\n%s", err, out)
	}
	return s
}

func (d *demo) config() *agent.Config {
	d.t.Helper()
	cfg, err := agent.LoadConfig(filepath.Join(d.dir, d.hostNames()[0], "agent.yaml"))
	if err != nil {
		d.t.Fatal(err)
	}
	return cfg
}

// agentPID is the pid of the first host's agent.
func (d *demo) agentPID() int { return d.hostAgentPID(d.hostNames()[0]) }

func (d *demo) hostAgentPID(host string) int {
	b, _ := os.ReadFile(filepath.Join(d.dir, host, "agent.pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// postmasterPID reads the first line of a data dir's postmaster.pid.
func postmasterPID(datadir string) int {
	b, err := os.ReadFile(filepath.Join(datadir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	return pid
}

func alive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

// waitUntil polls cond until it holds or the deadline passes, then fails
// with the last thing cond reported.
func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, seen := cond()
		if ok {
			return
		}
		last = seen
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting until %s; last seen: %s", timeout, what, last)
		}
		<-time.After(100 * time.Millisecond) // poll interval, not a settle delay
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// syncBuffer is a bytes.Buffer the demo process writes to while the test
// reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
