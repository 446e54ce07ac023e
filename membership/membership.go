// Package membership tells an agent which other agents are alive, what they
// advertise (API and Raft addresses, version) and what they last reported
// about their PostgreSQL instances. It runs hashicorp/memberlist (SWIM
// gossip) with a LAN profile tuned to find a lost host within seconds (see
// DefaultDeadAfter).
//
// Everything here is a hint. Statuses are this node's view and may differ
// from another node's for a few gossip rounds; events are dropped when the
// consumer is slow. Decisions belong to the Raft leader's reconcile loop,
// which reads Members periodically and takes an event only as a reason to
// reconcile sooner.
package membership

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// MaxNameLen bounds a node name: it travels in every health record, which
// must fit a UDP packet with its payload.
const MaxNameLen = 128

// ErrShutdown is returned by calls made after Shutdown.
var ErrShutdown = errors.New("membership: shut down")

// Status is a member's state as this node sees it.
type Status string

const (
	StatusAlive   Status = "alive"
	StatusSuspect Status = "suspect" // missed its probes; dead unless it refutes in time
	StatusDead    Status = "dead"    // declared failed by the failure detector
	StatusLeft    Status = "left"    // left gracefully
)

// Member is one agent as this node sees it.
type Member struct {
	Name   string
	Addr   string // gossip host:port
	Meta   Meta
	Status Status
	// Health is the member's latest health payload (opaque to this
	// package), nil if none seen. For a dead or left member it is the last
	// one it sent.
	Health []byte
	// HealthAt is when this node received Health, on the local clock
	// (with its monotonic reading): compare it with time.Since, never with
	// another host's clock.
	HealthAt time.Time
}

// Config configures New. The failure-detection timings are the Default*
// constants.
type Config struct {
	Name          string // unique node name (the agent name), at most MaxNameLen bytes
	BindAddr      string // e.g. "127.0.0.2"; "" is 0.0.0.0
	BindPort      int    // 0 picks a free port (read it back with LocalAddr)
	AdvertiseAddr string // optional: the address others reach us at, if not BindAddr
	AdvertisePort int    // optional: defaults to the bound port
	Meta          Meta   // Meta.Name defaults to Name and must equal it
	// Keys are the gossip encryption keys (16, 24 or 32 bytes); Keys[0] is
	// the primary. Nil means no encryption. See LoadKeyFile.
	Keys [][]byte
	// Events, if set, receives membership changes. Sends never block: an
	// event is dropped when the channel is full (DroppedEvents counts
	// them), so the consumer must not depend on seeing every one. No event
	// is sent after Shutdown returns; the channel may be closed then.
	Events chan<- Event
	// Logger receives this package's and memberlist's logs; nil is
	// slog.Default().
	Logger *slog.Logger
	// Transport, when set, carries the gossip instead of a UDP and TCP
	// transport bound to BindAddr:BindPort (both then ignored): a test
	// hands in one it can cut. The bound address and port are read back
	// from it (FinalAdvertiseAddr with nothing configured). Shutdown
	// shuts it down.
	Transport memberlist.NodeAwareTransport
	// Alone: this node joins no pool (a client agent that finds the
	// servers by their API addresses): no probes, gossip or push-pull
	// timers run. Others may still dial it; nothing is sent unasked.
	Alone bool
}

// Membership is this node's membership in the gossip cluster.
type Membership struct {
	name     string
	bindAddr string
	bindPort int
	log      *slog.Logger
	events   chan<- Event

	ml    *memberlist.Memberlist
	bcast *memberlist.TransmitLimitedQueue
	// keyring: memberlist's gossip keys, changed in place (keyring.go);
	// nil when gossip is not encrypted.
	keyring *memberlist.Keyring
	// states is set right after memberlist.Create, while callbacks may
	// already run; nil if memberlist's layout is unknown (no suspect, no
	// left).
	states atomic.Pointer[stateReader]

	// lifeMu serialises Leave, UpdateMeta and Shutdown: memberlist panics
	// on a Leave after Shutdown.
	lifeMu sync.Mutex
	down   atomic.Bool // Shutdown was called

	// numAlive feeds the broadcast queue's retransmit limit. It is atomic
	// because memberlist may ask for it with its node lock held.
	numAlive atomic.Int64
	dropped  atomic.Uint64

	mu        sync.Mutex
	quiet     bool // Shutdown returned: send no more events
	metaBytes []byte
	members   map[string]Member // every member ever seen; Health unset
	health    map[string]healthEntry
	healthSeq uint64 // the seq of our latest report
}

// New starts gossiping on the configured address. The node is alone until
// Join.
func New(cfg Config) (_ *Membership, err error) {
	defer func() {
		// New owns cfg.Transport. memberlist shuts down only the transport
		// it made itself, and not on every error; a second Shutdown is
		// harmless.
		if err != nil && cfg.Transport != nil {
			_ = cfg.Transport.Shutdown()
		}
	}()
	if err := cfg.check(); err != nil {
		return nil, err
	}
	_, metaBytes, err := localMeta(cfg.Name, cfg.Meta)
	if err != nil {
		return nil, err
	}
	keyring, err := newKeyring(cfg.Keys)
	if err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	m := &Membership{
		name:      cfg.Name,
		bindAddr:  cfg.BindAddr,
		log:       logger.With("component", "membership"),
		events:    cfg.Events,
		metaBytes: metaBytes,
		members:   map[string]Member{},
		health:    map[string]healthEntry{},
		keyring:   keyring,
		// Our reports' seq starts at the wall clock so that, after a
		// restart, they are newer than the ones the others still hold
		// from our previous run. Only our own seqs are ever compared with
		// each other; applyHealthLocked handles a clock that went back.
		healthSeq: uint64(time.Now().UnixNano()),
	}
	if m.bindAddr == "" {
		m.bindAddr = "0.0.0.0"
	}
	bindPort := cfg.BindPort
	if cfg.Transport != nil {
		ip, port, err := cfg.Transport.FinalAdvertiseAddr("", 0)
		if err != nil {
			return nil, fmt.Errorf("membership: read the gossip transport's address: %w", err)
		}
		m.bindAddr, bindPort = ip.String(), port
	}

	mc := lanProfile()
	mc.Name = cfg.Name
	mc.BindAddr = m.bindAddr
	mc.BindPort = bindPort
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	mc.AdvertisePort = cfg.AdvertisePort
	if mc.AdvertisePort == 0 {
		mc.AdvertisePort = bindPort // memberlist replaces it with the bound port when BindPort is 0 and it binds
	}
	if cfg.Transport != nil {
		mc.Transport = cfg.Transport
	}
	if cfg.Alone {
		// memberlist schedules none of its periodic work at 0 (a
		// thousand idle tickers in gpbench scale's one process of
		// clients were 8 % of its CPU).
		mc.ProbeInterval, mc.GossipInterval, mc.PushPullInterval = 0, 0, 0
	}
	mc.Keyring = keyring
	mc.Delegate = delegate{m}
	mc.Events = eventDelegate{m}
	mc.Logger = newMemberlistLogger(logger)
	m.bcast = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return max(1, int(m.numAlive.Load())) },
		RetransmitMult: mc.RetransmitMult,
	}

	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("membership: start gossip on %s: %w", net.JoinHostPort(m.bindAddr, strconv.Itoa(bindPort)), err)
	}
	m.ml = ml
	m.bindPort = mc.BindPort // the port memberlist bound, when cfg.BindPort was 0
	if r, err := newStateReader(ml); err != nil {
		m.log.Warn("cannot read memberlist's node states: members show alive until declared dead, and a leave shows as a failure", "error", err)
	} else {
		m.states.Store(r)
	}
	m.log.Info("gossip started", "addr", m.LocalAddr(), "encrypted", keyring != nil)
	return m, nil
}

func (c Config) check() error {
	switch {
	case c.Name == "":
		return errors.New("membership: config: name is empty")
	case len(c.Name) > MaxNameLen:
		return fmt.Errorf("membership: config: name is %d bytes, over %d", len(c.Name), MaxNameLen)
	case c.BindPort < 0 || c.BindPort > 65535:
		return fmt.Errorf("membership: config: bind port %d out of range", c.BindPort)
	case c.AdvertisePort < 0 || c.AdvertisePort > 65535:
		return fmt.Errorf("membership: config: advertise port %d out of range", c.AdvertisePort)
	}
	return nil
}

// LocalAddr is the gossip host:port this node is bound to; when bound to
// all interfaces, the address it advertises.
func (m *Membership) LocalAddr() string {
	if ip := net.ParseIP(m.bindAddr); ip != nil && ip.IsUnspecified() {
		if self, ok := m.Member(m.name); ok {
			return self.Addr
		}
	}
	return net.JoinHostPort(m.bindAddr, strconv.Itoa(m.bindPort))
}

// Members is every member this node has seen since New, dead and left ones
// included with their last status, sorted by name, this node included.
func (m *Membership) Members() []Member {
	suspects := m.suspects()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Member, 0, len(m.members))
	for name := range m.members {
		out = append(out, m.viewLocked(name, suspects))
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Member is one member by name, if this node has seen it.
func (m *Membership) Member(name string) (Member, bool) {
	suspects := m.suspects()
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.members[name]; !ok {
		return Member{}, false
	}
	return m.viewLocked(name, suspects), true
}

// suspects reads memberlist's suspect set before m.mu is taken: memberlist
// calls handleNode with its node lock held and handleNode takes m.mu, so
// taking them in the other order could deadlock. The callbacks run under
// that lock, so a member the set calls suspect is alive in m.members unless
// it died in between; viewLocked then keeps dead.
func (m *Membership) suspects() map[string]bool {
	if r := m.states.Load(); r != nil {
		return r.suspects()
	}
	return nil
}

func (m *Membership) viewLocked(name string, suspects map[string]bool) Member {
	mem := m.snapshotLocked(name)
	if mem.Status == StatusAlive && suspects[name] {
		mem.Status = StatusSuspect
	}
	return mem
}

// snapshotLocked is a member with its health, sharing nothing with our
// state: a caller may keep or modify it.
func (m *Membership) snapshotLocked(name string) Member {
	mem, ok := m.members[name]
	if !ok {
		mem = Member{Name: name} // health can arrive before the member's alive message
	}
	if h, ok := m.health[name]; ok {
		mem.Health = bytes.Clone(h.payload)
		mem.HealthAt = h.at
	}
	return mem
}

func (m *Membership) countAliveLocked() {
	var n int64
	for _, mem := range m.members {
		if mem.Status == StatusAlive {
			n++
		}
	}
	m.numAlive.Store(n)
}

// UpdateMeta changes the metadata this node advertises and waits (up to 2
// s) for the change to go out; if it does not, push-pull spreads it later.
func (m *Membership) UpdateMeta(meta Meta) error {
	_, b, err := localMeta(m.name, meta)
	if err != nil {
		return err
	}
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.down.Load() {
		return ErrShutdown
	}
	m.mu.Lock()
	m.metaBytes = b
	m.mu.Unlock()
	if err := m.ml.UpdateNode(metaUpdateTimeout); err != nil {
		m.log.Warn("metadata update not yet acknowledged by gossip; push-pull will spread it", "error", err)
	}
	return nil
}

// Leave tells the others this node is leaving, so they mark it left rather
// than dead, and waits up to timeout (0 is forever) for the message to go
// out. Gossip keeps running until Shutdown.
func (m *Membership) Leave(timeout time.Duration) error {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.down.Load() {
		return ErrShutdown
	}
	if err := m.ml.Leave(timeout); err != nil {
		return fmt.Errorf("membership: leave: %w", err)
	}
	m.log.Info("left the cluster")
	return nil
}

// Shutdown stops gossip without a leave message: the others will declare
// this node dead (call Leave first for a graceful exit). It is safe to call
// more than once.
func (m *Membership) Shutdown() error {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.down.Swap(true) {
		return nil
	}
	err := m.ml.Shutdown()
	m.mu.Lock()
	m.quiet = true
	m.mu.Unlock()
	if err != nil {
		return fmt.Errorf("membership: shutdown: %w", err)
	}
	return nil
}
