package consensus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpagent/gpagent/internal/testcerts"
	"github.com/gpagent/gpagent/topology"
)

// memNet is an in-memory network of net.Pipe connections: nothing on it
// is reachable over TCP, so a cluster that works on it carries all its
// traffic through Config.Listener and Config.Dial. Its addresses look
// like 127.0.0.1:N so that the test certificates' IP SAN verifies them.
type memNet struct {
	mu        sync.Mutex
	next      int
	listeners map[string]*memListener
	dials     atomic.Int64
}

type memAddr string

func (a memAddr) Network() string { return "mem" }
func (a memAddr) String() string  { return string(a) }

type memListener struct {
	addr  memAddr
	net   *memNet
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func (n *memNet) listen() *memListener {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.next++
	l := &memListener{addr: memAddr(fmt.Sprintf("127.0.0.1:%d", n.next)), net: n,
		conns: make(chan net.Conn), done: make(chan struct{})}
	if n.listeners == nil {
		n.listeners = map[string]*memListener{}
	}
	n.listeners[string(l.addr)] = l
	return l
}

func (n *memNet) dial(address string, timeout time.Duration) (net.Conn, error) {
	n.dials.Add(1)
	n.mu.Lock()
	l := n.listeners[address]
	n.mu.Unlock()
	if l == nil {
		return nil, fmt.Errorf("mem dial %s: connection refused", address)
	}
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
	case <-time.After(timeout):
	}
	_ = client.Close()
	_ = server.Close()
	return nil, fmt.Errorf("mem dial %s: not accepted", address)
}

func (l *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *memListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.net.mu.Lock()
		delete(l.net.listeners, string(l.addr))
		l.net.mu.Unlock()
	})
	return nil
}

func (l *memListener) Addr() net.Addr { return l.addr }

// TestNode_TransportHooks: three nodes whose only network is the hooked
// listener and dialer form a cluster, replicate, and elect a new leader
// when the first one stops, in plain and in mutual TLS.
func TestNode_TransportHooks(t *testing.T) {
	ca := testcerts.New(t)
	for _, withTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", withTLS), func(t *testing.T) {
			mem := &memNet{}
			hooked := func(c *Config) {
				c.BindAddr = "" // nothing is bound on TCP
				c.Listener = mem.listen()
				c.Dial = mem.dial
				if withTLS {
					c.TLS = ca.MutualConfig(ca.Issue(t, "127.0.0.1"))
				}
			}
			c := cluster{
				"n1": openNode(t, "n1", t.TempDir(), true, hooked),
				"n2": openNode(t, "n2", t.TempDir(), false, hooked),
				"n3": openNode(t, "n3", t.TempDir(), false, hooked),
			}
			for id, n := range c {
				mem.mu.Lock()
				l := mem.listeners[n.Addr()]
				mem.mu.Unlock()
				if l == nil {
					t.Fatalf("%s advertises %s, not its hooked listener", id, n.Addr())
				}
			}
			waitLeading(t, c["n1"])
			for _, id := range []string{"n2", "n3"} {
				c.onLeader(t, "add voter "+id, func(ctx context.Context, n *Node) error {
					return n.AddVoter(ctx, c[id].ID(), c[id].Addr())
				})
			}
			c.applyVersion(t, 1, func(uint64) topology.Command { return initCommand() })
			c.waitVersion(t, 1)

			// The survivors must reach each other through the hooks to
			// elect a leader of their own.
			first := c.leader(t)
			for id, n := range c {
				if n == first {
					if err := n.Close(); err != nil {
						t.Fatal(err)
					}
					delete(c, id)
				}
			}
			c.leader(t)
			c.applyVersion(t, 2, allUpCommand)
			c.waitVersion(t, 2)
			if mem.dials.Load() == 0 {
				t.Fatal("the hooked dialer was never called")
			}
		})
	}
}

// TestOpen_ListenerClosedOnError: Open owns the listener it was given,
// also when it fails.
func TestOpen_ListenerClosedOnError(t *testing.T) {
	mem := &memNet{}
	l := mem.listen()
	_, err := Open(Config{NodeID: "", DataDir: t.TempDir(), Listener: l})
	if err == nil {
		t.Fatal("Open without NodeID succeeded")
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("listener not closed after a failed Open: Accept gives %v", err)
	}
}
