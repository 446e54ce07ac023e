package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// segment is one row of `gpagent state --json` (gp_segment_configuration).
type segment struct {
	DBID          int    `json:"dbid"`
	Content       int    `json:"content"`
	Role          string `json:"role"`
	PreferredRole string `json:"preferred_role"`
	Mode          string `json:"mode"`
	Status        string `json:"status"`
	Hostname      string `json:"hostname"`
	Address       string `json:"address"`
	Port          int    `json:"port"`
	DataDir       string `json:"datadir"`
}

type clusterState struct {
	ConfigVersion uint64    `json:"config_version"`
	Segments      []segment `json:"segments"`
}

// pair returns the acting primary (role p, status u) and mirror of a content.
func (s *clusterState) pair(content int) (p, m segment, okP, okM bool) {
	for _, x := range s.Segments {
		if x.Content != content {
			continue
		}
		switch x.Role {
		case "p":
			p, okP = x, x.Status == "u"
		case "m":
			m, okM = x, true
		}
	}
	return p, m, okP, okM
}

// inSync: the content has an acting primary and a mirror, both up, the
// pair recorded in sync.
func (s *clusterState) inSync(content int) bool {
	p, m, okP, okM := s.pair(content)
	return okP && okM && m.Status == "u" && p.Mode == "s" && m.Mode == "s"
}

// demo is a running `gpagent demo --dir DIR`.
type demo struct {
	bin      string
	dir      string
	cmd      *exec.Cmd
	out      *syncBuffer
	done     chan struct{}
	waitErr  error
	addr     string
	passfile string
	env      []string // what the env file exports (NAME=value): the CLI's address and TLS files
}

// findGpagent: --gpagent, else gpagent next to this executable, else in PATH.
func findGpagent(flagValue string) (string, error) {
	if flagValue != "" {
		if _, err := os.Stat(flagValue); err != nil {
			return "", fmt.Errorf("--gpagent: %w", err)
		}
		return filepath.Abs(flagValue)
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "gpagent")
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	p, err := exec.LookPath("gpagent")
	if err != nil {
		return "", errors.New("no gpagent binary next to gpbench or in PATH: give --gpagent PATH or --build-gpagent")
	}
	return filepath.Abs(p)
}

// buildGpagent runs go build for cmd/gpagent into dir (from within the
// module's source tree).
func buildGpagent(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "gpagent")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/gpagent/gpagent/cmd/gpagent")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build gpagent: %v: %s", err, oneLine(strings.TrimSpace(stderr.String())))
	}
	return out, nil
}

// startDemo starts a demo in a new temporary folder and waits until it has
// written DIR/env: the cluster is up and every pair in sync.
func startDemo(ctx context.Context, bin string, timeout time.Duration, extra ...string) (*demo, error) {
	dir, err := os.MkdirTemp("", "gpbench-demo-")
	if err != nil {
		return nil, err
	}
	// The instances run as the postgres OS user when we are root: it must
	// reach the data dirs below this folder.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	d := &demo{bin: bin, dir: dir, out: &syncBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(bin, append([]string{"demo", "--dir", dir}, extra...)...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	// Its own process group: a Ctrl-C reaches gpbench only, which then
	// stops the demo in order.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		return d, fmt.Errorf("start %s demo: %w", bin, err)
	}
	go func() { d.waitErr = d.cmd.Wait(); close(d.done) }()

	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	envFile := filepath.Join(dir, "env")
	for {
		if d.readEnv(envFile) {
			// libpq's password file: pgx reads $PGPASSFILE when it parses
			// a connection string (the demo's pgpass matches any host).
			if err := os.Setenv("PGPASSFILE", d.passfile); err != nil {
				return d, err
			}
			return d, nil
		}
		select {
		case <-d.done:
			return d, fmt.Errorf("demo in %s exited before the cluster was up (%v): %s", dir, d.waitErr, d.tail())
		case <-ctx.Done():
			return d, ctx.Err()
		case <-deadline.C:
			return d, fmt.Errorf("demo in %s not up within %s: %s", dir, timeout, d.tail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// exited says whether the demo process has ended.
func (d *demo) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

func (d *demo) readEnv(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	var env []string
	defer func() { d.env = env }()
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(line, "export GPAGENT_ADDR="); ok {
			d.addr = v
		}
		if kv, ok := strings.CutPrefix(line, "export "); ok {
			env = append(env, kv)
		}
		if v, ok := strings.CutPrefix(line, "export PGPASSFILE="); ok {
			d.passfile = v
		}
	}
	return d.addr != "" && d.passfile != ""
}

// tail is the demo's last output lines and each agent log's (the demo
// keeps one per host, DIR/<host>/agent.log), on one line.
func (d *demo) tail() string {
	s := "demo output: " + lastLines(d.out.String(), 3)
	logs, _ := filepath.Glob(filepath.Join(d.dir, "*", "agent.log"))
	if b, err := os.ReadFile(filepath.Join(d.dir, "agent.log")); err == nil {
		s += "; agent.log: " + lastLines(string(b), 3)
	}
	for _, l := range logs {
		if b, err := os.ReadFile(l); err == nil {
			rel, _ := filepath.Rel(d.dir, l)
			s += "; " + rel + ": " + lastLines(string(b), 3)
		}
	}
	return s
}

// stop sends SIGINT and waits for the demo to stop its agent and instances.
func (d *demo) stop() error {
	if d.cmd.Process == nil {
		return nil
	}
	select {
	case <-d.done:
		return nil
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-d.done:
		if d.waitErr != nil {
			return fmt.Errorf("demo in %s did not exit cleanly: %v: %s", d.dir, d.waitErr, d.tail())
		}
		return nil
	case <-time.After(2 * time.Minute):
		_ = d.cmd.Process.Kill()
		<-d.done
		return fmt.Errorf("demo in %s did not stop within 2m of SIGINT; killed it", d.dir)
	}
}

func (d *demo) gpagent(ctx context.Context, args ...string) (string, error) {
	return d.gpagentWithin(ctx, 30*time.Second, args...)
}

// gpagentWithin runs a gpagent command against the demo, killed after
// timeout; the error carries the end of its output.
func (d *demo) gpagentWithin(ctx context.Context, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.bin, args...)
	// As a shell that sourced the demo's env file: its TLS files.
	cmd.Env = append(append(os.Environ(), d.env...), "GPAGENT_ADDR="+d.addr)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = lastLines(stdout.String(), 3)
		}
		return stdout.String(), fmt.Errorf("gpagent %s: %v: %s", strings.Join(args, " "), err, oneLine(msg))
	}
	return stdout.String(), nil
}

// resolveGpagent is the gpagent binary of --gpagent / --build-gpagent;
// cleanup removes what a build left.
func resolveGpagent(ctx context.Context, flagValue string, build bool, log io.Writer) (bin string, cleanup func(), err error) {
	cleanup = func() {}
	if !build {
		bin, err = findGpagent(flagValue)
		return bin, cleanup, err
	}
	dir, err := os.MkdirTemp("", "gpbench-bin-")
	if err != nil {
		return "", cleanup, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	fmt.Fprintln(log, "gpbench: building gpagent")
	if bin, err = buildGpagent(ctx, dir); err != nil {
		cleanup()
		return "", func() {}, err
	}
	return bin, cleanup, nil
}

// startDemoRetry starts a fresh demo. A demo that exits before its
// cluster is up is tried again, twice: the ports it picked may have been
// taken meanwhile by another program on this host. track sees every demo
// started, up or not, so that it can be stopped and removed later.
func startDemoRetry(ctx context.Context, bin string, timeout time.Duration, log io.Writer, track func(*demo), extra ...string) (*demo, error) {
	begin := time.Now()
	for attempt := 1; ; attempt++ {
		fmt.Fprintln(log, strings.TrimSpace(fmt.Sprintf("gpbench: starting %s demo %s", bin, strings.Join(extra, " "))))
		d, err := startDemo(ctx, bin, timeout, extra...)
		if d != nil {
			track(d)
		}
		if err == nil {
			fmt.Fprintf(log, "gpbench: demo up in %s (%s, agent logs %s/<host>/agent.log)\n", time.Since(begin).Round(100*time.Millisecond), d.dir, d.dir)
			return d, nil
		}
		if d == nil || ctx.Err() != nil || attempt == 3 || !d.exited() {
			return d, err
		}
		fmt.Fprintf(log, "gpbench: %v; trying again\n", err)
	}
}

func (d *demo) state(ctx context.Context) (*clusterState, error) {
	out, err := d.gpagent(ctx, "state", "--json")
	if err != nil {
		return nil, err
	}
	var s clusterState
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		return nil, fmt.Errorf("gpagent state --json: %w", err)
	}
	return &s, nil
}

func (d *demo) connstr(ctx context.Context, content int) (string, error) {
	out, err := d.gpagent(ctx, "connstr", "--content", strconv.Itoa(content))
	return strings.TrimSpace(out), err
}

// postmasterPID reads the first line of DATADIR/postmaster.pid.
func postmasterPID(datadir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(datadir, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s/postmaster.pid: no pid on its first line", datadir)
	}
	return pid, nil
}

// syncBuffer is a bytes.Buffer safe for a child's output and our reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

var _ io.Writer = (*syncBuffer)(nil)
