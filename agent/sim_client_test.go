package agent

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

// Client agents (server: false): a few servers hold the Raft log, every
// other agent learns the topology by the blocking query GET /v1/topology
// and reports to the leader over HTTP. These tests run 3 servers and 2
// clients, every host with instances, and check what an operator would.

// newSimClientCluster starts servers Raft servers, then clients client
// agents, and waits until every client is in gossip as a client and has
// the servers' topology.
func newSimClientCluster(t *testing.T, servers, clients int, extra string, tweak ...func(*Config)) *simCluster {
	t.Helper()
	c := newSimCluster(t, servers, extra, tweak...)
	for range clients {
		c.addHost("server: false\n" + extra)
	}
	c.waitClients()
	return c
}

// isClient reports whether h's agent runs as a client.
func (c *simCluster) isClient(h *simHost) bool { return c.agent(h).cfg.Client }

// waitClients waits until the members list shows every client as such
// and only the servers in Raft.
func (c *simCluster) waitClients() {
	c.t.Helper()
	c.waitUntil("the clients in gossip, outside Raft", func() (bool, string) {
		m, err := c.client().Members(context.Background())
		if err != nil {
			return false, err.Error()
		}
		role := map[string]string{}
		for _, x := range m.Members {
			role[x.Name] = x.RaftRole
		}
		for _, h := range c.running() {
			want := "client"
			if !c.isClient(h) {
				if r := role[h.name]; r != "leader" && r != "voter" {
					return false, fmt.Sprintf("%s: %q", h.name, r)
				}
				continue
			}
			if role[h.name] != want {
				return false, fmt.Sprintf("%s: %q", h.name, role[h.name])
			}
		}
		return true, ""
	})
}

// clientPrimary returns a client host, a primary on it and its mirror.
func (c *simCluster) clientPrimary() (*simHost, topology.Segment, topology.Segment) {
	c.t.Helper()
	s := c.state()
	for _, seg := range s.Segments {
		if seg.Content < 0 || seg.Role != topology.RolePrimary || !c.isClient(c.host(seg.Hostname)) {
			continue
		}
		p, m := simPair(c.t, s, seg.Content)
		return c.host(p.Hostname), p, m
	}
	c.t.Fatal("no primary on a client host")
	return nil, topology.Segment{}, topology.Segment{}
}

// waitClientCaughtUp waits until h's topology is the leader's.
func (c *simCluster) waitClientCaughtUp(h *simHost) {
	c.t.Helper()
	c.waitUntil(h.name+" has the leader's topology", func() (bool, string) {
		lead := c.waitLeader()
		want := c.agent(lead).node.Topology().ConfigVersion
		got := c.agent(h).node.Topology().ConfigVersion
		return got == want, fmt.Sprintf("%d, leader %d", got, want)
	})
}

// TestSimClientInit: a cluster of 3 servers and 2 clients initializes,
// every pair gets in sync, the clients stay out of Raft and hold the
// committed topology, and none fenced on the way.
func TestSimClientInit(t *testing.T) {
	c := newSimClientCluster(t, 3, 2, "")
	c.initCluster(1)
	servers, err := c.agent(c.waitLeader()).node.Servers()
	if err != nil {
		t.Fatal(err)
	}
	if len(servers) != 3 {
		t.Errorf("the Raft configuration has %d members, want the 3 servers: %+v", len(servers), servers)
	}
	fences := map[string]uint64{}
	for _, h := range c.hosts {
		if !c.isClient(h) {
			continue
		}
		c.waitClientCaughtUp(h)
		fences[h.name] = c.agent(h).counts.fences.Load()
		if a := c.agent(h).node.Addr(); a != "" {
			t.Errorf("client %s advertises a Raft address %q", h.name, a)
		}
	}
	c.waitClients()
	// Idle, the clients' leases keep being renewed by the leader's
	// acknowledgements: over three leases, none fences.
	t0 := time.Now()
	cfg := c.agent(c.hosts[0]).cfg
	for _, h := range c.hosts {
		if !c.isClient(h) {
			continue
		}
		a := c.agent(h)
		c.waitUntil(h.name+"'s lease renewed three leases after init", func() (bool, string) {
			left := a.lease.remaining(a.clock.Now(), cfg.Lease)
			return time.Since(t0) > 3*cfg.Lease && left > 0 && !a.lease.isFenced(), fmt.Sprintf("lease left %s", left)
		})
		if n := a.counts.fences.Load(); n != fences[h.name] {
			t.Errorf("client %s fenced %d times while nothing failed", h.name, n-fences[h.name])
		}
	}
}

// TestSimClientKillPrimary: kill -9 of a primary on a client host fails
// over to its mirror, and no acknowledged write is lost.
func TestSimClientKillPrimary(t *testing.T) {
	c := newSimClientCluster(t, 3, 2, "")
	c.initCluster(1)
	_, p, m := c.clientPrimary()
	c.killPrimary(p, m)
}

// TestSimClientHostLoss: a client host lost (agent and instances gone at
// once, no goodbye) fails over after lease plus margin.
func TestSimClientHostLoss(t *testing.T) {
	c := newSimClientCluster(t, 3, 2, "")
	c.initCluster(1)
	host, p, m := c.clientPrimary()
	// Promoted no sooner than the host must have fenced: the leader waits
	// lease plus margin since it last heard the host.
	if d := c.loseHost(host, p, m); d < c.agent(c.waitLeader()).cfg.Lease {
		t.Errorf("promoted %s after the host loss, sooner than the lease", d)
	}
}

// TestSimClientCutFromLeader cuts only the link between a client and the
// leader: the client still reaches the other servers (its topology query
// works) but its reports are not acknowledged, so it fences its primary
// (the lease rule) and the leader promotes the mirror. After the heal the
// old primary never takes writes again.
func TestSimClientCutFromLeader(t *testing.T) {
	c := newSimClientCluster(t, 3, 2, "")
	c.initCluster(1)
	host, p, m := c.clientPrimary()
	lead := c.waitLeader()
	c.cutOffFailsOver(host, p, m, func() { c.net.Cut(host.ip, lead.ip) })
}

// TestSimClientRestartCatchesUp stops a client, changes the topology
// meanwhile (a failover elsewhere), and starts it again: it catches up by
// the blocking query, adopts its instances, and a crash on its host still
// fails over.
func TestSimClientRestartCatchesUp(t *testing.T) {
	c := newSimClientCluster(t, 3, 2, "")
	c.initCluster(1)
	host, _, _ := c.clientPrimary()
	c.stop(host)
	// A failover between server hosts while the client is down.
	s := c.state()
	var op, om topology.Segment
	for _, seg := range s.Segments {
		if seg.Content < 0 || seg.Role != topology.RolePrimary || c.isClient(c.host(seg.Hostname)) {
			continue
		}
		if p, m := simPair(t, s, seg.Content); !c.isClient(c.host(m.Hostname)) {
			op, om = p, m
			break
		}
	}
	if op.DBID == 0 {
		t.Fatalf("no pair with both instances on servers: %v", s.Segments)
	}
	c.world.Crash(op.Address, op.Port)
	c.waitPromoted(op, om)
	c.start(host)
	c.waitClientCaughtUp(host)
	// The restarted client acts again: it takes part in the recovery
	// (its own primary may have failed over while it was down, longer
	// than lease plus margin), and a crash on its host fails over.
	c.recoverAll(false)
	_, p, m := c.clientPrimary()
	c.killPrimary(p, m)
}

// TestSimClientWithoutGossip: clients that join no gossip pool (servers:
// the servers' API addresses, no join) are listed by the leader from their
// reports, take part in init (preflight reaches them through the address
// they report), fail over on their host's loss no sooner than the lease
// (the lease renewed by reports alone), and never appear in a server's
// gossip.
func TestSimClientWithoutGossip(t *testing.T) {
	c := newSimCluster(t, 3, "")
	var apis []string
	for _, h := range c.hosts {
		apis = append(apis, c.agent(h).APIAddr())
	}
	for range 2 {
		c.addHostStarting("servers: ["+strings.Join(apis, ", ")+"]", "server: false\n")
	}
	c.waitUntil("the leader lists both clients", func() (bool, string) {
		m, err := api.NewClient(c.agent(c.waitLeader()).APIAddr()).WithToken(c.token).Members(context.Background())
		if err != nil {
			return false, err.Error()
		}
		n := 0
		for _, x := range m.Members {
			if x.RaftRole == "client" && x.Status == "alive" && x.APIAddr != "" {
				n++
			}
		}
		return n == 2, fmt.Sprintf("%d clients: %+v", n, m.Members)
	})
	c.initCluster(1)
	for _, h := range c.hosts {
		if !c.isClient(h) {
			for _, m := range c.agent(h).mesh.Members() {
				if strings.HasPrefix(m.Name, "sdw4") || strings.HasPrefix(m.Name, "sdw5") {
					t.Errorf("server %s has client %s in its gossip pool", h.name, m.Name)
				}
			}
			continue
		}
		if n := len(c.agent(h).mesh.Members()); n != 1 {
			t.Errorf("client %s's gossip pool holds %d members, want itself alone", h.name, n)
		}
		c.waitClientCaughtUp(h)
	}

	host, p, m := c.clientPrimary()
	if d := c.loseHost(host, p, m); d < c.agent(c.waitLeader()).cfg.Lease {
		t.Errorf("promoted %s after the host loss, sooner than the lease", d)
	}
}
