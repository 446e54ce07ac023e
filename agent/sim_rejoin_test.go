package agent

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/membership"
	"github.com/gpagent/gpagent/topology"
)

// TestSimRestartedAgentWithoutJoinListRejoins restarts the agent that
// bootstrapped the cluster and has no join list (a systemd restart: a
// graceful stop, which leaves gossip, then a start on the same data dir).
// It must come back on its own: a Raft member again, alive in gossip, its
// API answering and its primaries writable. Before the fix nobody dialled
// it (the others never dial a member that left, and it had no one to
// join), the leader removed it from Raft as "left", and it fenced its
// primaries for good.
func TestSimRestartedAgentWithoutJoinListRejoins(t *testing.T) {
	c := newSimCluster(t, 3, "")
	c.initCluster(1)
	h := c.hosts[0]
	if !strings.Contains(h.cfgDoc, "bootstrap: true") || strings.Contains(h.cfgDoc, "join:") {
		t.Fatalf("%s is not the bootstrap agent without a join list:\n%s", h.name, h.cfgDoc)
	}
	c.stop(h)
	// The others hold it left, as after any graceful stop.
	others := c.hosts[1:]
	c.waitUntil(h.name+" held left by the others", func() (bool, string) {
		var seen []string
		for _, o := range others {
			m, ok := c.agent(o).mesh.Member(h.name)
			seen = append(seen, fmt.Sprintf("%s:%v", o.name, m.Status))
			if !ok || m.Status != membership.StatusLeft {
				return false, strings.Join(seen, " ")
			}
		}
		return true, ""
	})
	c.start(h)
	a := c.agent(h)
	self := api.NewClient(a.APIAddr()).WithToken(c.token)

	c.waitUntil(h.name+" a Raft member of the leader's configuration and alive in its gossip", func() (bool, string) {
		lead := c.waitLeader()
		la := c.agent(lead)
		servers, err := la.node.Servers()
		if err != nil {
			return false, err.Error()
		}
		inRaft := false
		for _, s := range servers {
			inRaft = inRaft || s.Name == h.name
		}
		m, _ := la.mesh.Member(h.name)
		return inRaft && m.Status == membership.StatusAlive, fmt.Sprintf("leader %s: in raft %v, gossip %s", lead.name, inRaft, m.Status)
	})
	c.waitUntil(h.name+"'s API answering with the cluster's state, its lease held", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, err := self.State(ctx); err != nil {
			return false, err.Error()
		}
		if a.lease.isFenced() || a.lease.expired(h.clock.Now(), a.cfg.Lease) {
			return false, "lease fenced or expired"
		}
		return true, ""
	})
	// Every primary the topology places on it takes commits.
	c.waitUntil(h.name+"'s primaries writable", func() (bool, string) {
		s, err := c.client().State(context.Background())
		if err != nil {
			return false, err.Error()
		}
		for _, seg := range s.Segments {
			if seg.Hostname != h.name || seg.Role != topology.RolePrimary || seg.Status != topology.StatusUp {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, _, err := c.world.Commit(ctx, seg.Address, seg.Port)
			cancel()
			if err != nil {
				return false, fmt.Sprintf("%s: %v", seg, err)
			}
		}
		return !a.lease.isFenced(), "fenced"
	})
	// And it stays a member: the leader does not remove it later.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		lead := c.waitLeader()
		servers, err := c.agent(lead).node.Servers()
		if err == nil {
			found := false
			for _, s := range servers {
				found = found || s.Name == h.name
			}
			if !found {
				t.Fatalf("leader %s removed %s from Raft after it rejoined", lead.name, h.name)
			}
		}
		<-time.After(200 * time.Millisecond)
	}
}

// TestSimLeftAgentRemovedAfterRemoveLeftAfter: an agent stopped for good
// stays a Raft member until remove_left_after has passed, then the leader
// removes it (and the others stop dialling it).
func TestSimLeftAgentRemovedAfterRemoveLeftAfter(t *testing.T) {
	const after = 3 * time.Second
	c := newSimCluster(t, 3, "remove_left_after: "+after.String()+"\n")
	lead := c.waitLeader()
	var gone *simHost
	for _, h := range c.hosts {
		if h != lead {
			gone = h
			break
		}
	}
	stopped := time.Now()
	c.stop(gone)
	var removedAt time.Time
	c.waitUntil(gone.name+" removed from Raft", func() (bool, string) {
		l := c.waitLeader()
		servers, err := c.agent(l).node.Servers()
		if err != nil {
			return false, err.Error()
		}
		var ids []string
		for _, s := range servers {
			ids = append(ids, s.ID)
			if s.Name == gone.name {
				return false, strings.Join(ids, " ")
			}
		}
		removedAt = time.Now()
		return true, ""
	})
	if d := removedAt.Sub(stopped); d < after {
		t.Fatalf("%s removed %s after it left, before remove_left_after (%s)", gone.name, d.Round(time.Millisecond), after)
	}
}
