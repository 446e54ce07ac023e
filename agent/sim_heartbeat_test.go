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
// no running host is counted lost, the report of every instance on the
// running hosts is fresh, and every running agent's lease is valid.
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
		for name := range la.lead.lostHosts(t, now) {
			if running[name] {
				c.t.Fatalf("the leader %s counts %s lost", lead.name, name)
			}
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

// waitHeartbeats waits until lead receives heartbeats from the other
// agents (past init's changes) and returns its counts then.
func (c *simCluster) waitHeartbeats(lead *simHost) reportCounts {
	c.t.Helper()
	before := c.reportCounts(lead)
	c.waitUntil("heartbeats from the other agents", func() (bool, string) {
		n := c.reportCounts(lead)
		return n.heartbeats >= before.heartbeats+10, fmt.Sprintf("%+v", n)
	})
	return c.reportCounts(lead)
}

// waitFresh waits until lead holds a fresh report of every instance on
// the running hosts.
func (c *simCluster) waitFresh(lead *simHost) {
	c.t.Helper()
	la := c.agent(lead)
	running := map[string]bool{}
	for _, h := range c.running() {
		running[h.name] = true
	}
	c.waitUntil("fresh reports of every running host's instances at "+lead.name, func() (bool, string) {
		t := la.node.Topology()
		obs := la.lead.observations(la.clock.Now(), 3*simProbeInterval+simProbeTimeout)
		for _, s := range t.Segments {
			if _, ok := obs[s.DBID]; !ok && running[s.Hostname] {
				return false, fmt.Sprintf("dbid %d on %s", s.DBID, s.Hostname)
			}
		}
		return true, ""
	})
}

// A change is reported in full at once, among heartbeats: a primary
// killed fails over as it did when every round was a full report.
func TestSimHeartbeatsThenAChangeInFull(t *testing.T) {
	c := newSimCluster(t, 3, "")
	c.initCluster(1)
	_, p, m := c.primaryOffLeader()
	lead := c.waitLeader()
	before := c.waitHeartbeats(lead)
	c.killPrimary(p, m)
	if lead == c.waitLeader() {
		if after := c.reportCounts(lead); after.full == before.full {
			t.Errorf("the failover of dbid %d was decided with no full report received: %+v", p.DBID, after)
		}
	}
}

// After the leader stops, the new leader gets full reports (the agents'
// last full report went to another leader) within a round trip: no
// running host is counted lost and no agent fences. The lease is 5 s:
// at 1.5 s the running agents fence during the election itself, with or
// without heartbeats (an election takes longer than that here).
func TestSimHeartbeatsAcrossALeaderChange(t *testing.T) {
	c := newSimCluster(t, 3, "lease: 5s\n")
	c.initCluster(1)
	old := c.waitLeader()
	c.waitHeartbeats(old)
	fences := c.fences() - c.agent(old).counts.fences.Load() // the agents that go on running
	c.stop(old)
	lead := c.waitLeader()
	c.waitFresh(lead)
	before := c.reportCounts(lead)
	if before.full == 0 {
		t.Errorf("the new leader %s holds fresh reports but received no full report: %+v", lead.name, before)
	}
	c.waitHeartbeats(lead)
	if !c.watchHeard(lead, 10*simProbeInterval) {
		t.Fatalf("%s stopped leading", lead.name)
	}
	if n := c.fences(); n != fences {
		t.Errorf("%d fence events on the running agents across the leader change", n-fences)
	}
}

// A leader that does not hold the full report a heartbeat names (here:
// it forgets them all, as a leader restarted at the same address would
// not have them) answers resend, and the agent sends it in full in the
// same round: each agent is asked once, and the leader's reports of its
// instances never go stale.
func TestSimHeartbeatResendAtOnce(t *testing.T) {
	c := newSimCluster(t, 3, "")
	c.initCluster(2)
	var lead *simHost
	var before reportCounts
	var fences uint64
	for try := 0; ; try++ {
		lead = c.waitLeader()
		la := c.agent(lead)
		c.waitHeartbeats(lead)
		fences = c.fences()
		before = c.reportCounts(lead)
		la.lead.mu.Lock()
		clear(la.lead.fulls)
		la.lead.mu.Unlock()
		if c.watchHeard(lead, 10*simProbeInterval) {
			break
		}
		if try == 3 {
			t.Fatal("leadership moved in every window: the resends went to another leader")
		}
		// Leadership moved (a loaded machine): the resends went to
		// another leader; forget again on the new one.
	}
	after := c.reportCounts(lead)
	agents := uint64(len(c.hosts) - 1)
	if n := after.resends - before.resends; n == 0 || n > agents {
		t.Errorf("%d resends asked of %d agents, want 1 to %d (each once: it sends the full report in the same round)", n, agents, agents)
	}
	if after.heartbeats <= before.heartbeats {
		t.Errorf("no heartbeat accepted after the resends: %+v", after)
	}
	if n := c.fences(); n != fences {
		t.Errorf("%d fence events", n-fences)
	}
}
