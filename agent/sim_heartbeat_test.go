package agent

import (
	"fmt"
	"testing"
	"time"
)

// simProbeInterval is probe_interval in simAgentTimings.
const simProbeInterval = 200 * time.Millisecond

// reportCounts are a leader's counts of the reports it received.
type reportCounts struct{ full, heartbeats, resends uint64 }

func (c *simCluster) reportCounts(h *simHost) reportCounts {
	n := &c.agent(h).counts
	return reportCounts{n.fullReports.Load(), n.heartbeats.Load(), n.resends.Load()}
}

// fences sums the fence events of the running agents.
func (c *simCluster) fences() uint64 {
	var n uint64
	for _, h := range c.running() {
		n += c.agent(h).counts.fences.Load()
	}
	return n
}

// watchHeard checks, every 20 ms for d, what the leader lead decides on:
// no host of the cluster is counted lost, the report of every instance on
// the running hosts is fresh, and every running agent's lease is valid.
// It returns false when lead stopped leading meanwhile.
func (c *simCluster) watchHeard(lead *simHost, d time.Duration) bool {
	c.t.Helper()
	la := c.agent(lead)
	maxAge := 3*simProbeInterval + simProbeTimeout
	running := map[string]bool{}
	for _, h := range c.running() {
		running[h.name] = true
	}
	for end := time.Now().Add(d); time.Now().Before(end); <-time.After(20 * time.Millisecond) {
		if !la.node.IsLeader() {
			return false
		}
		t := la.node.Topology()
		now := la.clock.Now()
		if lost := la.lead.lostHosts(t, now); len(lost) > 0 {
			c.t.Fatalf("the leader %s counts %v lost", lead.name, lost)
		}
		obs := la.lead.observations(now, maxAge)
		for _, s := range t.Segments {
			if _, ok := obs[s.DBID]; !ok && running[s.Hostname] {
				c.t.Fatalf("the leader %s holds no fresh report of dbid %d on %s", lead.name, s.DBID, s.Hostname)
			}
		}
		for _, h := range c.running() {
			if a := c.agent(h); !a.lease.valid(a.clock.Now(), a.cfg.Lease) {
				c.t.Fatalf("the lease of %s is not valid", h.name)
			}
		}
	}
	return true
}

// An idle cluster sends heartbeats, not full reports: at most about one
// full report per agent per reportRefresh probe intervals, while the
// heartbeats keep every lease valid, every instance's report fresh at the
// leader and no host lost. Before heartbeats every round was a full
// report (5 per agent per second here).
func TestSimIdleClusterSendsHeartbeats(t *testing.T) {
	c := newSimCluster(t, 3, "")
	c.initCluster(2)
	fences := c.fences()
	window := 30 * simProbeInterval
	refresh := reportRefresh * simProbeInterval
	for try := 0; ; try++ {
		lead := c.waitLeader()
		// Past init's changes: heartbeats flow from every other agent.
		before := c.reportCounts(lead)
		c.waitUntil("heartbeats from the other agents", func() (bool, string) {
			n := c.reportCounts(lead)
			return n.heartbeats >= before.heartbeats+10, fmt.Sprintf("%+v", n)
		})
		before = c.reportCounts(lead)
		began := time.Now()
		if !c.watchHeard(lead, window) {
			if try < 3 {
				continue // leadership moved (a loaded machine): measure again
			}
			t.Fatal("leadership moved in every window")
		}
		took := time.Since(began)
		after := c.reportCounts(lead)
		full, beats := after.full-before.full, after.heartbeats-before.heartbeats
		agents := uint64(len(c.hosts) - 1) // the leader's own reports are not posted
		maxFull := agents * (uint64(took/refresh) + 2)
		t.Logf("over %s: %d full reports, %d heartbeats, %d resends from %d agents", took.Round(time.Millisecond), full, beats, after.resends-before.resends, agents)
		if full > maxFull {
			t.Errorf("%d full reports over %s from %d idle agents, want at most %d (one per %s each, plus one)", full, took.Round(time.Millisecond), agents, maxFull, refresh)
		}
		if beats < 2*full {
			t.Errorf("%d heartbeats against %d full reports: an idle agent should mostly send heartbeats", beats, full)
		}
		break
	}
	if n := c.fences(); n != fences {
		t.Errorf("%d fence events in an idle cluster", n-fences)
	}
	c.waitInSync("at the end")
}
