package agent

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/internal/simnet"
	"github.com/gpagent/gpagent/simpg"
	"github.com/gpagent/gpagent/topology"
	"github.com/gpagent/gpagent/watchdog"
)

// The in-process mesh (DESIGN.md's second testing tier): several agents in
// this test process, each on its own 127.0.0.x, with real Raft, real
// memberlist and the real HTTP API over loopback, a simulated PostgreSQL
// (simpg) for their instances, a network the test can cut (simnet) and a
// clock per agent that can jump. No PostgreSQL, no root.

// Timings of the simulated clusters: short, so a failover takes a fraction
// of a second, yet with the same ratios as the defaults (a hang is
// declared after probe_interval + probe_retries x probe_timeout; the
// leader promotes on a lost host lease + margin after it last heard it).
const simAgentTimings = `probe_interval: 200ms
probe_timeout: 150ms
probe_retries: 3
replication_stall_timeout: 1s
lease: 1500ms
`

// simProbeTimeout is probe_timeout in simAgentTimings.
const simProbeTimeout = 150 * time.Millisecond

// simWait is the deadline of every wait in these tests: generous, for a
// loaded 2-core machine under the race detector.
const simWait = 45 * time.Second

// skewClock runs with real time, plus an offset a test can move forward:
// a clock jump as the agent's decisions see it.
type skewClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *skewClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *skewClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

func (c *skewClock) Jump(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// simHost is one host of a simulated cluster and its agent.
type simHost struct {
	name, ip string
	dir      string
	cfgDoc   string
	clock    *skewClock

	mu     sync.Mutex
	agent  *Agent
	cancel context.CancelFunc
	done   chan error
}

// simCluster is a set of simulated hosts: agents, instances and network.
type simCluster struct {
	t     *testing.T
	world *simpg.World
	net   *simnet.Net
	hosts []*simHost
	log   *slog.Logger

	mu       sync.Mutex
	isolated map[string]bool // by ip: cut off from the other hosts
	// tweak changes every agent's parsed config (settings the config
	// file does not offer, as the leader's lease margin).
	tweak func(*Config)

	root, join string // the hosts' dirs' parent; the first agent's gossip address
	// voterRound, when set, replaces the leaders' periodic voter round.
	voterRound time.Duration
	// token and gossipKey are this cluster's own: sim tests run in
	// parallel on the same 127.0.0.x addresses, and an agent that dials a
	// stale address another test's agent now listens on must be refused
	// (the Raft handshake and gossip encryption), not join that cluster.
	token     string
	gossipKey []byte
	// noWatchdog runs the agents without their fence watchdogs.
	noWatchdog bool
}

// isolate cuts h off from every other host (all traffic kinds).
func (c *simCluster) isolate(h *simHost) {
	c.mu.Lock()
	c.isolated[h.ip] = true
	c.mu.Unlock()
	c.net.Isolate(h.ip)
}

// heal lifts every cut.
func (c *simCluster) heal() {
	c.mu.Lock()
	clear(c.isolated)
	c.mu.Unlock()
	c.net.Heal()
}

// newSimCluster starts n agents on 127.0.0.2... The first bootstraps the
// Raft cluster, the others join it by gossip. extra is added to every
// agent's config; a timing it sets replaces simAgentTimings'. tweak
// changes every agent's parsed config.
func newSimCluster(t *testing.T, n int, extra string, tweak ...func(*Config)) *simCluster {
	t.Helper()
	c := newSimWorld(t)
	c.tweak = func(cfg *Config) {
		for _, f := range tweak {
			f(cfg)
		}
	}
	for range n {
		c.addHost(extra)
	}
	c.waitRaftMembers(n)
	return c
}

// newSimWorld returns a simulated cluster with no host yet.
func newSimWorld(t *testing.T) *simCluster {
	// Sim tests mostly wait (leases, probe rounds), so two at a time (the
	// default -parallel is GOMAXPROCS) keep the tier under two minutes.
	t.Parallel()
	// The world's probe timeout is the agents' probe_timeout: a probe of
	// a hung instance fails after it, as the supervisor's does (simpg's
	// default of 2 s would make every hang test wait that long per probe).
	world := simpg.NewWorld(simpg.Options{ProbeTimeout: simProbeTimeout})
	c := &simCluster{t: t, world: world, net: simnet.New(), log: simLogger(t), isolated: map[string]bool{}, root: t.TempDir(),
		token: rand.Text(), gossipKey: []byte(rand.Text()[:16])} // an AES-128 key
	t.Cleanup(c.world.Close)
	return c
}

// addHost starts one more agent, on the next 127.0.0.x: the first
// bootstraps the Raft cluster, the others join the first by gossip.
func (c *simCluster) addHost(extra string) *simHost {
	c.t.Helper()
	start := "bootstrap: true"
	if len(c.hosts) > 0 {
		start = "join: [" + c.join + "]"
	}
	return c.addHostStarting(start, extra)
}

// addHostStarting adds a host whose config finds the cluster by start
// (bootstrap, join or servers).
func (c *simCluster) addHostStarting(start, extra string) *simHost {
	c.t.Helper()
	i := len(c.hosts)
	h := &simHost{name: fmt.Sprintf("sdw%d", i+1), ip: fmt.Sprintf("127.0.0.%d", i+2), clock: &skewClock{}}
	h.dir = filepath.Join(c.root, h.name)
	h.cfgDoc = fmt.Sprintf(`name: %s
address: %s
data_dir: %s
api_addr: %s:0
raft_addr: %s:0
gossip_addr: %s:0
%s
%s
postgres: {superuser_password: a, replication_password: b}
%s`, h.name, h.ip, h.dir, h.ip, h.ip, h.ip, start, simTimings(extra), extra)
	c.hosts = append(c.hosts, h)
	c.start(h)
	if i == 0 {
		c.join = c.agent(h).mesh.LocalAddr()
		c.waitLeader()
	}
	return h
}

// waitRaftMembers waits until n agents are in the Raft configuration and
// returns their roles by name.
func (c *simCluster) waitRaftMembers(n int) map[string]string {
	c.t.Helper()
	roles := map[string]string{}
	c.waitUntil(fmt.Sprintf("%d agents members of the Raft cluster", n), func() (bool, string) {
		m, err := c.client().Members(context.Background())
		if err != nil {
			return false, err.Error()
		}
		clear(roles)
		var seen []string
		for _, x := range m.Members {
			if x.RaftRole != "" && x.RaftRole != "none" {
				roles[x.Name] = x.RaftRole
				seen = append(seen, x.Name+"="+x.RaftRole)
			}
		}
		return len(roles) == n, strings.Join(seen, " ")
	})
	return roles
}

// simTimings is simAgentTimings without the keys extra sets (a key
// twice is an error of the strict config parser).
func simTimings(extra string) string {
	var b strings.Builder
	for line := range strings.Lines(simAgentTimings) {
		key, _, _ := strings.Cut(line, ":")
		if !strings.Contains("\n"+extra, "\n"+key+":") {
			b.WriteString(line)
		}
	}
	return b.String()
}

func simLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.close)
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// start runs h's agent (again, after stop: a restart keeps its data dir
// and its running instances, which it adopts).
func (c *simCluster) start(h *simHost) {
	c.t.Helper()
	if strings.Contains(h.cfgDoc, "bootstrap: true") && c.agent(h) != nil {
		// A restart of the bootstrapping agent joins the others, as an
		// operator's config lists them: its stop left the gossip pool,
		// so the leader may have removed it from Raft, and only a gossip
		// join brings it back (the others never contact a member that
		// left).
		var others []string
		for _, o := range c.running() {
			others = append(others, c.agent(o).mesh.LocalAddr())
		}
		if len(others) > 0 {
			h.cfgDoc = strings.Replace(h.cfgDoc, "bootstrap: true", "join: ["+strings.Join(others, ", ")+"]", 1)
		}
	}
	cfg, err := ParseConfig([]byte(h.cfgDoc))
	if err != nil {
		c.t.Fatalf("%s config: %v", h.name, err)
	}
	if c.tweak != nil {
		c.tweak(cfg)
	}
	// As the documented config runs: the API guarded by the cluster
	// token, gossip encrypted (ParseConfig reads no *_file fields).
	if cfg.Token == "" && !cfg.Insecure {
		cfg.Token = c.token
	}
	if len(cfg.GossipKeys) == 0 && !cfg.Insecure {
		cfg.GossipKeys = [][]byte{c.gossipKey}
	}
	a, err := NewWith(cfg, Deps{Logger: c.log, Driver: c.world.Host(h.name), Clock: h.clock, Network: c.net.Host(h.ip)})
	if err != nil {
		c.t.Fatalf("%s: %v", h.name, err)
	}
	if c.voterRound > 0 {
		a.lead.voterRound = c.voterRound
	}
	// A restart binds the same ports: the others know this agent by
	// them (Raft's configuration, gossip, the leader's API address).
	raftAddr := a.node.Addr()
	if raftAddr == "" { // a client: no Raft listener
		raftAddr = h.ip + ":0"
	}
	h.cfgDoc = strings.NewReplacer(
		"api_addr: "+h.ip+":0", "api_addr: "+a.APIAddr(),
		"raft_addr: "+h.ip+":0", "raft_addr: "+raftAddr,
		"gossip_addr: "+h.ip+":0", "gossip_addr: "+a.mesh.LocalAddr(),
	).Replace(h.cfgDoc)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	h.mu.Lock()
	h.agent, h.cancel, h.done = a, cancel, done
	h.mu.Unlock()
	c.t.Cleanup(func() { c.stop(h) })
	if !c.noWatchdog {
		c.startWatchdog(h, a, cfg)
	}
}

// startWatchdog runs h's fence watchdog beside its agent a, as gpagent
// agent starts one: it outlives a's stop (a stopped or dead agent) and
// kills, through the simulated driver, the primaries whose lease ran out
// unfenced. It ends with the test, or by itself as a real one does.
func (c *simCluster) startWatchdog(h *simHost, a *Agent, cfg *Config) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := watchdog.Run(ctx, watchdog.Config{
			DataDir:   cfg.DataDir,
			Lease:     cfg.Lease,
			Grace:     cfg.WatchdogGrace(),
			LiveGrace: cfg.WatchdogLiveGrace(),
			BootID:    watchdog.BootID(),
			AgentAlive: func() bool {
				h.mu.Lock()
				defer h.mu.Unlock()
				return h.agent == a && h.cancel != nil
			},
			// Through the World, not a host driver: a driver belongs to
			// one agent run (World.Host), and the watchdog outlives it.
			Running: func(s topology.Segment) bool { return c.world.State(s.Address, s.Port).Running },
			Kill: func(_ context.Context, s topology.Segment) error {
				c.world.Crash(s.Address, s.Port)
				return nil
			},
			Log: c.log.With("watchdog", h.name),
		})
		if err != nil {
			c.t.Errorf("watchdog of %s: %v", h.name, err)
		}
	}()
	c.t.Cleanup(func() {
		cancel()
		<-done
	})
}

// stop stops h's agent (its instances go on running, as a real agent's
// postmasters do).
func (c *simCluster) stop(h *simHost) {
	h.mu.Lock()
	cancel, done := h.cancel, h.done
	h.cancel, h.done = nil, nil
	h.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			c.t.Errorf("agent %s: %v", h.name, err)
		}
	case <-time.After(simWait):
		c.t.Errorf("agent %s did not stop within %s", h.name, simWait)
	}
}

func (c *simCluster) agent(h *simHost) *Agent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.agent
}

func (c *simCluster) host(name string) *simHost {
	for _, h := range c.hosts {
		if h.name == name {
			return h
		}
	}
	c.t.Fatalf("no host %s", name)
	return nil
}

// running returns the hosts whose agent runs.
func (c *simCluster) running() []*simHost {
	var out []*simHost
	for _, h := range c.hosts {
		h.mu.Lock()
		if h.cancel != nil {
			out = append(out, h)
		}
		h.mu.Unlock()
	}
	return out
}

// client talks to the API of the first running agent that is not cut
// off: as an operator would, through any agent.
func (c *simCluster) client() *api.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range c.running() {
		if !c.isolated[h.ip] {
			return api.NewClient(c.agent(h).APIAddr()).WithToken(c.token)
		}
	}
	c.t.Fatal("no agent runs")
	return nil
}

// leader waits for a Raft leader among the running agents and returns it.
func (c *simCluster) waitLeader() *simHost {
	c.t.Helper()
	var lead *simHost
	c.waitUntil("a Raft leader past its barrier", func() (bool, string) {
		for _, h := range c.running() {
			a := c.agent(h)
			if a.node.IsLeader() && a.lead.ready.Load() {
				lead = h
				return true, h.name
			}
		}
		return false, "none"
	})
	return lead
}

// waitUntil polls cond until it holds or simWait passes, then fails with
// what cond last said.
func (c *simCluster) waitUntil(what string, cond func() (bool, string)) {
	c.t.Helper()
	deadline := time.Now().Add(simWait)
	var last string
	for {
		var ok bool
		ok, last = cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: not within %s; last seen: %s", what, simWait, last)
		}
		<-time.After(20 * time.Millisecond)
	}
}

// state is the leader's committed topology, through the API.
func (c *simCluster) state() *api.State {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), simWait)
	defer cancel()
	s, err := c.client().State(ctx)
	if err != nil {
		c.t.Fatalf("state: %v", err)
	}
	return s
}

// initCluster creates contents mirrored segments over the hosts (spread
// mirrors: each on another host than its primary) and waits until every
// pair is up and in sync.
func (c *simCluster) initCluster(perHost int) {
	c.t.Helper()
	spec := topology.Spec{
		SegPrefix:   "gpseg",
		Coordinator: topology.CoordinatorSpec{Hostname: c.hosts[0].name, Address: c.hosts[0].ip, Port: 5000, DataDir: "/sim/coordinator"},
		Primary:     topology.PortDirs{PortBase: 6000},
		Mirror:      &topology.MirrorSpec{PortDirs: topology.PortDirs{PortBase: 7000}, Placement: "spread"},
	}
	for _, h := range c.hosts {
		spec.SegmentHosts = append(spec.SegmentHosts, topology.Host{Hostname: h.name, Address: h.ip})
	}
	for range perHost {
		spec.Primary.DataDirs = append(spec.Primary.DataDirs, "/sim/primary")
		spec.Mirror.DataDirs = append(spec.Mirror.DataDirs, "/sim/mirror")
	}
	ctx, cancel := context.WithTimeout(context.Background(), simWait)
	defer cancel()
	if _, err := c.client().Init(ctx, api.InitRequest{Spec: spec}); err != nil {
		c.t.Fatalf("init: %v", err)
	}
	c.waitInSync("after init")
}

// waitInSync waits until every segment is up in its preferred role and
// every pair is in sync.
func (c *simCluster) waitInSync(when string) {
	c.t.Helper()
	c.waitUntil("every pair up and in sync "+when, func() (bool, string) {
		s, err := c.client().State(context.Background())
		if err != nil {
			return false, err.Error()
		}
		if len(s.Segments) == 0 {
			return false, "no segments"
		}
		for _, seg := range s.Segments {
			if seg.Content >= 0 && (seg.Status != topology.StatusUp || seg.Mode != topology.ModeSynced) {
				return false, seg.String()
			}
		}
		return true, ""
	})
}

// pair returns a content's acting primary and its mirror.
func simPair(t *testing.T, s *api.State, content int) (p, m topology.Segment) {
	t.Helper()
	var pok, mok bool
	for _, seg := range s.Segments {
		if seg.Content != content {
			continue
		}
		switch seg.Role {
		case topology.RolePrimary:
			p, pok = seg, true
		case topology.RoleMirror:
			m, mok = seg, true
		}
	}
	if !pok || !mok {
		t.Fatalf("content %d has no primary and mirror: %v", content, s.Segments)
	}
	return p, m
}

func addrOf(s topology.Segment) string { return net.JoinHostPort(s.Address, fmt.Sprint(s.Port)) }
