package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/consensus"
	"github.com/gpagent/gpagent/membership"
	"github.com/gpagent/gpagent/topology"
)

// clusterNode is what an agent uses of the cluster's replicated state.
// A server (the default) is a Raft member: *consensus.Node. A client
// (server: false) holds no log: clientNode, a copy of the committed
// topology kept fresh by a blocking query to the servers.
type clusterNode interface {
	// Topology is the committed topology as this agent has it: never nil,
	// never modified; it may lag the leader's.
	Topology() *topology.Topology
	// Changes is signalled (coalescing, one reader: the executor) after
	// each change of Topology.
	Changes() <-chan struct{}
	// Watch returns a channel closed at the next change (any number of
	// readers: the blocking queries this server answers).
	Watch() <-chan struct{}
	// ViewSince is the version from which host's view of Topology has
	// been what it is (consensus.Node.ViewSince); a client, which never
	// answers for others, gives its view's version.
	ViewSince(host string) uint64
	// RolesSince is the version from which host's roles in Topology
	// have been what they are (consensus.Node.RolesSince): the version a
	// lease acknowledgement names. A client gives its view's version.
	RolesSince(host string) uint64
	IsLeader() bool
	Leader() (name, addr string)
	LeaderChanges() <-chan bool
	WaitLeader(ctx context.Context) error
	VerifyLeader() error
	Barrier(ctx context.Context) error
	Apply(ctx context.Context, cmd topology.Command) (*topology.Topology, error)
	SetMinVersion(fn func() string)
	Servers() ([]consensus.Server, error)
	HasState() bool
	BootstrapCluster(voters []consensus.Server) error
	AddVoter(ctx context.Context, id, addr string) error
	AddNonvoter(ctx context.Context, id, addr string) error
	RemoveServer(ctx context.Context, id string) error
	DemoteVoter(ctx context.Context, id string) error
	// Addr and ID are the Raft address and server id gossip advertises:
	// "" for a client, which the leader then never adds to Raft.
	Addr() string
	ID() string
	Close() error
}

var _ clusterNode = (*consensus.Node)(nil)

// errClient: a client agent holds no Raft log and is never the leader.
var errClient = fmt.Errorf("a client agent (server: false) holds no Raft log: %w", consensus.ErrNotLeader)

// clientNode is a client agent's view of the committed topology, fed by
// the blocking query GET /v1/topology to the leader (or, with none known,
// any server). It never applies an entry itself: every change goes to the
// leader over HTTP (forward.go), as the reports do. The view is its
// host's (topology.HostViews: the contents with an instance here, every
// config version): what the executor, the fence and the health endpoints
// read. Reads of the whole cluster (state, history, conninfo) are
// forwarded to the leader; with no leader known, state answers from this
// view and says it is stale.
//
// The lease rule keeps its meaning: the executor's reports are made on
// this view's version, and the lease renews only from the leader's
// acknowledgement of a report made on a version the view has reached
// (topology.PendingRenewals), as on a Raft follower.
type clientNode struct {
	mu      sync.Mutex
	cur     *topology.Topology
	leader  string
	servers []consensus.Server
	// serverAPIs: each server's API address, by agent name, as the
	// servers last named them (a client without gossip finds them so).
	serverAPIs map[string]string
	watch      chan struct{}
	changes    chan struct{}
	existing   bool
	received   bool
	// sameFrom is the lowest config version from which the view has been
	// what it is now but for the version (key: the view so encoded): a
	// commit that touched only other hosts changes nothing here.
	sameFrom uint64
	key      []byte
	// need: the version of the leader's last acknowledgement, which the
	// view must reach for the lease to renew (needVersion).
	need      uint64
	kick      chan struct{}
	closeOnce sync.Once
	closed    chan struct{}
}

func newClientNode(existing bool) *clientNode {
	return &clientNode{cur: &topology.Topology{}, watch: make(chan struct{}), changes: make(chan struct{}, 1),
		existing: existing, kick: make(chan struct{}, 1), closed: make(chan struct{})}
}

func (c *clientNode) Topology() *topology.Topology {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

func (c *clientNode) Changes() <-chan struct{} { return c.changes }

func (c *clientNode) Watch() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.watch
}

func (c *clientNode) ViewSince(string) uint64  { return c.Topology().ConfigVersion }
func (c *clientNode) RolesSince(string) uint64 { return c.Topology().ConfigVersion }

func (c *clientNode) IsLeader() bool { return false }

// Leader is the leader the servers last named; its Raft address is not
// needed by a client ("").
func (c *clientNode) Leader() (string, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leader, ""
}

// LeaderChanges never delivers: a client never leads.
func (c *clientNode) LeaderChanges() <-chan bool { return nil }

func (c *clientNode) WaitLeader(ctx context.Context) error { return errClient }
func (c *clientNode) VerifyLeader() error                  { return errClient }
func (c *clientNode) Barrier(context.Context) error        { return errClient }
func (c *clientNode) Apply(context.Context, topology.Command) (*topology.Topology, error) {
	return nil, errClient
}
func (c *clientNode) SetMinVersion(func() string) {}

// Servers is the Raft configuration the servers last named.
func (c *clientNode) Servers() ([]consensus.Server, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.servers, nil
}

// HasState: the agent belongs to a cluster (it has heard from one, or
// had saved gossip peers at start): it never takes part in a bootstrap.
func (c *clientNode) HasState() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.existing || c.received
}

func (c *clientNode) BootstrapCluster([]consensus.Server) error         { return errClient }
func (c *clientNode) AddVoter(context.Context, string, string) error    { return errClient }
func (c *clientNode) AddNonvoter(context.Context, string, string) error { return errClient }
func (c *clientNode) RemoveServer(context.Context, string) error        { return errClient }
func (c *clientNode) DemoteVoter(context.Context, string) error         { return errClient }
func (c *clientNode) Addr() string                                      { return "" }
func (c *clientNode) ID() string                                        { return "" }

func (c *clientNode) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

// loaded reports whether any server has answered yet.
func (c *clientNode) loaded() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.received
}

// update installs a server's answer: a topology older than the one held
// (a lagging follower answered) is not taken, the leader's name is. A
// view that differs from the one held only in its config version (the
// commit touched other hosts) replaces it without waking the executor:
// there is nothing new to act on, and a thousand executors woken by
// every commit is the burst this design avoids.
func (c *clientNode) update(v *api.TopologyView) {
	c.mu.Lock()
	c.leader = v.Leader
	if len(v.Servers) > 0 {
		c.servers = c.servers[:0:0]
		c.serverAPIs = map[string]string{}
		for _, s := range v.Servers {
			c.servers = append(c.servers, consensus.Server{ID: s.ID, Name: s.Name, Address: s.Address, Voter: s.Voter, Leader: s.Leader})
			if s.API != "" {
				c.serverAPIs[s.Name] = s.API
			}
		}
	}
	newer := v.Topology != nil && (!c.received || v.Topology.ConfigVersion > c.cur.ConfigVersion)
	c.received = true
	changed := false
	if newer {
		key := viewKey(v.Topology)
		if key == nil || !bytes.Equal(key, c.key) {
			c.sameFrom, c.key, changed = v.Topology.ConfigVersion, key, true
		}
		c.cur = v.Topology
		close(c.watch)
		c.watch = make(chan struct{})
	}
	c.mu.Unlock()
	if changed {
		select {
		case c.changes <- struct{}{}:
		default:
		}
	}
}

// viewKey is the view encoded without its config version (nil if it
// cannot be encoded: then every version counts as a change).
func viewKey(t *topology.Topology) []byte {
	k := *t
	k.ConfigVersion = 0
	b, err := json.Marshal(&k)
	if err != nil {
		return nil
	}
	return b
}

// equivalent returns the latest config version whose view of this host
// is the one it had at version v: a report made on v was made on that
// version too (the topology it acted on is the same), so the leader's
// acknowledgement at that version renews the lease. Without it, while
// the leader commits faster than a probe round (init: every instance's
// progress is an entry), every report lagged a version or more and the
// lease ran out for changes on other hosts.
func (c *clientNode) equivalent(v uint64) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v >= c.sameFrom && v <= c.cur.ConfigVersion {
		return c.cur.ConfigVersion
	}
	return v
}

// needVersion records that the leader acknowledged a report at version v:
// the lease renews only once the view reaches it. A server holds a query
// until the host's view changes, and the version it names for an
// unchanged view may be older than the leader's (a follower answered,
// or saw other versions than the leader did): then the query under way
// is cut short and asked again with Need, which any server holding v
// answers at once. Without it the client waited out the query (20 s)
// with its lease run out (gpbench scale, 100 agents: 433 lease fences).
func (c *clientNode) needVersion(v uint64) {
	c.mu.Lock()
	behind := v > c.cur.ConfigVersion && v > c.need
	if behind {
		c.need = v
	}
	c.mu.Unlock()
	if behind {
		c.requery()
	}
}

// needed is the version the next query must reach, 0 if the view holds it.
func (c *clientNode) needed() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.need > c.cur.ConfigVersion {
		return c.need
	}
	return 0
}

// serverAPI is the API address the servers' last answer gave for the
// server named name.
func (c *clientNode) serverAPI(name string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	addr, ok := c.serverAPIs[name]
	return addr, ok && addr != ""
}

// knownServerAPIs are the servers' API addresses from their last answer.
func (c *clientNode) knownServerAPIs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.serverAPIs))
	for _, addr := range c.serverAPIs {
		out = append(out, addr)
	}
	slices.Sort(out)
	return out
}

// forgetLeader drops the leader's name after a failed query or report:
// the next query asks another server who leads now.
func (c *clientNode) forgetLeader(name string) {
	c.mu.Lock()
	if c.leader == name {
		c.leader = ""
	}
	c.mu.Unlock()
}

// leaderForgotten reports whether name, the leader a query was sent to,
// is no longer the one this client knows (forgetLeader, or a newer
// answer named another).
func (c *clientNode) leaderForgotten(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leader != name
}

// requery cuts the blocking query under way short, so the next one asks
// afresh (a report to the leader failed: it may no longer lead).
func (c *clientNode) requery() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// topologyWait is how long a server holds a blocking query with nothing
// new: Consul's default is 5 minutes; a shorter one bounds how long a
// client keeps asking a server that no longer answers for the cluster.
const topologyWait = 20 * time.Second

// runClientWatch keeps a client's topology fresh: one blocking query at a
// time, to the leader it knows (the freshest topology), else to a server
// found by gossip (one advertising a Raft address), which names the
// leader in its answer.
func (a *Agent) runClientWatch(ctx context.Context, c *clientNode) {
	var next int // rotates over the servers while no leader is known
	fails := 0
	for ctx.Err() == nil {
		leader, _ := c.Leader()
		addr, ok := "", false
		if leader != "" {
			addr, ok = a.memberAPI(leader)
		}
		if !ok {
			leader = ""
			servers := a.serverAPIs()
			if len(servers) > 0 {
				addr, ok = servers[next%len(servers)], true
				next++
			}
		}
		if !ok {
			if !sleepCtx(ctx, a.clock, 200*time.Millisecond) {
				return
			}
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, topologyWait+10*time.Second)
		var kicked atomic.Bool
		go func() {
			select {
			case <-c.kick:
				kicked.Store(true)
				cancel()
			case <-qctx.Done():
			}
		}()
		v, err := a.peerClient(addr).Topology(qctx, api.TopologyQuery{Index: c.Topology().ConfigVersion, Wait: topologyWait, Leader: leader, Host: a.cfg.Name, Need: c.needed()})
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if kicked.Load() && !c.leaderForgotten(leader) {
				// Cut short to ask again with a version now needed
				// (needVersion): the server is as good as before, and
				// forgetting the leader here sent the next query to
				// any server.
				continue
			}
			a.log.Debug("topology query failed", "server", addr, "err", err)
			if leader != "" {
				c.forgetLeader(leader)
			}
			fails++
			// Back off a little after repeated failures, not after one:
			// a leader change should cost one round trip.
			if fails > 1 && !sleepCtx(ctx, a.clock, min(time.Duration(fails)*100*time.Millisecond, time.Second)) {
				return
			}
			continue
		}
		fails = 0
		if v.Topology != nil {
			a.log.Debug("view answered", "version", v.Topology.ConfigVersion, "held", c.Topology().ConfigVersion)
		}
		c.update(v)
	}
}

func sleepCtx(ctx context.Context, clock Clock, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-clock.After(d):
		return true
	}
}

// serverAPIs are the API addresses of the servers a client may ask: the
// alive members that hold the Raft log (their gossip advertises a Raft
// address), the servers named in the last answer, and the servers
// configured (servers: a client without gossip starts from them).
func (a *Agent) serverAPIs() []string {
	var out []string
	for _, m := range a.mesh.Members() {
		if m.Status == membership.StatusAlive && m.Meta.RaftAddr != "" && m.Meta.APIAddr != "" && m.Name != a.cfg.Name {
			out = append(out, m.Meta.APIAddr)
		}
	}
	if c, ok := a.node.(*clientNode); ok {
		out = append(out, c.knownServerAPIs()...)
	}
	out = append(out, a.cfg.Servers...)
	slices.Sort(out)
	return slices.Compact(out)
}

// maxTopologyWait bounds the wait a caller may ask of GET /v1/topology.
const maxTopologyWait = time.Minute

// getTopology answers a client's blocking query: at once if this
// server's topology is newer than ?index=, or if the leader it knows is
// not ?leader= (the client reports to the wrong agent); otherwise at the
// first change, at a leader change, or after ?wait=. With ?host= the
// answer is that host's view (topology.HostViews).
func (a *Agent) getTopology(w http.ResponseWriter, r *http.Request) {
	b, err := a.topologyAnswer(r)
	if err != nil {
		e := toAPIError(err)
		if r.Context().Err() != nil {
			return // the client went away
		}
		writeError(w, e)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

func (a *Agent) topologyAnswer(r *http.Request) ([]byte, error) {
	if a.cfg.Client {
		return nil, api.Errorf(api.CodeNotLeader, "agent %s is a client (server: false): ask a server", a.cfg.Name)
	}
	q := r.URL.Query()
	var index uint64
	if s := q.Get("index"); s != "" {
		var err error
		if index, err = strconv.ParseUint(s, 10, 64); err != nil {
			return nil, api.Errorf(api.CodeInvalid, "index: %q is not a config version", s)
		}
	}
	wait := topologyWait
	if s := q.Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return nil, api.Errorf(api.CodeInvalid, "wait: %q is not a duration", s)
		}
		wait = min(d, maxTopologyWait)
	}
	var need uint64
	if s := q.Get("need"); s != "" {
		var err error
		if need, err = strconv.ParseUint(s, 10, 64); err != nil {
			return nil, api.Errorf(api.CodeInvalid, "need: %q is not a config version", s)
		}
	}
	hint := q.Get("leader")
	host := q.Get("host")
	timer := time.NewTimer(wait)
	defer timer.Stop()
	// Leadership is not signalled to followers: look at it now and then.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		ch := a.node.Watch()
		t := a.node.Topology()
		leader, _ := a.node.Leader()
		if a.viewNewerThan(t, host, index) || (need > index && t.ConfigVersion >= need) || leader != hint {
			return a.topologyView(t, leader, host)
		}
		select {
		case <-r.Context().Done():
			return nil, r.Context().Err()
		case <-timer.C:
			return a.topologyView(t, leader, host)
		case <-ch:
		case <-tick.C:
		}
	}
}

// topologyView returns the encoded answer for host's view of t
// (topology.HostViews; the whole topology when host is ""): one encoding
// per topology, leader, Raft configuration and host, shared by the
// queries that ask for it, and one index per topology for every host's
// view. A thousand clients woken by one commit must not cost a thousand
// encodings of the whole topology, nor a thousand decodings of it.
//
// Each host's answer is encoded outside the cache's lock, once (the
// first query for it encodes, the others wait for that one only): under
// one lock, a thousand queries woken by a commit queued behind each
// other's encodings, and the last was answered seconds later (gpbench
// scale, 1,000 agents in init: 1,500 queries waiting on the lock, report
// round trips of 1-3 s, every lease run out).
func (a *Agent) topologyView(t *topology.Topology, leader, host string) ([]byte, error) {
	var servers []api.TopologyServer
	if list, err := a.node.Servers(); err == nil {
		for _, s := range list {
			ts := api.TopologyServer{ID: s.ID, Name: s.Name, Address: s.Address, Voter: s.Voter, Leader: s.Leader}
			ts.API, _ = a.memberAPI(s.Name)
			servers = append(servers, ts)
		}
	}
	c := &a.topoCache
	c.mu.Lock()
	g := c.gen
	if g == nil || g.t != t || g.leader != leader || !slices.Equal(g.servers, servers) {
		g = &viewGeneration{t: t, leader: leader, servers: servers, bodies: map[string]*viewBody{}}
		g.views = sync.OnceValue(func() func(string) *topology.Topology { return topology.HostViews(t) })
		c.gen = g
	}
	b, ok := g.bodies[host]
	if !ok {
		b = &viewBody{}
		g.bodies[host] = b
	}
	c.mu.Unlock()
	b.once.Do(func() { b.data, b.err = g.encode(host) })
	return b.data, b.err
}

// encode is host's answer in this generation.
func (g *viewGeneration) encode(host string) ([]byte, error) {
	t := g.t
	var v *topology.Topology
	if host == "" {
		lite := *t
		lite.History = nil // only the leader answers for it
		v = &lite
	} else {
		v = g.views()(host)
		if v == t {
			lite := *t
			lite.History = nil
			v = &lite
		}
	}
	b, err := json.Marshal(&api.TopologyView{Topology: v, Leader: g.leader, Servers: g.servers})
	if err != nil {
		return nil, fmt.Errorf("encode topology view: %w", err)
	}
	return b, nil
}

// topologyCache holds the answers to GET /v1/topology for the latest
// topology, leader and Raft configuration.
type topologyCache struct {
	mu  sync.Mutex
	gen *viewGeneration
}

// viewGeneration is the answers for one topology, leader and servers.
type viewGeneration struct {
	t       *topology.Topology
	leader  string
	servers []api.TopologyServer
	views   func() func(host string) *topology.Topology // built once, on first use
	bodies  map[string]*viewBody                        // by host; under topologyCache.mu
}

// viewBody is one host's encoded answer, encoded once.
type viewBody struct {
	once sync.Once
	data []byte
	err  error
}

// viewNewerThan reports whether a query for host's view at index has
// news in t: the whole topology (host "") is news at every version; a
// host's view only once it differs from the one it had at index (the
// version the client holds). A commit that touches other hosts leaves
// that host's query waiting: otherwise every commit answered every client
// at once, a thousand answers and a thousand new queries per entry while
// the leader commits ten entries a second (init, a rebalance), for views
// that had not changed.
//
// The leader answers from the versions its acknowledgements name
// (leader.ackVersion): a client must hold a version at or past its
// acknowledgement to renew its lease. A follower answers from the
// versions its own log applied (consensus.Node.ViewSince): the same
// entries, so the same versions once it has applied them.
func (a *Agent) viewNewerThan(t *topology.Topology, host string, index uint64) bool {
	if t.ConfigVersion <= index {
		return false
	}
	if host == "" {
		return true
	}
	if a.node.IsLeader() && a.lead != nil {
		return a.lead.ackVersion(host, t) > index
	}
	return min(a.node.ViewSince(host), t.ConfigVersion) > index
}
