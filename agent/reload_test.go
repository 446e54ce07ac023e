package agent

import (
	"bytes"
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpagent/gpagent/internal/testcerts"
)

// syncBuffer is a log sink the test reads while the agent writes.
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

// reloadAgent is an agent with only what a reload touches, started from
// the config file it returns.
func reloadAgent(t *testing.T, doc string) (*Agent, string, *syncBuffer, *slog.LevelVar) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log, level := NewLogger(logs, cfg)
	a := &Agent{cfg: cfg, log: log}
	a.WatchConfig(ConfigSource{File: path}, level)
	return a, path, logs, level
}

func TestReload_AppliesLiveFieldsNamesTheRest(t *testing.T) {
	a, path, logs, level := reloadAgent(t, goodConfig)
	next := goodConfig + "log_level: debug\nprobe_interval: 250ms\nprobe_retries: 5\nreplication_stall_timeout: 9s\nauto_recover: incremental\napi_addr: 127.0.0.1:7999\nlease: 6s\n"
	if err := os.WriteFile(path, []byte(next), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := a.ReloadFile()
	if err != nil {
		t.Fatal(err)
	}
	wantApplied := []string{"log_level", "probe_interval", "probe_retries", "replication_stall_timeout", "auto_recover"}
	if !slices.Equal(res.Applied, wantApplied) {
		t.Errorf("applied %v, want %v", res.Applied, wantApplied)
	}
	if want := []string{"lease", "api_addr"}; !slices.Equal(res.NeedRestart, want) {
		t.Errorf("need restart %v, want %v", res.NeedRestart, want)
	}
	live := a.live()
	if level.Level() != slog.LevelDebug || live.ProbeInterval != 250*time.Millisecond || live.ProbeRetries != 5 ||
		live.ReplicationStallTimeout != 9*time.Second || !live.AutoRecover {
		t.Errorf("live config not applied: level %s, %+v", level.Level(), live)
	}
	if live.APIAddr != DefaultAPIAddr || live.Lease != DefaultLease {
		t.Errorf("restart fields changed while running: api_addr %s lease %s", live.APIAddr, live.Lease)
	}
	if n := strings.Count(logs.String(), "need a restart"); n != 1 || !strings.Contains(logs.String(), "fields=\"[lease api_addr]\"") {
		t.Errorf("want one log line naming lease and api_addr, got %d:\n%s", n, logs)
	}
}

func TestReload_BadConfigRefusedWhole(t *testing.T) {
	cases := []struct{ name, doc, want string }{
		{"unknown field", goodConfig + "log_level: debug\nprobe_intervall: 2s\n", "probe_intervall"},
		{"bad value", goodConfig + "log_level: debug\nprobe_retries: -2\n", "probe_retries"},
		// Valid alone (lease 10s), but the running lease (3s) stays.
		{"interval beyond the running lease", goodConfig + "log_level: debug\nlease: 10s\nprobe_interval: 2s\n", "probe_interval"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, path, logs, level := reloadAgent(t, goodConfig)
			before := a.live()
			if err := os.WriteFile(path, []byte(tc.doc), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := a.ReloadFile(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("reload: %v, want an error naming %s", err, tc.want)
			}
			if a.live() != before || level.Level() != slog.LevelInfo {
				t.Errorf("a refused config was partly applied: level %s", level.Level())
			}
			lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], "refused") || !strings.Contains(lines[0], tc.want) {
				t.Errorf("want one log line naming the field %s, got:\n%s", tc.want, logs)
			}
			if !strings.Contains(lines[0], path) {
				t.Errorf("log line does not name the file %s: %s", path, lines[0])
			}
		})
	}
}

// TestReload_RotatesTLSCertificate: a certificate replaced in place is
// served from the next handshake on; one of another CA is refused and
// the running one stays.
func TestReload_RotatesTLSCertificate(t *testing.T) {
	ca := testcerts.New(t)
	a := startAgent(t, "a", ca, "bootstrap: true\n")
	served := func() []byte {
		t.Helper()
		conn, err := tls.Dial("tcp", a.APIAddr(), &tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Raw
	}
	first := served()
	dir := filepath.Dir(a.cfg.TLSCertFile)
	next := *a.cfg

	newCert := ca.IssueCN(t, AgentCNPrefix+"a", "127.0.0.1")
	ca.WriteFiles(t, dir, newCert)
	res, err := a.Reload(&next)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(res.Applied, "tls.cert_file") {
		t.Errorf("applied %v, want the certificate", res.Applied)
	}
	if got := served(); bytes.Equal(got, first) || !bytes.Equal(got, newCert.Certificate[0]) {
		t.Error("the API does not serve the rotated certificate")
	}
	other := testcerts.New(t)
	other.WriteFiles(t, dir, other.IssueCN(t, AgentCNPrefix+"a", "127.0.0.1"))
	if _, err := a.Reload(&next); err == nil || !strings.Contains(err.Error(), "cluster CA") {
		t.Fatalf("a certificate of another CA: %v, want refused", err)
	}
	if !bytes.Equal(served(), newCert.Certificate[0]) {
		t.Error("a refused certificate is served")
	}
}
