package simnet

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"
)

// HostNet is what the agent on one loopback IP uses as its network (it
// implements agent.Network): listeners and gossip bound to that IP, and
// dials from it, all subject to the Net's faults.
type HostNet struct {
	n    *Net
	ip   net.IP
	kind Kind // of the listeners Listen opens
}

// IP is the host's address.
func (h *HostNet) IP() string { return h.ip.String() }

// Raft is this host's network with Listen opening Raft listeners, for an
// agent that takes its Raft listener from a network of its own.
func (h *HostNet) Raft() *HostNet { return &HostNet{n: h.n, ip: h.ip, kind: Raft} }

// API is this host's network with Listen opening API listeners (what the
// host's own Listen does).
func (h *HostNet) API() *HostNet { return &HostNet{n: h.n, ip: h.ip, kind: API} }

// bindHost is the host of addr, which must be the host's IP or empty or
// unspecified (taken as the host's IP: two agents in one process must not
// share a wildcard bind).
func (h *HostNet) bindHost(addr string) (host string, port int, err error) {
	hs, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("simnet: %w", err)
	}
	if port, err = strconv.Atoi(ps); err != nil {
		return "", 0, fmt.Errorf("simnet: port of %s: %w", addr, err)
	}
	if hs == "" {
		return h.IP(), port, nil
	}
	ip := net.ParseIP(hs)
	switch {
	case ip != nil && ip.IsUnspecified():
		return h.IP(), port, nil
	case ip == nil || !ip.Equal(h.ip):
		return "", 0, fmt.Errorf("simnet: host %s cannot bind %s", h.ip, addr)
	}
	return h.IP(), port, nil
}

// Listen binds a TCP listener on addr (port 0 picks one) on the host's IP.
// Its connections are of the kind Listen was called through (API unless
// Raft(), or Mark later); one whose caller is cut off is closed as it is
// accepted.
func (h *HostNet) Listen(addr string) (net.Listener, error) {
	host, port, err := h.bindHost(addr)
	if err != nil {
		return nil, err
	}
	inner, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("simnet: %w", err)
	}
	ep := &endpoint{kind: h.kind}
	key := inner.Addr().String()
	h.n.mu.Lock()
	h.n.endpoints[key] = ep
	h.n.mu.Unlock()
	return &listener{Listener: inner, h: h, ep: ep, key: key}, nil
}

// DialContext opens a TCP connection from the host's IP to addr, so that
// the far end sees who called. Across a cut it fails at once with ErrCut.
// The kind is the target listener's; API for an address simnet did not
// open.
func (h *HostNet) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	target, err := net.ResolveTCPAddr(network, addr)
	if err != nil {
		return nil, fmt.Errorf("simnet: %w", err)
	}
	h.n.mu.Lock()
	ep := h.n.endpoints[target.String()]
	h.n.mu.Unlock()
	return h.dial(ctx, network, target, ep, API)
}

// dial connects to target; ep, when set, gives the conn's kind from then
// on, else it is kind.
func (h *HostNet) dial(ctx context.Context, network string, target *net.TCPAddr, ep *endpoint, kind Kind) (net.Conn, error) {
	local := &net.TCPAddr{IP: h.ip}
	remote := target.IP.String()
	refused := &net.OpError{Op: "dial", Net: network, Source: local, Addr: target, Err: ErrCut}
	if h.n.cut(h.IP(), remote, ep, kind) {
		return nil, refused
	}
	d := net.Dialer{LocalAddr: local}
	inner, err := d.DialContext(ctx, network, target.String())
	if err != nil {
		return nil, err
	}
	c := &conn{Conn: inner, n: h.n, local: h.IP(), remote: remote, ep: ep, kind: kind}
	// A cut made while the dial was under way closed the connections it
	// knew of, not this one: check again as it is tracked.
	if !h.n.track(c) {
		_ = inner.Close()
		return nil, refused
	}
	return c, nil
}

// dialTimeout is dial with a timeout (0 is none), for memberlist.
func (h *HostNet) dialTimeout(addr string, timeout time.Duration, kind Kind) (net.Conn, error) {
	target, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("simnet: %w", err)
	}
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return h.dial(ctx, "tcp", target, nil, kind)
}

// kindOf is ep's kind, or kind without an endpoint. Call it with the
// Net's lock held when ep may be set: Mark changes ep.kind under it.
func kindOf(ep *endpoint, kind Kind) Kind {
	if ep != nil {
		return ep.kind
	}
	return kind
}

// canon is ip in the form Host and the fault tables use.
func canon(ip string) string {
	parsed := net.ParseIP(ip)
	if parsed == nil {
		panic(fmt.Sprintf("simnet: %q is not an IP", ip))
	}
	return parsed.String()
}

// ListenRaft is Raft().Listen: the agent's Raft transport listens here.
func (h *HostNet) ListenRaft(addr string) (net.Listener, error) { return h.Raft().Listen(addr) }
