// Package simnet is a network for in-process agent tests that a test can
// cut. Each agent runs on its own loopback address 127.0.0.x (all of
// 127.0.0.0/8 is local on Linux, no root needed) and takes its listeners,
// dialer and gossip transport from its Host. Faults act on pairs of
// hosts and on kinds of traffic (Raft, API, Gossip): a cut makes new dials
// fail at once, drops gossip packets both ways and closes the established
// TCP connections across it; Heal restores everything.
//
// The kind of a TCP connection is the kind of the listener it reaches:
// Listen opens API listeners; h.Raft().Listen opens a Raft one, or
// n.Mark(addr, simnet.Raft) re-marks one opened through plain Listen (the
// agent's Network has a single Listen). Gossip is what GossipTransport
// carries. A sketch:
//
//	n := simnet.New()
//	h := n.Host("127.0.0.2")                   // an agent.Network
//	ln, _ := h.Raft().Listen("127.0.0.2:0")    // consensus.Config.Listener
//	tr, _ := h.GossipTransport("127.0.0.2", 0) // membership.Config.Transport
//	...
//	n.Only(simnet.Raft).Partition([]string{"127.0.0.2"}, []string{"127.0.0.3", "127.0.0.4"})
//	n.Cut("127.0.0.3", "127.0.0.4") // a bridge through 127.0.0.2
//	n.Heal()
//
// Everything is real TCP and UDP on loopback; simnet only refuses,
// drops and closes. The test process itself (127.0.0.1, not a Host) is
// never part of a fault, so it can always ask any agent what it sees, the
// way netns keeps the root namespace outside every partition.
package simnet

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
)

// Kind is a set of traffic kinds; a fault applies to the kinds it names.
type Kind uint8

const (
	// Raft is the consensus transport (the listener marked Raft).
	Raft Kind = 1 << iota
	// API is every other TCP listener: the agents' HTTP API.
	API
	// Gossip is memberlist's packets and streams (GossipTransport).
	Gossip
	// All is every kind.
	All = Raft | API | Gossip
)

func (k Kind) String() string {
	var parts []string
	for _, kn := range []struct {
		k    Kind
		name string
	}{{Raft, "raft"}, {API, "api"}, {Gossip, "gossip"}} {
		if k&kn.k != 0 {
			parts = append(parts, kn.name)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "|")
}

// ErrCut is the error of a dial across a cut (wrapped in a *net.OpError).
var ErrCut = errors.New("simnet: link cut")

// Net is one simulated network: its hosts, its faults, and every
// connection it carries, so that a cut can close them.
type Net struct {
	log *slog.Logger

	mu        sync.Mutex
	hosts     map[string]*HostNet
	links     map[link]Kind        // kinds cut between two hosts
	isolated  map[string]Kind      // kinds cut between a host and every other host
	endpoints map[string]*endpoint // listeners by "ip:port"
	conns     map[*conn]struct{}
}

// link is an unordered pair of IPs: cuts are symmetric.
type link struct{ a, b string }

func linkOf(a, b string) link {
	if a > b {
		a, b = b, a
	}
	return link{a, b}
}

// endpoint is a listener's kind; a conn to it reads the kind from here, so
// that Mark also applies to connections already open.
type endpoint struct{ kind Kind }

// New is an empty network with no faults. It logs (refused and closed
// connections, at debug) to slog.Default().
func New() *Net {
	return &Net{
		log:       slog.Default().With("component", "simnet"),
		hosts:     map[string]*HostNet{},
		links:     map[link]Kind{},
		isolated:  map[string]Kind{},
		endpoints: map[string]*endpoint{},
		conns:     map[*conn]struct{}{},
	}
}

// Host is the network of the agent on ip (127.0.0.2, 127.0.0.3, ...), the
// same value for the same ip. Its Listen marks listeners API; Mark or
// Raft() marks the Raft one. It panics on a string that is not an IP: that
// is a mistake in the test.
func (n *Net) Host(ip string) *HostNet {
	parsed := net.ParseIP(ip)
	if parsed == nil {
		panic(fmt.Sprintf("simnet: host %q is not an IP", ip))
	}
	ip = parsed.String()
	n.mu.Lock()
	defer n.mu.Unlock()
	h, ok := n.hosts[ip]
	if !ok {
		h = &HostNet{n: n, ip: parsed, kind: API}
		n.hosts[ip] = h
	}
	return h
}

// Mark sets the kind of the listener bound at addr ("ip:port", as its
// Addr says), for a listener the agent opened through plain Listen:
// n.Mark(raftAddr, simnet.Raft). Connections already open to it change
// kind too.
func (n *Net) Mark(addr string, k Kind) error {
	n.mu.Lock()
	ep, ok := n.endpoints[addr]
	if ok {
		ep.kind = k
	}
	n.mu.Unlock()
	if !ok {
		return fmt.Errorf("simnet: no listener at %s", addr)
	}
	n.closeCut()
	return nil
}

// cutLocked says whether kind k is cut between ips a and b.
func (n *Net) cutLocked(a, b string, k Kind) bool {
	if a == b {
		return false
	}
	if n.links[linkOf(a, b)]&k != 0 {
		return true
	}
	_, aHost := n.hosts[a]
	_, bHost := n.hosts[b]
	return aHost && bHost && (n.isolated[a]|n.isolated[b])&k != 0
}

// cut says whether the traffic of a conn to ep (of kind, if ep is nil)
// is cut between a and b; ep's kind is read under the lock Mark takes.
func (n *Net) cut(a, b string, ep *endpoint, kind Kind) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cutLocked(a, b, kindOf(ep, kind))
}

// closeCut closes every connection a fault now cuts, on both ends.
func (n *Net) closeCut() {
	var doomed []*conn
	var kinds []Kind
	n.mu.Lock()
	for c := range n.conns {
		if k := c.kindLocked(); n.cutLocked(c.local, c.remote, k) {
			doomed, kinds = append(doomed, c), append(kinds, k)
		}
	}
	n.mu.Unlock()
	for i, c := range doomed {
		n.log.Debug("closing a connection across a cut", "local", c.LocalAddr(), "remote", c.RemoteAddr(), "kind", kinds[i])
		_ = c.Close()
	}
}
