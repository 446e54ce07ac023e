package simnet

import (
	"net"
	"sync"
)

// conn is one end of a TCP connection simnet carries, tracked so that a
// cut can close it.
type conn struct {
	net.Conn
	n             *Net
	local, remote string    // IPs
	ep            *endpoint // the listened end's kind, if simnet opened it
	kind          Kind      // else this
	once          sync.Once
}

func (c *conn) kindLocked() Kind { return kindOf(c.ep, c.kind) }

func (c *conn) Close() error {
	c.once.Do(func() {
		c.n.mu.Lock()
		delete(c.n.conns, c)
		c.n.mu.Unlock()
	})
	return c.Conn.Close()
}

// track records c unless it is already cut (then the caller closes it).
func (n *Net) track(c *conn) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cutLocked(c.local, c.remote, c.kindLocked()) {
		return false
	}
	n.conns[c] = struct{}{}
	return true
}

// accepted wraps a connection the host accepted, or closes it and says
// false if its caller is cut off from the host.
func (h *HostNet) accepted(inner net.Conn, ep *endpoint, kind Kind) (*conn, bool) {
	remote := inner.RemoteAddr().String()
	if a, ok := inner.RemoteAddr().(*net.TCPAddr); ok {
		remote = a.IP.String()
	}
	c := &conn{Conn: inner, n: h.n, local: h.IP(), remote: remote, ep: ep, kind: kind}
	if !h.n.track(c) {
		h.n.log.Debug("refusing a connection across a cut", "local", inner.LocalAddr(), "remote", inner.RemoteAddr())
		_ = inner.Close()
		return nil, false
	}
	return c, true
}

// listener is a host's TCP listener: it closes the connections of callers
// cut off from the host as it accepts them.
type listener struct {
	net.Listener
	h    *HostNet
	ep   *endpoint
	key  string
	once sync.Once
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		inner, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if c, ok := l.h.accepted(inner, l.ep, 0); ok {
			return c, nil
		}
	}
}

func (l *listener) Close() error {
	l.once.Do(func() {
		l.h.n.mu.Lock()
		if l.h.n.endpoints[l.key] == l.ep {
			delete(l.h.n.endpoints, l.key)
		}
		l.h.n.mu.Unlock()
	})
	return l.Listener.Close()
}
