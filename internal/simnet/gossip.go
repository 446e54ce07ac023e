package simnet

import (
	"fmt"
	"log"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// gossipTransport is memberlist's own UDP and TCP transport bound to the
// host's IP, with every packet and stream across a Gossip cut dropped or
// closed, at both ends.
type gossipTransport struct {
	*memberlist.NetTransport
	h       *HostNet
	packets chan *memberlist.Packet
	streams chan net.Conn

	// stopping: Shutdown began, discard what still arrives; stopped: the
	// inner transport is down, nothing more arrives.
	stopping, stopped chan struct{}
	once              sync.Once
	wg                sync.WaitGroup
	err               error
}

var _ memberlist.NodeAwareTransport = (*gossipTransport)(nil)

// GossipTransport binds memberlist's transport on the host's IP (addr may
// be the host's IP, empty or unspecified) and port (0 picks one; the
// transport's FinalAdvertiseAddr tells which).
func (h *HostNet) GossipTransport(addr string, port int) (memberlist.NodeAwareTransport, error) {
	host, _, err := h.bindHost(net.JoinHostPort(addr, "0"))
	if err != nil {
		return nil, err
	}
	inner, err := bindGossip(host, port, slog.NewLogLogger(h.n.log.Handler(), slog.LevelWarn))
	if err != nil {
		return nil, fmt.Errorf("simnet: gossip transport on %s:%d: %w", host, port, err)
	}
	t := &gossipTransport{
		NetTransport: inner, h: h,
		packets:  make(chan *memberlist.Packet),
		streams:  make(chan net.Conn),
		stopping: make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	t.wg.Add(2)
	go t.forwardPackets()
	go t.forwardStreams()
	return t, nil
}

// bindGossip binds memberlist's transport. Port 0 takes the TCP port the
// kernel picks for UDP too, which another test may hold on UDP: retry a
// few times, as memberlist does for its own transport.
func bindGossip(host string, port int, logger *log.Logger) (*memberlist.NetTransport, error) {
	tries := 1
	if port == 0 {
		tries = 10
	}
	var err error
	for range tries {
		var t *memberlist.NetTransport
		t, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{host}, BindPort: port, Logger: logger,
		})
		if err == nil {
			return t, nil
		}
	}
	return nil, err
}

// WriteTo sends a packet, or drops it (without an error, as UDP would)
// across a cut.
func (t *gossipTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *gossipTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	to, err := net.ResolveUDPAddr("udp", a.Addr)
	if err != nil {
		return time.Time{}, err
	}
	if t.h.n.cut(t.h.IP(), to.IP.String(), nil, Gossip) {
		return time.Now(), nil
	}
	return t.NetTransport.WriteToAddress(b, a)
}

func (t *gossipTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

func (t *gossipTransport) StreamCh() <-chan net.Conn { return t.streams }

// DialTimeout opens a stream from the host's IP; across a cut it fails
// at once.
func (t *gossipTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.h.dialTimeout(addr, timeout, Gossip)
}

func (t *gossipTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.h.dialTimeout(a.Addr, timeout, Gossip)
}

// Shutdown stops the transport. The forwarders keep draining the inner
// transport until it is down: its listeners block on handing over what
// they received, and would never end.
func (t *gossipTransport) Shutdown() error {
	t.once.Do(func() {
		close(t.stopping)
		t.err = t.NetTransport.Shutdown()
		close(t.stopped)
		t.wg.Wait()
	})
	return t.err
}

// forwardPackets passes on the packets received from hosts not cut off.
func (t *gossipTransport) forwardPackets() {
	defer t.wg.Done()
	for {
		select {
		case p := <-t.NetTransport.PacketCh():
			if t.h.n.cut(t.h.IP(), ipOf(p.From), nil, Gossip) {
				continue
			}
			select {
			case t.packets <- p:
			case <-t.stopping:
			}
		case <-t.stopped:
			return
		}
	}
}

// forwardStreams passes on the streams accepted from hosts not cut off,
// tracked so that a later cut closes them.
func (t *gossipTransport) forwardStreams() {
	defer t.wg.Done()
	for {
		select {
		case inner := <-t.NetTransport.StreamCh():
			c, ok := t.h.accepted(inner, nil, Gossip)
			if !ok {
				continue
			}
			select {
			case t.streams <- c:
			case <-t.stopping:
				_ = c.Close()
			}
		case <-t.stopped:
			return
		}
	}
}

func ipOf(a net.Addr) string {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.IP.String()
	case *net.TCPAddr:
		return a.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
