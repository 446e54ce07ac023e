package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/gpagent/gpagent/consensus"
	"github.com/gpagent/gpagent/membership"
)

// Version is this agent's version, spread in its gossip metadata.
const Version = "0.1.0"

// gossipHealth is what a server agent spreads by gossip besides its
// direct reports: whether it belongs to a Raft cluster, so that a wiped
// agent never bootstraps a second one (maybeBootstrap, the only reader).
// Nothing else goes in: every health message is passed on by every member
// that hears it (membership's epidemic spread), so a field nobody reads
// costs each of N hosts N messages per change. Instance states and the
// leader's name once rode here and were never read; the leader learns
// instance states from the direct reports.
type gossipHealth struct {
	Cluster bool `json:"c,omitempty"`
}

// gossipAddr splits cfg.GossipAddr.
func (a *Agent) gossipAddr() (string, int, error) {
	host, portStr, err := net.SplitHostPort(a.cfg.GossipAddr)
	if err != nil {
		return "", 0, fmt.Errorf("gossip_addr %s: %w", a.cfg.GossipAddr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return "", 0, fmt.Errorf("gossip_addr %s: port: %w", a.cfg.GossipAddr, err)
	}
	return host, port, nil
}

// gossipTransport binds gossip through the agent's Network.
func (a *Agent) gossipTransport() (memberlist.NodeAwareTransport, error) {
	host, port, err := a.gossipAddr()
	if err != nil {
		return nil, err
	}
	t, err := a.net.GossipTransport(host, port)
	if err != nil {
		return nil, fmt.Errorf("gossip_addr %s: %w", a.cfg.GossipAddr, err)
	}
	return t, nil
}

// openMesh starts gossip on cfg.GossipAddr (or on transport, when the
// agent was handed a Network) with this agent's metadata.
func (a *Agent) openMesh(transport memberlist.NodeAwareTransport) error {
	host, port, err := a.gossipAddr()
	if err != nil {
		return err
	}
	a.meshEvents = make(chan membership.Event, 64)
	a.mesh, err = membership.New(membership.Config{
		Name:      a.cfg.Name,
		BindAddr:  host,
		BindPort:  port,
		Meta:      membership.Meta{Name: a.cfg.Name, APIAddr: a.advertisedAPI(), RaftAddr: a.node.Addr(), Version: Version, RaftID: a.node.ID()},
		Keys:      startGossipKeys(a.cfg, a.log),
		Logger:    a.log,
		Transport: transport,
		Events:    a.meshEvents,
		Alone:     a.cfg.Client && len(a.cfg.Join) == 0,
	})
	if err != nil {
		return fmt.Errorf("gossip_addr %s: %w", a.cfg.GossipAddr, err)
	}
	a.node.SetMinVersion(a.clusterMinVersion)
	return nil
}

// clusterMinVersion is the lowest version among the agents of gossip and
// of the Raft configuration (the upgrade gate's input); "" when unknown.
func (a *Agent) clusterMinVersion() string {
	servers, err := a.node.Servers()
	if err != nil {
		return "" // unknown: only the baseline is written
	}
	ids := make([]string, 0, len(servers))
	for _, s := range servers {
		ids = append(ids, s.ID)
	}
	return minVersion(a.mesh.Members(), a.cfg.Name, ids)
}

// advertisedAPI is the API address others reach this agent at.
func (a *Agent) advertisedAPI() string {
	host, port, err := net.SplitHostPort(a.APIAddr())
	if err != nil {
		return a.APIAddr()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = a.cfg.Address
	}
	return net.JoinHostPort(host, port)
}

// runMesh joins the agents named in the config and, on a restart with
// Raft state, the peers it saw last (retrying until one answers), then
// every second spreads this agent's health and, while no cluster exists
// yet, bootstraps one when bootstrap_expect agents see each other; and it
// dials again at most one member held dead or left.
func (a *Agent) runMesh(ctx context.Context) {
	join := slices.Clone(a.cfg.Join)
	if a.node.HasState() {
		// A restart: the others hold this agent left (a graceful stop)
		// or dead, and may not dial it soon; the bootstrap agent often
		// has no join list at all.
		for _, p := range a.savedPeers() {
			if !slices.Contains(join, p) && p != a.mesh.LocalAddr() {
				join = append(join, p)
			}
		}
	}
	if len(join) > 0 {
		go func() {
			n, err := a.mesh.Join(ctx, join)
			if err != nil && ctx.Err() == nil {
				a.log.Error("gossip join failed", "join", join, "err", err)
				return
			}
			a.log.Info("joined the gossip pool", "contacted", n)
		}()
	}
	go a.forwardMeshEvents(ctx)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		a.publishHealth()
		if !a.node.HasState() && a.cfg.BootstrapExpect > 0 && !a.cfg.Client {
			a.maybeBootstrap()
		}
		members := a.mesh.Members()
		a.savePeers(members)
		a.rejoinDead(ctx, members)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// forwardMeshEvents wakes the leader loop on a member's join, leave or
// failure, so that it changes the Raft configuration at once; the
// leader acts on the current members, so a coalesced hint loses nothing.
// Health and metadata updates are not membership changes.
func (a *Agent) forwardMeshEvents(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-a.meshEvents:
			switch ev.Kind {
			case membership.EventJoin, membership.EventLeave, membership.EventFailed:
				a.lead.membersChanged()
			}
		}
	}
}

// publishHealth spreads this agent's gossipHealth when it changed. A
// client spreads none: it can never bootstrap, and maybeBootstrap looks
// at servers only. An unchanged report is not sent again: push-pull and
// every join's state exchange give it to members that missed it, so an
// idle cluster's gossip carries no health at all.
func (a *Agent) publishHealth() {
	if a.cfg.Client {
		return
	}
	b, _ := json.Marshal(gossipHealth{Cluster: a.node.HasState()})
	if bytes.Equal(b, a.healthSent) {
		return
	}
	if err := a.mesh.SetHealth(b); err != nil {
		a.log.Debug("gossip health not spread", "err", err)
		return
	}
	a.healthSent = b
}

// maybeBootstrap starts a new Raft cluster once bootstrap_expect agents
// are alive and none of them belongs to a cluster: the agent with the
// lowest name bootstraps a cluster of itself alone, and as its leader
// adds the others (manageVoters: alive agents join as voters up to the
// target). Not all of them as voters at once: the others, with no
// configuration yet, vote for no one (consensus's vote guard), so that
// first election could never be won. An agent whose data dir was wiped
// sees the others' cluster and waits to be added back.
func (a *Agent) maybeBootstrap() {
	var alive []membership.Member
	for _, m := range a.mesh.Members() {
		if m.Status != membership.StatusAlive || m.Meta.RaftAddr == "" {
			continue
		}
		if m.Name != a.cfg.Name {
			// A member whose health has not arrived yet (memberlist
			// records a member at its join, before its first health
			// message) may well be in a cluster: wait for it, or a
			// wiped agent with the lowest name could bootstrap a second
			// cluster beside the one that exists.
			var h gossipHealth
			if json.Unmarshal(m.Health, &h) != nil || h.Cluster {
				return
			}
		}
		alive = append(alive, m)
	}
	if len(alive) < a.cfg.BootstrapExpect {
		return
	}
	slices.SortFunc(alive, func(x, y membership.Member) int { return strings.Compare(x.Name, y.Name) })
	alive = alive[:a.cfg.BootstrapExpect]
	if alive[0].Name != a.cfg.Name {
		return
	}
	self := alive[0]
	if err := a.node.BootstrapCluster([]consensus.Server{{ID: raftID(self), Address: self.Meta.RaftAddr}}); err != nil {
		a.log.Error("bootstrap failed", "err", err)
		return
	}
	a.log.Info("bootstrapped a new cluster; its leader adds the others", "expect", a.cfg.BootstrapExpect)
}

// leaderAPI returns the API address of the current leader, from its
// gossip metadata, else (a client without gossip) from the servers'
// last answer.
func (a *Agent) leaderAPI() (string, bool) {
	id, _ := a.node.Leader()
	if id == "" {
		return "", false
	}
	if id == a.cfg.Name {
		return a.advertisedAPI(), true
	}
	m, ok := a.mesh.Member(id)
	if !ok {
		return a.directoryAPI(id)
	}
	if m.Meta.APIAddr == "" {
		return "", false
	}
	return m.Meta.APIAddr, true
}

// memberAPI returns the API address of the named agent: alive in gossip,
// or, for one gossip does not know, a server the servers named (on a
// client) or a client heard by this leader (one that joined no gossip
// pool: servers in its config).
func (a *Agent) memberAPI(name string) (string, bool) {
	if name == a.cfg.Name {
		return a.advertisedAPI(), true
	}
	m, ok := a.mesh.Member(name)
	if !ok {
		return a.directoryAPI(name)
	}
	if m.Status != membership.StatusAlive {
		return "", false
	}
	return m.Meta.APIAddr, true
}

// directoryAPI finds an agent gossip does not know: a server, by the
// servers' last answer to this client; a client without gossip, by its
// reports to this leader.
func (a *Agent) directoryAPI(name string) (string, bool) {
	if c, ok := a.node.(*clientNode); ok {
		return c.serverAPI(name)
	}
	if a.lead == nil {
		return "", false
	}
	return a.lead.clientAPI(name, a.clock.Now())
}

// hostKnown reports whether an agent of that name is alive in the mesh,
// or is a client without gossip this leader heard within lease + margin.
func (a *Agent) hostKnown(name string) bool {
	_, ok := a.memberAPI(name)
	return ok
}

func (a *Agent) knownHosts() []string {
	var out []string
	for _, m := range a.mesh.Members() {
		if m.Status == membership.StatusAlive {
			out = append(out, m.Name)
		}
	}
	if a.lead != nil {
		for _, c := range a.lead.directClients(a.clock.Now()) {
			if !slices.Contains(out, c.name) {
				out = append(out, c.name)
			}
		}
	}
	return out
}

// rejoinDead contacts one member gossip holds dead: memberlist never
// probes a dead member again, so after a partition heals each side would
// keep the other dead until a restart (Serf runs the same reconnect loop).
// One member a round is enough to heal a partition (the push-pull with
// it makes the others refute their death by gossip), and each member's
// attempts back off: dialling every member ever seen dead every round,
// for ever, is a thousand dials every 3 s in a large cluster that lost
// hosts for good.
//
// A member that left gracefully is dialled too while it is still in the
// Raft configuration: a left agent is one that stopped, most often to be
// restarted (systemd restart, an upgrade), and one restarted with no join
// list and no saved peers has nobody else to find the cluster through.
// One removed from Raft (gone for good) is left alone.
func (a *Agent) rejoinDead(ctx context.Context, members []membership.Member) {
	if !a.rejoinBusy.CompareAndSwap(false, true) {
		return // the last attempt is still dialling
	}
	var inRaft map[string]bool // read only when someone left
	var dead []membership.Member
	for _, m := range members {
		if m.Addr == "" || m.Name == a.cfg.Name {
			continue
		}
		switch m.Status {
		case membership.StatusDead:
			dead = append(dead, m)
		case membership.StatusLeft:
			if inRaft == nil {
				inRaft = a.raftNames()
			}
			if inRaft[m.Name] {
				dead = append(dead, m)
			}
		}
	}
	addr, ok := a.rejoin.pick(a.clock.Now(), dead)
	if !ok {
		a.rejoinBusy.Store(false)
		return
	}
	go func() {
		defer a.rejoinBusy.Store(false)
		jctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if n, err := a.mesh.Join(jctx, []string{addr}); err == nil && n > 0 {
			a.log.Info("rejoined a member held dead or left", "addr", addr)
		}
	}()
}

// Backoff of the attempts to reach one member held dead: the first comes
// at once, each later one waits twice as long, at most rejoinMaxWait.
const (
	rejoinMinWait = 3 * time.Second
	rejoinMaxWait = 60 * time.Second
)

// rejoiner chooses which dead member to dial (mesh loop only).
type rejoiner struct {
	next map[string]rejoinState // by gossip address
}

type rejoinState struct {
	at   time.Time     // not dialled again before
	wait time.Duration // the wait after the next attempt
}

// pick returns the address of the dead member due soonest, if one is due
// at now, and pushes that member's next attempt back. Members no longer
// dead are forgotten, so one that dies again starts from the shortest wait.
func (r *rejoiner) pick(now time.Time, dead []membership.Member) (string, bool) {
	if r.next == nil {
		r.next = map[string]rejoinState{}
	}
	still := make(map[string]bool, len(dead))
	for _, m := range dead {
		still[m.Addr] = true
		if _, ok := r.next[m.Addr]; !ok {
			r.next[m.Addr] = rejoinState{at: now, wait: rejoinMinWait}
		}
	}
	best, found := "", false
	for addr, st := range r.next {
		if !still[addr] {
			delete(r.next, addr)
			continue
		}
		if st.at.After(now) {
			continue
		}
		// Earliest due first; the address breaks ties so the choice
		// does not depend on map order.
		if !found || st.at.Before(r.next[best].at) || (st.at.Equal(r.next[best].at) && addr < best) {
			best, found = addr, true
		}
	}
	if !found {
		return "", false
	}
	st := r.next[best]
	r.next[best] = rejoinState{at: now.Add(st.wait), wait: min(2*st.wait, rejoinMaxWait)}
	return best, true
}

// raftNames is the set of agent names in this agent's copy of the Raft
// configuration (empty if it has none).
func (a *Agent) raftNames() map[string]bool {
	out := map[string]bool{}
	servers, err := a.node.Servers()
	if err != nil {
		return out
	}
	for _, s := range servers {
		out[s.Name] = true
	}
	return out
}
