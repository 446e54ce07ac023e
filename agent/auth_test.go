package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/internal/testcerts"
	"github.com/gpagent/gpagent/topology"
)

// TestRoutes_EveryChangeNeedsACredential walks every route the API
// registers: a route that changes anything (every one but a read) answers
// 401 to a caller without a credential and 403 to one of the wrong kind
// (an operator on an agent's route, an agent on an operator's), and no
// read of state or health asks for one.
func TestRoutes_EveryChangeNeedsACredential(t *testing.T) {
	ca := testcerts.New(t)
	a := startAgent(t, "a", ca, "bootstrap: true\nenable_debug: true\n")
	client := func(cn string) *http.Client {
		cfg := &tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS12}
		if cn != "" {
			cfg.Certificates = []tls.Certificate{ca.IssueCN(t, cn)}
		}
		return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	}
	anon, agentCert, operatorCert, otherCert := client(""), client(AgentCNPrefix+"a"), client(OperatorCNPrefix+"alice"), client("somebody")
	call := func(c *http.Client, method, path, token string) int {
		req, err := http.NewRequest(method, "https://"+a.APIAddr()+path, strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	wildcard := regexp.MustCompile(`\{[^}]+\}`)
	routes := a.routes().Routes()
	guarded := 0
	for _, r := range routes {
		method, path, ok := strings.Cut(r.Pattern, " ")
		if !ok { // a pattern without a method matches them all
			method, path = http.MethodPost, r.Pattern
		}
		path = wildcard.ReplaceAllString(path, "1")
		read := method == http.MethodGet || method == http.MethodHead || method == http.MethodOptions
		if r.Guard == guardOpen {
			if !read {
				t.Errorf("%s is open but not a read", r.Pattern)
			}
			continue
		}
		guarded++
		if got := call(anon, method, path, ""); got != http.StatusUnauthorized {
			t.Errorf("%s without a credential: %d, want 401", r.Pattern, got)
		}
		if got := call(anon, method, path, "not-the-token"); got != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: %d, want 401", r.Pattern, got)
		}
		if got := call(otherCert, method, path, ""); got != http.StatusForbidden {
			t.Errorf("%s with a certificate neither agent's nor operator's: %d, want 403", r.Pattern, got)
		}
		wrong := operatorCert
		if r.Guard == guardOperator {
			wrong = agentCert
		}
		if got := call(wrong, method, path, ""); got != http.StatusForbidden {
			t.Errorf("%s with a credential of the wrong kind: %d, want 403", r.Pattern, got)
		}
	}
	for _, must := range []string{"POST /v1/report", "POST /v1/pause", "POST /v1/switchover", "POST /v1/recover", "POST /v1/init", "POST /v1/addmirrors", "POST /v1/keyring", "POST /v1/reload", "POST /v1/local/preflight", "GET /v1/local/files/{dbid}"} {
		found := false
		for _, r := range routes {
			found = found || (r.Pattern == must && r.Guard != guardOpen)
		}
		if !found {
			t.Errorf("%s is not registered behind a guard", must)
		}
	}
	for _, path := range []string{"/v1/state", "/v1/health/live", "/metrics", "/v1/members"} {
		if got := call(anon, http.MethodGet, path, ""); got != http.StatusOK {
			t.Errorf("GET %s without a credential: %d, want 200 (reads stay open)", path, got)
		}
	}
	t.Logf("%d routes, %d guarded", len(routes), guarded)
}

// TestReport_OnlyForTheCredentialsOwnHost: an agent's certificate
// reports for its own host; a report it makes for another host is
// refused with 403 (a host it could keep "heard" though it is dead).
func TestReport_OnlyForTheCredentialsOwnHost(t *testing.T) {
	ca := testcerts.New(t)
	a := startAgent(t, "a", ca, "bootstrap: true\n")
	asB := api.NewTLSClient(a.APIAddr(), &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{ca.IssueCN(t, AgentCNPrefix+"b")}, MinVersion: tls.VersionTLS12})
	ctx := context.Background()
	if _, err := asB.Report(ctx, api.Report{Agent: "b"}); err != nil {
		t.Fatalf("agent b reporting for itself: %v", err)
	}
	if _, err := asB.Report(ctx, api.Report{Agent: "a"}); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("agent b reporting for a: %v, want forbidden", err)
	}
	asOperator := api.NewTLSClient(a.APIAddr(), &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{ca.IssueCN(t, OperatorCNPrefix+"alice")}, MinVersion: tls.VersionTLS12})
	if _, err := asOperator.Report(ctx, api.Report{Agent: "a"}); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("an operator reporting: %v, want forbidden", err)
	}
	// The leader heard b (its own report) but never "a" from b.
	if got := principalOf(context.Background()); got.kind != kindNone {
		t.Fatalf("no principal in a bare context, got %v", got)
	}
}

// TestSim_AnonymousReportCannotPromote is the issue's attack: a made-up
// report that says a primary failed, sent without a credential (and with
// a wrong token), is refused and promotes nothing.
func TestSim_AnonymousReportCannotPromote(t *testing.T) {
	c := newSimCluster(t, 3, "")
	c.initCluster(1)
	c.waitInSync("after init")
	before := c.state()
	p, m := simPair(t, before, 0)
	lead := c.agent(c.waitLeader())
	fake := api.Report{Agent: p.Hostname, Instances: []api.InstanceReport{{DBID: p.DBID, Host: p.Hostname, ConfigVersion: before.ConfigVersion, Seen: time.Now(), Phase: "failed", Failed: true}}}
	ctx := context.Background()
	for name, cl := range map[string]*api.Client{
		"no credential": api.NewClient(lead.APIAddr()),
		"wrong token":   api.NewClient(lead.APIAddr()).WithToken("guess"),
	} {
		for range 5 {
			if _, err := cl.Report(ctx, fake); !errors.Is(err, api.ErrUnauthorized) {
				t.Fatalf("%s: made-up report: %v, want unauthorized", name, err)
			}
		}
		if _, err := cl.Switchover(ctx, 0); !errors.Is(err, api.ErrUnauthorized) {
			t.Fatalf("%s: switchover: %v, want unauthorized", name, err)
		}
	}
	// Give the leader several report rounds to act on anything it took.
	deadline := time.Now().Add(3 * lead.cfg.Lease)
	for time.Now().Before(deadline) {
		s := c.state()
		np, nm := simPair(t, s, 0)
		if np.DBID != p.DBID || nm.DBID != m.DBID || s.ConfigVersion != before.ConfigVersion {
			t.Fatalf("the cluster changed after refused reports: config version %d -> %d, primary dbid %d -> %d", before.ConfigVersion, s.ConfigVersion, p.DBID, np.DBID)
		}
		<-time.After(200 * time.Millisecond)
	}
}

// TestCheckSecure: an agent open to anyone starts only with insecure:
// true, and says so in one warning line; one with a token and no TLS
// starts and warns what plain HTTP leaves open.
func TestCheckSecure(t *testing.T) {
	key := [][]byte{make([]byte, 32)}
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	for _, tc := range []struct {
		cfg     Config
		wantErr string
	}{
		{Config{Token: "t", GossipKeys: key}, ""},
		{Config{TLSCAFile: "ca", GossipKeys: key}, ""},
		{Config{GossipKeys: key}, "token_file"},
		{Config{Token: "t"}, "gossip_key_file"},
		{Config{Insecure: true}, ""},
	} {
		err := checkSecure(&tc.cfg, log)
		if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.wantErr)
		}
	}
	if n := strings.Count(logs.String(), "insecure"); n != 1 {
		t.Errorf("want one warning line for insecure: true, got logs:\n%s", logs.String())
	}
	// Token only (plain HTTP) starts, with one line that says what it
	// leaves open: the token in clear, Raft's traffic unencrypted.
	if n := strings.Count(logs.String(), "no tls:"); n != 1 || !strings.Contains(logs.String(), "plain HTTP") || !strings.Contains(logs.String(), "Raft") {
		t.Errorf("want one warning line for the token-only config naming plain HTTP and Raft, got logs:\n%s", logs.String())
	}
	// ParseConfig, as for gossip_key_file, leaves the file unread.
	if cfg, err := ParseConfig([]byte("data_dir: /x\ntoken_file: /nonexistent\npostgres: {superuser_password: a, replication_password: b}\n")); err != nil || cfg.Token != "" {
		t.Errorf("ParseConfig with a token_file: %v, token %q", err, cfg.Token)
	}
}

// TestSim_PostedRecoverPlanIsPreflighted: a recovery plan posted with a
// move is checked as the leader's own plan is: a move onto a host no
// agent runs, or onto a port an instance there already listens on, is
// refused and nothing is committed.
func TestSim_PostedRecoverPlanIsPreflighted(t *testing.T) {
	c := newSimCluster(t, 3, "")
	c.initCluster(1)
	p, m := simPair(t, c.state(), 0)
	c.world.Crash(p.Address, p.Port)
	c.waitPromoted(p, m)
	s := c.state()
	var other topology.Segment
	for _, seg := range s.Segments {
		if seg.Hostname != p.Hostname && seg.Content != p.Content {
			other = seg
		}
	}
	cl := c.client()
	ctx := context.Background()
	for name, loc := range map[string]topology.Location{
		"unknown host":    {Hostname: "nohost", Address: "127.0.0.99", Port: 40000, DataDir: "/nowhere/gpseg0"},
		"port of another": {Hostname: other.Hostname, Address: other.Address, Port: other.Port, DataDir: other.DataDir + "-moved"},
	} {
		plan := api.RecoverPlan{BaseVersion: s.ConfigVersion, Steps: []api.RecoverStep{{
			Request: topology.RecoveryRequest{DBID: p.DBID, Kind: topology.RecoveryFull, Move: &loc},
			Content: p.Content, From: p,
		}}}
		if _, err := cl.Recover(ctx, plan); err == nil {
			t.Errorf("%s: a posted plan moving dbid %d to %+v was committed without a preflight", name, p.DBID, loc)
		}
		if now := c.state(); now.ConfigVersion != s.ConfigVersion {
			t.Fatalf("%s: config version %d -> %d after a refused plan", name, s.ConfigVersion, now.ConfigVersion)
		}
	}
}
