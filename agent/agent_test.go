package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/internal/testcerts"
)

// startAgent runs an in-process agent with no instances on 127.0.0.1.
func startAgent(t *testing.T, name string, ca *testcerts.CA, extra string) *Agent {
	t.Helper()
	dir := t.TempDir()
	caFile, certFile, keyFile := ca.WriteFiles(t, dir, ca.IssueCN(t, AgentCNPrefix+name, "127.0.0.1"))
	if !strings.Contains(extra, "gossip_key_file") {
		keyFile := filepath.Join(dir, "gossip.key")
		if err := os.WriteFile(keyFile, []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		extra += "gossip_key_file: " + keyFile + "\n"
	}
	doc := fmt.Sprintf(`name: %s
address: 127.0.0.1
data_dir: %s
api_addr: 127.0.0.1:0
raft_addr: 127.0.0.1:0
gossip_addr: 127.0.0.1:0
tls: {ca_file: %s, cert_file: %s, key_file: %s}
postgres: {superuser_password: a, replication_password: b}
%s`, name, filepath.Join(dir, "data"), caFile, certFile, keyFile, extra)
	path := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	w := &testWriter{t: t}
	// Registered before the agent's own cleanup, so it runs after it:
	// gossip goroutines that log a moment after shutdown are then dropped
	// instead of logging into a finished test.
	t.Cleanup(w.close)
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent %s: %v", name, err)
		}
	})
	return a
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(p))
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
}

// TestAgents_TLSMeshAndForwarding: two agents over mutual TLS form one
// Raft cluster through gossip; any agent answers for the leader; only
// agents (a certificate of the cluster CA) may send reports or read data
// files.
func TestAgents_TLSMeshAndForwarding(t *testing.T) {
	ca := testcerts.New(t)
	a := startAgent(t, "a", ca, "bootstrap: true\n")
	b := startAgent(t, "b", ca, fmt.Sprintf("join: [%s]\n", a.mesh.LocalAddr()))
	operator := &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{ca.IssueCN(t, OperatorCNPrefix+"alice")}, MinVersion: tls.VersionTLS12}
	cb := api.NewTLSClient(b.APIAddr(), operator)
	deadline := time.Now().Add(30 * time.Second)
	for {
		m, err := cb.Members(context.Background())
		voters := 0
		if err == nil {
			for _, x := range m.Members {
				if x.RaftRole == "voter" || x.RaftRole == "leader" {
					voters++
				}
			}
		}
		if err == nil && voters == 2 && m.Leader == "a" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no two-voter cluster led by a: %+v %v", m, err)
		}
		<-time.After(100 * time.Millisecond)
	}
	s, err := cb.State(context.Background())
	if err != nil || s.Stale || s.Leader != "a" {
		t.Fatalf("state through b (forwarded to the leader): %+v %v", s, err)
	}

	t.Run("a change through a follower carries the caller", func(t *testing.T) {
		// b forwards to the leader a with its own agent certificate; a
		// judges the operator (or the agent) b authenticated.
		if _, err := cb.SetPaused(context.Background(), false); err != nil && !errors.Is(err, api.ErrNotInitialized) {
			t.Fatalf("an operator's resume through follower b: %v", err)
		}
		asAgent := api.NewTLSClient(b.APIAddr(), &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{ca.IssueCN(t, AgentCNPrefix+"b")}, MinVersion: tls.VersionTLS12})
		if _, err := asAgent.SetPaused(context.Background(), true); !errors.Is(err, api.ErrForbidden) {
			t.Fatalf("an agent's pause through follower b: %v, want forbidden", err)
		}
		req, _ := http.NewRequest(http.MethodPost, "https://"+b.APIAddr()+"/v1/pause", strings.NewReader("{}"))
		req.Header.Set(principalHeader, "operator:mallory")
		hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS12}}}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("an anonymous caller naming itself in %s: %d, want 401", principalHeader, resp.StatusCode)
		}
	})
	t.Run("no client certificate: no reports", func(t *testing.T) {
		anon := api.NewTLSClient(a.APIAddr(), &tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS12})
		_, err := anon.Report(context.Background(), api.Report{Agent: "x"})
		if !errors.Is(err, api.ErrUnauthorized) {
			t.Fatalf("report without a certificate: %v, want refused", err)
		}
		if _, err := anon.DataFiles(context.Background(), 1); !errors.Is(err, api.ErrUnauthorized) {
			t.Fatalf("data files without a certificate: %v, want refused", err)
		}
		if _, err := anon.ReadDataFiles(context.Background(), 1, []api.FileRange{{Path: "global/pg_control", N: 8192}}); !errors.Is(err, api.ErrUnauthorized) {
			t.Fatalf("reading data files without a certificate: %v, want refused", err)
		}
		if _, err := anon.State(context.Background()); err != nil {
			t.Fatalf("an operator without a certificate may read the state: %v", err)
		}
	})
	t.Run("without TLS, data files only to agents' addresses", func(t *testing.T) {
		for remote, want := range map[string]bool{"127.0.0.1:40000": true, "10.11.12.13:40000": false, "[::1]:40000": false, "garbage": false} {
			if got := a.fromMember(remote); got != want {
				t.Errorf("fromMember(%s) = %v, want %v", remote, got, want)
			}
		}
	})
	t.Run("plain HTTP is refused", func(t *testing.T) {
		if _, err := api.NewClient(a.APIAddr()).State(context.Background()); err == nil {
			t.Fatal("plain HTTP answered on a TLS agent")
		}
	})
	t.Run("a certificate of another CA is refused", func(t *testing.T) {
		other := testcerts.New(t)
		c := api.NewTLSClient(a.APIAddr(), &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{other.Issue(t, "127.0.0.1")}, MinVersion: tls.VersionTLS12})
		if _, err := c.State(context.Background()); err == nil {
			t.Fatal("a client certificate of another CA was accepted")
		}
	})
}

// crash stops an agent as a host failure would: no graceful leave, its
// Raft and gossip just stop answering.
func crash(a *Agent) {
	_ = a.mesh.Shutdown()
	_ = a.node.Close()
	_ = a.server.Close()
}

// TestAgents_DeadVoterReplaced: with four agents and three voters, a
// voter that dies is replaced by the healthy nonvoter, so the cluster
// keeps three voters.
func TestAgents_DeadVoterReplaced(t *testing.T) {
	ca := testcerts.New(t)
	a := startAgent(t, "a", ca, "bootstrap: true\n")
	a.lead.deadVoterGrace = time.Second
	join := fmt.Sprintf("join: [%s]\n", a.mesh.LocalAddr())
	agents := map[string]*Agent{"a": a}
	for _, n := range []string{"b", "c", "d"} {
		agents[n] = startAgent(t, n, ca, join)
		agents[n].lead.deadVoterGrace = time.Second
	}
	roles := func() map[string]string {
		out := map[string]string{}
		servers, err := a.node.Servers()
		if err != nil {
			return out
		}
		for _, s := range servers {
			out[s.Name] = "nonvoter"
			if s.Voter {
				out[s.Name] = "voter"
			}
		}
		return out
	}
	waitRoles := func(what string, ok func(map[string]string) bool) map[string]string {
		t.Helper()
		deadline := time.Now().Add(40 * time.Second)
		for {
			r := roles()
			if ok(r) {
				return r
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; roles %v", what, r)
			}
			<-time.After(100 * time.Millisecond)
		}
	}
	count := func(r map[string]string, role string) int {
		n := 0
		for _, v := range r {
			if v == role {
				n++
			}
		}
		return n
	}
	r := waitRoles("3 voters and 1 nonvoter", func(r map[string]string) bool {
		return len(r) == 4 && count(r, "voter") == 3 && count(r, "nonvoter") == 1
	})
	var victim, spare string
	for id, role := range r {
		if role == "voter" && id != "a" && victim == "" {
			victim = id
		}
		if role == "nonvoter" {
			spare = id
		}
	}
	crash(agents[victim])
	waitRoles(victim+" replaced by "+spare, func(r map[string]string) bool {
		return r[spare] == "voter" && r[victim] != "voter" && count(r, "voter") == 3
	})
}

// TestNew_RefusesACertificateNotItsOwn: an agent with TLS starts only
// with a certificate named for itself (CN agent.<name>) and signed by
// the configured CA; otherwise it refuses with one line naming the file
// and the fault.
func TestNew_RefusesACertificateNotItsOwn(t *testing.T) {
	ca := testcerts.New(t)
	other := testcerts.New(t)
	cases := []struct {
		name string
		cert func() tls.Certificate
		want string
	}{
		{"another host's", func() tls.Certificate { return ca.IssueCN(t, AgentCNPrefix+"sdw9", "127.0.0.1") }, `common name "agent.sdw9", want "agent.sdw1"`},
		{"an operator's", func() tls.Certificate { return ca.IssueCN(t, OperatorCNPrefix+"alice") }, `common name "operator.alice", want "agent.sdw1"`},
		{"of another CA", func() tls.Certificate { return other.IssueCN(t, AgentCNPrefix+"sdw1", "127.0.0.1") }, "not signed by the cluster CA"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			caFile, _, _ := ca.WriteFiles(t, dir, ca.IssueCN(t, AgentCNPrefix+"sdw1", "127.0.0.1"))
			_, certFile, keyFile := ca.WriteFiles(t, t.TempDir(), tc.cert())
			keyring := filepath.Join(dir, "gossip.key")
			if err := os.WriteFile(keyring, []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			doc := fmt.Sprintf(`name: sdw1
address: 127.0.0.1
data_dir: %s
api_addr: 127.0.0.1:0
raft_addr: 127.0.0.1:0
gossip_addr: 127.0.0.1:0
bootstrap: true
gossip_key_file: %s
tls: {ca_file: %s, cert_file: %s, key_file: %s}
postgres: {superuser_password: a, replication_password: b}
`, filepath.Join(dir, "data"), keyring, caFile, certFile, keyFile)
			path := filepath.Join(dir, "agent.yaml")
			if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := LoadConfig(path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err = New(cfg, slog.New(slog.DiscardHandler)); err == nil {
				t.Fatalf("the agent started with %s certificate", tc.name)
			}
			if msg := err.Error(); !strings.Contains(msg, "tls.cert_file "+certFile) || !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Fatalf("refusal %q: want one line naming tls.cert_file %s and %q", err, certFile, tc.want)
			}
		})
	}
}

// TestAgents_BootstrapExpect: three new agents with bootstrap_expect: 3
// (the demo's and the documented config's start) elect a leader and all
// become voters. With the vote guard, a member with no configuration
// votes for no one: when the lowest-named agent bootstrapped all three as
// voters, the other two (no configuration yet) refused its votes and no
// leader was ever elected.
func TestAgents_BootstrapExpect(t *testing.T) {
	ca := testcerts.New(t)
	a := startAgent(t, "a", ca, "bootstrap_expect: 3\n")
	join := fmt.Sprintf("bootstrap_expect: 3\njoin: [%s]\n", a.mesh.LocalAddr())
	startAgent(t, "b", ca, join)
	startAgent(t, "c", ca, join)
	operator := &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{ca.IssueCN(t, OperatorCNPrefix+"alice")}, MinVersion: tls.VersionTLS12}
	cl := api.NewTLSClient(a.APIAddr(), operator)
	deadline := time.Now().Add(60 * time.Second)
	for {
		m, err := cl.Members(context.Background())
		voters := 0
		if err == nil {
			for _, x := range m.Members {
				if x.RaftRole == "voter" || x.RaftRole == "leader" {
					voters++
				}
			}
		}
		if err == nil && voters == 3 && m.Leader != "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no three-voter cluster with a leader: %+v %v", m, err)
		}
		<-time.After(100 * time.Millisecond)
	}
}
