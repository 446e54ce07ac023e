package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/gpagent/gpagent/agent"
	"github.com/gpagent/gpagent/topology"
)

// TestDemo_Operations checks issue 14's "done when" on the README's demo
// (three hosts, TLS), as config management and a load balancer and
// Prometheus would see it:
//   - an agent.yaml edited to log_level: debug, then SIGHUP to the agent:
//     the same process keeps running and serving, and logs at debug;
//   - OPTIONS and HEAD on /v1/health/primary/0 (HAProxy's httpchk) answer
//     200 on the agent of content 0's acting primary and 503 on its
//     mirror's;
//   - /metrics passes Prometheus' lint (but for raft's and memberlist's
//     own names, which the README says are kept as upstream gives them)
//     and carries every gpagent_ metric the README's Metrics table lists.
func TestDemo_Operations(t *testing.T) {
	d := startDemo(t)
	s := d.state()
	p0, m0 := pair(t, s, 0)
	if p0.Hostname == m0.Hostname {
		t.Fatalf("content 0's primary and mirror are both on %s: the demo no longer spreads pairs over hosts", p0.Hostname)
	}
	apiAddr := map[string]string{} // host -> its agent's API address
	for _, h := range d.hostNames() {
		cfg, err := agent.LoadConfig(filepath.Join(d.dir, h, "agent.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		apiAddr[cfg.Name] = cfg.APIAddr
	}
	for _, h := range []string{p0.Hostname, m0.Hostname} {
		if apiAddr[h] == "" {
			t.Fatalf("no agent.yaml in %s for host %s (hosts %v)", d.dir, h, d.hostNames())
		}
	}
	// What a load balancer or Prometheus uses: the CA, no client
	// certificate (health and metrics are open to read).
	tlsCfg, err := d.tlsConfig(false)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	call := func(method, addr, path string) (int, string, error) {
		req, err := http.NewRequest(method, "https://"+addr+path, nil)
		if err != nil {
			return 0, "", err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), err
	}

	t.Run("SIGHUP applies a changed log level and the agent keeps running", func(t *testing.T) {
		d := d.in(t)
		host := m0.Hostname
		dir := filepath.Join(d.dir, host)
		pid := d.hostAgentPID(host)
		if !alive(pid) {
			t.Fatalf("agent of %s: pid %d from agent.pid is not running", host, pid)
		}
		logPath := filepath.Join(dir, "agent.log")
		before, err := os.ReadFile(logPath)
		if err != nil {
			t.Fatal(err)
		}
		// The demo's agents log at info: no debug line before the reload,
		// so one after it shows the new level in force.
		if l := debugLine(string(before)); l != "" {
			t.Fatalf("agent of %s logs at debug before the reload: %s", host, l)
		}
		cfgPath := filepath.Join(dir, "agent.yaml")
		yaml, err := os.ReadFile(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(yaml, []byte("\nlog_level:")) {
			yaml = regexp.MustCompile(`(?m)^log_level:.*$`).ReplaceAll(yaml, []byte("log_level: debug"))
		} else {
			yaml = append(yaml, "log_level: debug\n"...)
		}
		if err := os.WriteFile(cfgPath, yaml, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			t.Fatalf("kill -HUP %d: %v", pid, err)
		}
		// memberlist logs its push/pull syncs at debug every 15 s: a
		// debug line comes within a few of them.
		var after string
		waitUntil(t, 90*time.Second, "the agent logs the reload of log_level and then a debug line", func() (bool, string) {
			if now := d.hostAgentPID(host); now != pid || !alive(pid) {
				t.Fatalf("agent of %s: pid %d (agent.pid %d) after SIGHUP, want %d still running\ndemo output:\n%s\nagent log:\n%s",
					host, pid, now, pid, lastLines(d.out.String(), 20), lastLines(readFile(logPath), 40))
			}
			b, err := os.ReadFile(logPath)
			if err != nil {
				return false, err.Error()
			}
			after = string(b[min(len(before), len(b)):])
			reloaded := ""
			for _, l := range strings.Split(after, "\n") {
				if strings.Contains(l, "config reloaded") {
					reloaded = l
				}
			}
			if !strings.Contains(reloaded, "log_level") {
				return false, "no \"config reloaded\" line naming log_level yet:\n" + lastLines(after, 10)
			}
			return debugLine(after) != "", "no debug line yet:\n" + lastLines(after, 10)
		})
		if strings.Contains(after, "config reload refused") {
			t.Errorf("the reload was refused:\n%s", after)
		}
		if strings.Contains(d.out.String(), "agent "+host+" exited") {
			t.Errorf("the demo restarted the agent of %s:\n%s", host, lastLines(d.out.String(), 20))
		}
		// Its API answers: the operator's CLI reads the state from it.
		if _, err := d.client(apiAddr[host]).State(context.Background()); err != nil {
			t.Errorf("agent of %s does not answer its API after SIGHUP: %v", host, err)
		}
		if !alive(pid) {
			t.Errorf("agent of %s (pid %d) is gone", host, pid)
		}
	})

	t.Run("health of content 0's primary answers OPTIONS and HEAD", func(t *testing.T) {
		// Waited for rather than asked once: a primary's agent answers
		// 503 while its lease is being renewed late on a loaded machine,
		// and HAProxy's fall/rise counts ride that out too.
		for _, method := range []string{http.MethodOptions, http.MethodHead, http.MethodGet} {
			waitUntil(t, 30*time.Second, method+" /v1/health/primary/0 answers 200 on "+p0.Hostname+" (content 0's acting primary)", func() (bool, string) {
				code, body, err := call(method, apiAddr[p0.Hostname], "/v1/health/primary/0")
				return err == nil && code == http.StatusOK, fmt.Sprintf("%d %q %v", code, body, err)
			})
			code, body, err := call(method, apiAddr[m0.Hostname], "/v1/health/primary/0")
			if err != nil || code != http.StatusServiceUnavailable {
				t.Errorf("%s /v1/health/primary/0 on %s (content 0's mirror, dbid %d): %d %q %v, want 503",
					method, m0.Hostname, m0.DBID, code, body, err)
			}
		}
	})

	t.Run("metrics pass the lint and list the README's gpagent metrics", func(t *testing.T) {
		readme, err := os.ReadFile("../README.md")
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, m := range regexp.MustCompile("(?m)^\\| `(gpagent_[a-z_]+)").FindAllStringSubmatch(string(readme), -1) {
			want = append(want, m[1])
		}
		if len(want) < 10 {
			t.Fatalf("the README's Metrics table lists %d gpagent_ metrics: %v", len(want), want)
		}
		// Content 0's mirror's agent holds a streaming mirror, so it has
		// every instance gauge, the replication lag too (served once
		// the mirror's health is probed).
		var text string
		waitUntil(t, 60*time.Second, "/metrics of "+m0.Hostname+" shows every metric of the README's table", func() (bool, string) {
			code, body, err := call(http.MethodGet, apiAddr[m0.Hostname], "/metrics")
			if err != nil || code != http.StatusOK {
				return false, fmt.Sprintf("GET /metrics: %d %v", code, err)
			}
			text = body
			var missing []string
			for _, name := range want {
				if !regexp.MustCompile(`(?m)^` + name + `[{ ]`).MatchString(text) {
					missing = append(missing, name)
				}
			}
			return len(missing) == 0, fmt.Sprintf("missing %v", missing)
		})
		lag := regexp.MustCompile(fmt.Sprintf(`(?m)^gpagent_instance_replication_lag_bytes\{content="0",dbid="%d"\} `, m0.DBID))
		if !lag.MatchString(text) {
			t.Errorf("/metrics of %s has no replication lag of content 0's mirror (dbid %d)", m0.Hostname, m0.DBID)
		}
		problems, err := promlint.New(strings.NewReader(text)).Lint()
		if err != nil {
			t.Fatalf("lint /metrics: %v", err)
		}
		// raft_* and memberlist_* keep the names hashicorp/raft and
		// memberlist give them (as Consul documents them, the README
		// says): camelCase, counters without _total. Those two problems
		// are theirs and logged; any other problem, or any problem of a
		// name gpagent, Go or the process exports, fails.
		var upstream int
		for _, p := range problems {
			third := strings.HasPrefix(p.Metric, "raft_") || strings.HasPrefix(p.Metric, "memberlist_")
			known := strings.Contains(p.Text, "'snake_case' not 'camelCase'") || strings.Contains(p.Text, `counter metrics should have "_total" suffix`)
			if third && known {
				upstream++
				continue
			}
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
		t.Logf("lint: %d problems, all of raft's and memberlist's own names (camelCase, counters without _total)", upstream)
		if t.Failed() {
			t.Logf("/metrics:\n%s", text)
		}
	})

	// The mirror's role did not change under the checks.
	if _, m := pair(t, d.state(), 0); m.DBID != m0.DBID || m.Role != topology.RoleMirror {
		t.Errorf("content 0's mirror moved during the checks: %+v, was %+v", m, m0)
	}
}

// debugLine is the first line of log at debug level (text or JSON), or "".
func debugLine(log string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "level=DEBUG") || strings.Contains(l, `"level":"DEBUG"`) {
			return l
		}
	}
	return ""
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
