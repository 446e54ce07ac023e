package membership

import (
	"fmt"
	"log"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// countingTransport is memberlist's own transport, counting the packets
// and streams this node sends through it.
type countingTransport struct {
	*memberlist.NetTransport
	packets, streams atomic.Int64
	shutdowns        atomic.Int64
}

func (c *countingTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	c.packets.Add(1)
	return c.NetTransport.WriteToAddress(b, a)
}

func (c *countingTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	c.streams.Add(1)
	return c.NetTransport.DialAddressTimeout(a, timeout)
}

func (c *countingTransport) Shutdown() error {
	c.shutdowns.Add(1)
	return c.NetTransport.Shutdown()
}

func newCountingTransport(t *testing.T) *countingTransport {
	t.Helper()
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{"127.0.0.1"},
		Logger:    log.New(testLogWriter(t), "", 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &countingTransport{NetTransport: nt}
}

func testLogWriter(t *testing.T) *tWriter {
	w := &tWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return w
}

// TestMembership_Transport: two members gossiping over transports handed
// in find each other, their addresses are the transports', their traffic
// goes through them, and Shutdown shuts them down.
func TestMembership_Transport(t *testing.T) {
	t.Parallel()
	ta, tb := newCountingTransport(t), newCountingTransport(t)
	withTransport := func(tr *countingTransport) nodeOpt {
		return func(c *Config) { c.BindAddr, c.Transport = "", tr }
	}
	nodes := []*Membership{startNode(t, "a", withTransport(ta)), startNode(t, "b", withTransport(tb))}
	joinOK(t, nodes[1], nodes[0])
	for _, n := range nodes {
		waitFor(t, 5*time.Second, n.name+" sees both alive", func() (bool, string) {
			return countStatus(n, StatusAlive) == 2, statuses(n)
		})
	}
	for i, tr := range []*countingTransport{ta, tb} {
		want := net.JoinHostPort("127.0.0.1", strconv.Itoa(tr.GetAutoBindPort()))
		if got := nodes[i].LocalAddr(); got != want {
			t.Errorf("%s: LocalAddr %s, want the transport's %s", nodes[i].name, got, want)
		}
		if self, _ := nodes[i].Member(nodes[i].name); self.Addr != want {
			t.Errorf("%s advertises %s, want %s", nodes[i].name, self.Addr, want)
		}
	}
	waitFor(t, 5*time.Second, "packets through both transports", func() (bool, string) {
		return ta.packets.Load() > 0 && tb.packets.Load() > 0,
			fmt.Sprintf("a sent %d, b sent %d", ta.packets.Load(), tb.packets.Load())
	})
	if ta.streams.Load()+tb.streams.Load() == 0 {
		t.Error("the join's push-pull did not dial through the transports")
	}
	for i, tr := range []*countingTransport{ta, tb} {
		if err := nodes[i].Shutdown(); err != nil {
			t.Fatal(err)
		}
		if tr.shutdowns.Load() == 0 {
			t.Errorf("%s: Shutdown left its transport running", nodes[i].name)
		}
	}
}

// TestNew_TransportShutDownOnError: New owns the transport, also when it
// fails.
func TestNew_TransportShutDownOnError(t *testing.T) {
	tr := newCountingTransport(t)
	if _, err := New(Config{Name: "", Transport: tr}); err == nil {
		t.Fatal("New without a name succeeded")
	}
	if tr.shutdowns.Load() == 0 {
		t.Fatal("a failed New left its transport running")
	}
}
