package agent

import (
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/internal/testcerts"
	"github.com/gpagent/gpagent/supervisor"
	"github.com/gpagent/gpagent/topology"
)

func TestClusterCounts(t *testing.T) {
	topo := &topology.Topology{Segments: []topology.Segment{
		// content 0: mirror acting as primary
		{DBID: 2, Content: 0, Role: topology.RoleMirror, PreferredRole: topology.RolePrimary, Status: topology.StatusDown},
		{DBID: 3, Content: 0, Role: topology.RolePrimary, PreferredRole: topology.RoleMirror, Status: topology.StatusUp},
		// content 1: double fault
		{DBID: 4, Content: 1, Role: topology.RolePrimary, PreferredRole: topology.RolePrimary, Status: topology.StatusDown},
		{DBID: 5, Content: 1, Role: topology.RoleMirror, PreferredRole: topology.RoleMirror, Status: topology.StatusDown},
		// content 2: as configured
		{DBID: 6, Content: 2, Role: topology.RolePrimary, PreferredRole: topology.RolePrimary, Status: topology.StatusUp},
	}}
	if down, acting := clusterCounts(topo); down != 1 || acting != 1 {
		t.Errorf("down %d acting %d, want 1 and 1", down, acting)
	}
}

func TestInstanceMetrics(t *testing.T) {
	topo := &topology.Topology{Segments: []topology.Segment{
		{DBID: 2, Content: 0, Role: topology.RolePrimary, Mode: topology.ModeSynced, Status: topology.StatusUp, Hostname: "sdw1"},
		{DBID: 3, Content: 0, Role: topology.RoleMirror, Mode: topology.ModeSynced, Status: topology.StatusUp, Hostname: "sdw2"},
		{DBID: 5, Content: 1, Role: topology.RoleMirror, Status: topology.StatusDown, Hostname: "sdw1"},
	}}
	now := time.Now()
	reports := []api.InstanceReport{{DBID: 2, Up: true, Seen: now.Add(-2 * time.Second)}}
	health := func(dbid int) *supervisor.Health {
		if dbid == 5 {
			return &supervisor.Health{InRecovery: true, CurrentLSN: 100, Receiver: &supervisor.Receiver{Status: "streaming", LatestEndLSN: 4196}}
		}
		return nil
	}
	got := map[string]float64{}
	for _, s := range instanceMetrics(topo, "sdw1", reports, health, now) {
		name := strings.SplitN(s.desc.String(), `"`, 3)[1]
		got[name+"{"+strings.Join(s.labels, ",")+"}"] = s.value
	}
	want := map[string]float64{
		"gpagent_instance_up{2,0}":                     1,
		"gpagent_instance_primary{2,0}":                1,
		"gpagent_instance_synchronized{2,0}":           1,
		"gpagent_instance_last_probe_age_seconds{2,0}": 2,
		"gpagent_instance_up{5,1}":                     0,
		"gpagent_instance_primary{5,1}":                0,
		"gpagent_instance_synchronized{5,1}":           0,
		"gpagent_instance_replication_lag_bytes{5,1}":  4096,
	}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
}

// TestAgent_Metrics: /metrics serves gpagent's gauges in the text format,
// and the names pass Prometheus' lint.
func TestAgent_Metrics(t *testing.T) {
	ca := testcerts.New(t)
	a := startAgent(t, "a", ca, "bootstrap: true\n")
	problems, err := testutil.GatherAndLint(a.metricsRegistry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "gpagent_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS12}}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := hc.Get("https://" + a.APIAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		text := string(body)
		// raft_* and memberlist_* come once Raft has elected and gossip
		// has probed: wait for them too.
		if resp.StatusCode == http.StatusOK && strings.Contains(text, "\ngpagent_leader 1\n") && strings.Contains(text, "\nraft_") && strings.Contains(text, "\nmemberlist_") {
			for _, name := range []string{"gpagent_config_version", "gpagent_failover_paused 0", "gpagent_fenced 0", "gpagent_contents_down 0", "gpagent_mirrors_acting_as_primary 0",
				"gpagent_failovers_total 0", "gpagent_fence_events_total 0", `gpagent_recoveries_total{kind="incremental"} 0`, `gpagent_recoveries_total{kind="full"} 0`,
				`gpagent_recovery_bytes_total{kind="incremental"} 0`, `gpagent_recovery_bytes_total{kind="full"} 0`,
				"raft_", "memberlist_", "go_goroutines", "process_open_fds"} {
				if !strings.Contains(text, "\n"+name) {
					t.Errorf("/metrics has no %s", name)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics never showed this single agent as leader: %d\n%s", resp.StatusCode, text)
		}
		<-time.After(100 * time.Millisecond)
	}
}

func TestFailovers(t *testing.T) {
	topo := &topology.Topology{Segments: []topology.Segment{
		{DBID: 2, Content: 0, Role: topology.RolePrimary, Status: topology.StatusUp},
		{DBID: 3, Content: 0, Role: topology.RoleMirror, Status: topology.StatusUp},
		{DBID: 4, Content: 1, Role: topology.RolePrimary, Status: topology.StatusUp},
		{DBID: 5, Content: 1, Role: topology.RoleMirror, Status: topology.StatusUp},
	}}
	updates := []topology.SegmentUpdate{
		{DBID: 2, Role: topology.RoleMirror, Status: topology.StatusDown},   // demoted
		{DBID: 3, Role: topology.RolePrimary},                               // promoted: a failover
		{DBID: 4, Role: topology.RolePrimary, Mode: topology.ModeNotSynced}, // already primary
		{DBID: 5, Status: topology.StatusDown},
	}
	if n := failovers(topo, updates); n != 1 {
		t.Errorf("failovers = %d, want 1", n)
	}
}

func TestEventCounts_Recovered(t *testing.T) {
	var c eventCounts
	c.recovered(topology.RecoveryIncremental, &api.Progress{Done: 1 << 20, Total: 2 << 20})
	c.recovered(topology.RecoveryFull, &api.Progress{Done: 3 << 20})
	c.recovered(topology.RecoveryFull, nil)
	if c.rewinds.Load() != 1 || c.rewindBytes.Load() != 1<<20 || c.copies.Load() != 2 || c.copiedBytes.Load() != 3<<20 {
		t.Errorf("rewinds %d (%d bytes), copies %d (%d bytes); want 1 (1 MiB), 2 (3 MiB)", c.rewinds.Load(), c.rewindBytes.Load(), c.copies.Load(), c.copiedBytes.Load())
	}
}
