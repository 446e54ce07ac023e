package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gpagent/gpagent/agent"
	"github.com/gpagent/gpagent/api"
)

// TestHAProxy_FollowsKill9Failover runs a real HAProxy with
// deploy/haproxy.cfg's defaults and backends in front of a three-host demo
// cluster: a client writing through HAProxy's content 0 frontend reaches
// the primary, the primary is killed with -9, and the client's writes
// resume through the same address on the promoted mirror with every
// acknowledged commit kept.
func TestHAProxy_FollowsKill9Failover(t *testing.T) {
	haproxy := requireHAProxy(t)
	d := startDemo(t)
	s := d.state()
	p0, m0 := pair(t, s, 0)
	hp := startHAProxy(t, haproxy, d, s)

	rw := hp.connstr(t, "gp_content0_rw")
	waitServedBy(t, hp, rw, p0.Port, false, "HAProxy's content 0 rw frontend reaches the primary")
	waitServedBy(t, hp, hp.connstr(t, "gp_content0_ro"), m0.Port, true, "HAProxy's content 0 ro frontend reaches the mirror")

	w := d.startWriterVia(rw, "e2e_haproxy_writes_0")
	waitAcked(t, w, 50, "50 writes through HAProxy before the failure")
	killPostmaster(t, p0)
	before := ackedCount(w)
	waitFailedOver(t, d, p0, m0)
	waitServedBy(t, hp, rw, m0.Port, false, "HAProxy's content 0 rw frontend reaches the promoted mirror")
	waitAcked(t, w, before+50, "50 writes through HAProxy after the kill -9")
	w.checkNoLoss() // through HAProxy too: the rows are on what it serves
}

func ackedCount(w *writer) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// waitAcked waits until the writer has n acknowledged commits.
func waitAcked(t *testing.T, w *writer, n int, what string) {
	t.Helper()
	waitUntil(t, 60*time.Second, what, func() (bool, string) {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.acked) >= n, fmt.Sprintf("%d acknowledged, last error %v", len(w.acked), w.lastErr)
	})
}

// requireHAProxy finds Debian's haproxy binary. A machine without it skips
// the test, unless CI is set: CI installs it, so there it fails instead.
func requireHAProxy(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"haproxy", "/usr/sbin/haproxy"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	why := "the HAProxy test needs the haproxy binary (Debian: apt-get install haproxy)"
	if os.Getenv("CI") == "" {
		t.Skip(why + "; skipped because CI is not set. .ci/run installs it and fails here instead.")
	}
	t.Fatal(why + "; .ci/run installs it: it must not be missing in CI")
	return ""
}

// haproxyProc is a HAProxy running in the foreground as the test's child.
type haproxyProc struct {
	cfg      string
	passfile string // the demo's, for the superuser's password
	out      *syncBuffer
	done     chan error
	binds    map[string]int // frontend name -> its port on 127.0.0.1
}

// startHAProxy writes a config from deploy/haproxy.cfg for the demo's
// cluster, checks it with haproxy -c, and runs it until the test ends.
func startHAProxy(t *testing.T, bin string, d *demo, s api.State) *haproxyProc {
	t.Helper()
	sample, err := os.ReadFile("../deploy/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	apiAddrs := map[string]string{}
	for _, h := range d.hostNames() {
		cfg, err := agent.LoadConfig(filepath.Join(d.dir, h, "agent.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		apiAddrs[cfg.Name] = cfg.APIAddr
	}
	hp := &haproxyProc{passfile: filepath.Join(d.dir, "pgpass"), out: &syncBuffer{}, done: make(chan error, 1), binds: map[string]int{}}
	text, err := haproxyConfig(string(sample), s, apiAddrs, func(string) int { return freePort(t) }, hp.binds)
	if err != nil {
		t.Fatalf("deploy/haproxy.cfg: %v", err)
	}
	// The demo's agents serve HTTPS: as the sample says for agents with
	// tls, every default-server line checks over TLS with the cluster CA.
	if ca := d.envVar("GPAGENT_CACERT"); ca != "" {
		lines := strings.Split(text, "\n")
		for i, l := range lines {
			if strings.HasPrefix(strings.TrimSpace(l), "default-server ") {
				lines[i] = l + " check-ssl verify required ca-file " + ca
			}
		}
		text = strings.Join(lines, "\n")
	}
	for _, want := range []string{"gp_content0_rw", "gp_content0_ro"} {
		if _, ok := hp.binds[want]; !ok {
			t.Fatalf("deploy/haproxy.cfg has no frontend %s", want)
		}
	}
	dir := t.TempDir()
	hp.cfg = filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(hp.cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", "-f", hp.cfg).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s\nconfig:\n%s", err, out, text)
	}
	// -db: stay in the foreground, as the test's child, logging to stdout.
	cmd := exec.Command(bin, "-db", "-f", hp.cfg)
	cmd.Stdout, cmd.Stderr = hp.out, hp.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { hp.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-hp.done
		if t.Failed() {
			t.Logf("haproxy config:\n%s\nhaproxy output:\n%s", text, lastLines(hp.out.String(), 40))
		}
	})
	return hp
}

// connstr is a libpq connection string through one of HAProxy's frontends.
func (hp *haproxyProc) connstr(t *testing.T, frontend string) string {
	t.Helper()
	port, ok := hp.binds[frontend]
	if !ok {
		t.Fatalf("no frontend %s in the HAProxy config", frontend)
	}
	return fmt.Sprintf("host=127.0.0.1 port=%d user=gpadmin dbname=postgres connect_timeout=2", port)
}

// waitServedBy waits until a new session through connstr lands on the
// instance listening on port, as a primary or as a standby.
func waitServedBy(t *testing.T, hp *haproxyProc, connstr string, port int, standby bool, what string) {
	t.Helper()
	waitUntil(t, 30*time.Second, what, func() (bool, string) {
		select {
		case err := <-hp.done:
			hp.done <- err
			t.Fatalf("haproxy exited: %v\n%s", err, lastLines(hp.out.String(), 20))
		default:
		}
		gotPort, inRecovery, err := servedBy(connstr + " passfile=" + hp.passfile)
		if err != nil {
			return false, err.Error()
		}
		return gotPort == port && inRecovery == standby, fmt.Sprintf("served by port %d, in recovery %v", gotPort, inRecovery)
	})
}

func servedBy(connstr string) (port int, inRecovery bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, connstr)
	if err != nil {
		return 0, false, err
	}
	defer conn.Close(context.Background())
	err = conn.QueryRow(ctx, "SELECT inet_server_port(), pg_is_in_recovery()").Scan(&port, &inRecovery)
	return port, inRecovery, err
}

var haproxyBackend = regexp.MustCompile(`^gp_content(-?\d+)_(rw|ro)$`)

// haproxyConfig rewrites the sample config for a cluster: its own global
// section (logs to stdout), the sample's defaults, frontends bound to the
// ports pick gives (recorded in binds), and each gp_content<N>_* backend's
// servers replaced by every instance of content N, checked on its host's
// agent. Everything else (checks, timeouts, options) is the sample's.
func haproxyConfig(sample string, s api.State, apiAddrs map[string]string, pick func(frontend string) int, binds map[string]int) (string, error) {
	var out []string
	var kind, name string
	serversDone := false
	for _, line := range strings.Split(sample, "\n") {
		trimmed := strings.TrimSpace(line)
		if line != "" && line[0] != ' ' && line[0] != '\t' && line[0] != '#' {
			f := strings.Fields(line)
			kind, name, serversDone = f[0], "", false
			if len(f) > 1 {
				name = f[1]
			}
			if kind == "global" {
				out = append(out, "global", "    log stdout format raw local0", "    maxconn 256")
				continue
			}
			out = append(out, line)
			continue
		}
		switch {
		case kind == "global":
			// replaced above
		case kind == "frontend" && strings.HasPrefix(trimmed, "bind "):
			port := pick(name)
			binds[name] = port
			out = append(out, "    bind "+net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		case kind == "backend" && strings.HasPrefix(trimmed, "server "):
			if serversDone {
				continue
			}
			serversDone = true
			servers, err := haproxyServers(name, s, apiAddrs)
			if err != nil {
				return "", err
			}
			out = append(out, servers...)
		default:
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n"), nil
}

// haproxyServers lists a content's instances as server lines, each checked
// on the agent of its host (addr and port of that agent's API).
func haproxyServers(backend string, s api.State, apiAddrs map[string]string) ([]string, error) {
	m := haproxyBackend.FindStringSubmatch(backend)
	if m == nil {
		return nil, fmt.Errorf("backend %s: not named gp_content<N>_rw or _ro", backend)
	}
	content, _ := strconv.Atoi(m[1])
	var out []string
	for _, seg := range s.Segments {
		if seg.Content != content {
			continue
		}
		host, port, err := net.SplitHostPort(apiAddrs[seg.Hostname])
		if err != nil {
			return nil, fmt.Errorf("backend %s: agent API of host %s: %w", backend, seg.Hostname, err)
		}
		out = append(out, fmt.Sprintf("    server %s_%d %s:%d check addr %s port %s", seg.Hostname, seg.Port, seg.Address, seg.Port, host, port))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("backend %s: the cluster has no instance of content %d", backend, content)
	}
	return out, nil
}

// TestHAProxy_SampleConfigIsValid: deploy/haproxy.cfg as shipped (its
// global section and the README's addresses too) passes haproxy -c.
func TestHAProxy_SampleConfigIsValid(t *testing.T) {
	haproxy := requireHAProxy(t)
	runCmd(t, time.Minute, haproxy, "-c", "-f", "../deploy/haproxy.cfg")
}

// TestHAProxy_ReadmeMatchesSample: the README's HAProxy block is a part of
// deploy/haproxy.cfg, line for line, so the two do not drift apart.
func TestHAProxy_ReadmeMatchesSample(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	sample, err := os.ReadFile("../deploy/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n### HAProxy\n")
	if !ok {
		t.Fatal("README.md has no ### HAProxy section")
	}
	_, block, ok := strings.Cut(section, "\n```\n")
	if !ok {
		t.Fatal("README.md's HAProxy section has no code block")
	}
	block, _, _ = strings.Cut(block, "\n```")
	have := map[string]bool{}
	for _, line := range strings.Split(string(sample), "\n") {
		have[strings.TrimRight(line, " ")] = true
	}
	for _, line := range strings.Split(block, "\n") {
		if line != "" && !have[line] {
			t.Errorf("README.md's HAProxy block has %q, which deploy/haproxy.cfg does not", line)
		}
	}
}
