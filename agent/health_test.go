package agent

import (
	"crypto/tls"
	"net/http"
	"testing"
	"time"

	"github.com/gpagent/gpagent/internal/testcerts"
	"github.com/gpagent/gpagent/supervisor"
	"github.com/gpagent/gpagent/topology"
)

func TestMirrorVerdict(t *testing.T) {
	topo := &topology.Topology{Segments: []topology.Segment{
		{DBID: 2, Content: 0, Role: topology.RolePrimary, Status: topology.StatusUp, Hostname: "sdw1"},
		{DBID: 3, Content: 0, Role: topology.RoleMirror, Status: topology.StatusUp, Hostname: "sdw2"},
		{DBID: 4, Content: 1, Role: topology.RolePrimary, Status: topology.StatusUp, Hostname: "sdw2"},
		{DBID: 5, Content: 1, Role: topology.RoleMirror, Status: topology.StatusDown, Hostname: "sdw1"},
	}}
	streaming := func(replay, flushed, end uint64) *supervisor.Health {
		return &supervisor.Health{InRecovery: true, CurrentLSN: replay, Receiver: &supervisor.Receiver{Status: "streaming", FlushedLSN: flushed, LatestEndLSN: end}}
	}
	cases := []struct {
		name    string
		host    string
		content int
		health  *supervisor.Health
		maxLag  int64
		ok      bool
		lag     uint64
	}{
		{"caught up, any lag", "sdw2", 0, streaming(1000, 1000, 1000), -1, true, 0},
		{"behind, any lag", "sdw2", 0, streaming(1000, 1500, 4000), -1, true, 3000},
		{"within lag", "sdw2", 0, streaming(1000, 1500, 4000), 3000, true, 3000},
		{"beyond lag", "sdw2", 0, streaming(1000, 1500, 4000), 2999, false, 0},
		{"received more than last reported end", "sdw2", 0, streaming(1000, 5000, 4000), -1, true, 4000},
		{"not streaming", "sdw2", 0, &supervisor.Health{InRecovery: true, Receiver: &supervisor.Receiver{Status: "stopping"}}, -1, false, 0},
		{"no receiver", "sdw2", 0, &supervisor.Health{InRecovery: true}, -1, false, 0},
		{"not probed", "sdw2", 0, nil, -1, false, 0},
		{"promoted but not yet in the topology", "sdw2", 0, &supervisor.Health{InRecovery: false}, -1, false, 0},
		{"the primary's host", "sdw1", 0, streaming(1000, 1000, 1000), -1, false, 0},
		{"mirror down in the topology", "sdw1", 1, streaming(1000, 1000, 1000), -1, false, 0},
		{"no such content", "sdw2", 7, streaming(1000, 1000, 1000), -1, false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := mirrorVerdict(topo, tc.host, tc.content, func(int) *supervisor.Health { return tc.health }, tc.maxLag)
			if v.ok != tc.ok || v.lag != tc.lag {
				t.Fatalf("got %+v, want ok=%v lag=%d", v, tc.ok, tc.lag)
			}
			if !v.ok && v.why == "" {
				t.Error("a no without a reason")
			}
		})
	}
}

// TestAgent_HealthRoutes: every health route answers GET, HEAD and
// OPTIONS (HAProxy's default check) with the same status.
func TestAgent_HealthRoutes(t *testing.T) {
	ca := testcerts.New(t)
	a := startAgent(t, "a", ca, "bootstrap: true\n")
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS12}}}
	status := func(method, path string) int {
		t.Helper()
		req, err := http.NewRequest(method, "https://"+a.APIAddr()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// Ready once this single agent leads and has renewed its lease.
	deadline := time.Now().Add(30 * time.Second)
	for status(http.MethodGet, "/v1/health/ready") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("/v1/health/ready never answered 200")
		}
		<-time.After(100 * time.Millisecond)
	}
	cases := []struct {
		path string
		want int
	}{
		{"/v1/health/live", http.StatusOK},
		{"/v1/health/ready", http.StatusOK},
		// No cluster was created: no primary nor mirror of content 0.
		{"/v1/health/primary/0", http.StatusServiceUnavailable},
		{"/v1/health/mirror/0", http.StatusServiceUnavailable},
		{"/v1/health/mirror/0?lag=1048576", http.StatusServiceUnavailable},
		{"/v1/health/mirror/zero", http.StatusBadRequest},
		{"/v1/health/mirror/0?lag=lots", http.StatusBadRequest},
	}
	for _, tc := range cases {
		for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodOptions} {
			if got := status(method, tc.path); got != tc.want {
				t.Errorf("%s %s: %d, want %d", method, tc.path, got, tc.want)
			}
		}
	}
	if got := status(http.MethodPost, "/v1/health/live"); got != http.StatusMethodNotAllowed {
		t.Errorf("POST /v1/health/live: %d, want 405", got)
	}
}
