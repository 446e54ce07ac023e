package agent

import (
	"context"
	"net"

	"github.com/hashicorp/memberlist"
)

// Network is how an agent reaches the others: the listeners it serves its
// API and Raft on, the dialer of its outgoing calls and its gossip
// transport. The real one is plain TCP and UDP; an in-process test hands
// each agent one it can cut from the others (simnet).
type Network interface {
	// Listen binds a TCP listener on addr for the API.
	Listen(addr string) (net.Listener, error)
	// ListenRaft binds the Raft transport's listener: a test may cut
	// Raft traffic alone.
	ListenRaft(addr string) (net.Listener, error)
	// DialContext opens a TCP connection to addr (API calls to other
	// agents, Raft).
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	// GossipTransport binds memberlist's packet and stream transport on
	// addr:port (port 0 picks one).
	GossipTransport(addr string, port int) (memberlist.NodeAwareTransport, error)
}

// tcpNetwork is the real network.
type tcpNetwork struct{}

func (tcpNetwork) Listen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

func (tcpNetwork) ListenRaft(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

func (tcpNetwork) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func (tcpNetwork) GossipTransport(addr string, port int) (memberlist.NodeAwareTransport, error) {
	return memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{addr}, BindPort: port})
}
