package agent

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/gpagent/gpagent/topology"
)

// TestSimFrequentCommitsKeepLeases: a leader that commits faster than a
// report's round trip plus its apply (a rebalance or recovery of many
// contents, a burst of operator commands) must not take the leases of
// healthy agents that apply every entry a moment late. With the rule
// that a report renews only if made on the version the leader had
// committed when it acknowledged it, a commit every ~60 ms (143 in 9 s)
// got two healthy hosts counted lost and a mirror promoted, a failover
// storm caused by nothing but the commit rate; a report now renews once
// a later one shows that version applied (topology.PendingRenewals). The
// probes here take half of probe_timeout: with instant probes (the
// simulated default) a report is acknowledged within a few milliseconds
// of its round's start, and even a commit every 27 ms did not starve the
// old rule.
func TestSimFrequentCommitsKeepLeases(t *testing.T) {
	c := newSimCluster(t, 3, "")
	c.initCluster(1)
	// Probes that take a while, as a real one's connection and queries
	// do on a loaded host (well within probe_timeout): a report is then
	// made on the topology of its round's start, a commit or so before
	// the leader acknowledges it.
	c.world.SlowProbes(simProbeTimeout / 2)
	before := c.state()
	primaries := map[int]topology.Segment{}
	for _, s := range before.Segments {
		if s.Content >= 0 && s.Role == topology.RolePrimary {
			primaries[s.Content] = s
		}
	}
	hosts := (&topology.Topology{Segments: before.Segments}).Hosts()
	lead := c.agent(c.waitLeader())
	// An agent fences at its start, before it first hears the leader:
	// only the events of the commits count.
	fences, promotions := map[string]uint64{}, map[string]uint64{}
	for _, h := range c.hosts {
		fences[h.name] = c.agent(h).counts.fences.Load()
		promotions[h.name] = c.agent(h).counts.failovers.Load()
	}
	wait := lead.cfg.Lease + lead.cfg.LeaseMargin

	// Commits every 50 ms for six leases (failover paused and resumed:
	// nothing else changes), bounded in count and in time.
	const every = 50 * time.Millisecond
	span := 6 * lead.cfg.Lease
	maxCommits := int(span / every)
	ctx, cancel := context.WithTimeout(context.Background(), simWait)
	defer cancel()
	tick := time.NewTicker(every)
	defer tick.Stop()
	start := time.Now()
	commits := 0
	lostSeen := map[string]bool{}
	for commits < maxCommits && time.Since(start) < span {
		if _, err := c.client().SetPaused(ctx, commits%2 == 0); err != nil {
			t.Fatalf("commit %d (pause %v): %v", commits, commits%2 == 0, err)
		}
		commits++
		// The leader's count of lost hosts, read without changing it.
		lead.lead.mu.Lock()
		_, lost := lead.lead.heard.Lost(hosts, lead.clock.Now(), wait)
		lead.lead.mu.Unlock()
		maps.Copy(lostSeen, lost)
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("commits: %v", ctx.Err())
		}
	}
	elapsed := time.Since(start)
	if _, err := c.client().SetPaused(ctx, false); err != nil {
		t.Fatalf("resume: %v", err)
	}
	t.Logf("%d commits in %s (one every %s), lease %s", commits, elapsed.Round(time.Millisecond), (elapsed / time.Duration(commits)).Round(time.Millisecond), lead.cfg.Lease)
	if elapsed < 3*wait {
		t.Fatalf("the commits lasted %s, less than three leases plus margin (%s): the test shows nothing", elapsed, 3*wait)
	}

	var fenced []string
	for _, h := range c.hosts {
		if n := c.agent(h).counts.fences.Load() - fences[h.name]; n > 0 {
			fenced = append(fenced, fmt.Sprintf("%s fenced %d times", h.name, n))
		}
		if n := c.agent(h).counts.failovers.Load() - promotions[h.name]; n > 0 {
			fenced = append(fenced, fmt.Sprintf("%s promoted %d mirrors", h.name, n))
		}
	}
	for _, p := range primaries {
		if st := c.world.State(p.Address, p.Port); st.FencedAt.After(start) {
			fenced = append(fenced, fmt.Sprintf("primary %s fenced at %s", p, st.FencedAt.Format(time.RFC3339Nano)))
		}
	}
	for _, s := range c.state().Segments {
		if p, ok := primaries[s.Content]; ok && s.DBID == p.DBID && s.Role != topology.RolePrimary {
			fenced = append(fenced, fmt.Sprintf("content %d lost its primary %s: now %s", s.Content, p, s.Role))
		}
	}
	if len(lostSeen) > 0 {
		fenced = append(fenced, fmt.Sprintf("the leader counted hosts lost: %v", slices.Sorted(maps.Keys(lostSeen))))
	}
	if len(fenced) > 0 {
		t.Fatalf("healthy agents lost their leases under %d commits in %s:\n%v", commits, elapsed.Round(time.Millisecond), fenced)
	}
}
