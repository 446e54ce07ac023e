package simnet_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gpagent/gpagent/internal/simnet"
)

// echoServer serves ln, echoing lines, and reports the remote address of
// each connection it accepts and the error that ended each one.
func echoServer(t *testing.T, ln net.Listener) (accepted <-chan string, ended <-chan error) {
	acc, end := make(chan string, 16), make(chan error, 16)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			acc <- c.RemoteAddr().String()
			go func() {
				_, err := io.Copy(c, c)
				end <- err
				_ = c.Close()
			}()
		}
	}()
	return acc, end
}

func dial(t *testing.T, h *simnet.HostNet, addr string) (net.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, err := h.DialContext(ctx, "tcp", addr)
	if err == nil {
		t.Cleanup(func() { _ = c.Close() })
	}
	return c, err
}

// roundTrip sends a line over c and reads it back.
func roundTrip(c net.Conn, line string) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintln(c, line); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if got != line+"\n" {
		return fmt.Errorf("echoed %q, want %q", got, line)
	}
	return nil
}

// TestCut_TCP: a cut closes the connection across it at both ends and
// refuses new dials at once both ways; Heal lets dials through again.
func TestCut_TCP(t *testing.T) {
	n := simnet.New()
	a, b := n.Host("127.0.0.2"), n.Host("127.0.0.3")
	lnB, err := b.Listen("127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	lnA, err := a.Listen(":0") // the host's IP
	if err != nil {
		t.Fatal(err)
	}
	if host, _, _ := net.SplitHostPort(lnA.Addr().String()); host != "127.0.0.2" {
		t.Fatalf("a's listener bound %s, want its own IP", lnA.Addr())
	}
	accepted, ended := echoServer(t, lnB)
	echoServer(t, lnA)

	c, err := dial(t, a, lnB.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if from := <-accepted; !strings.HasPrefix(from, "127.0.0.2:") {
		t.Fatalf("b saw the call come from %s, want a's IP", from)
	}
	if err := roundTrip(c, "before"); err != nil {
		t.Fatal(err)
	}

	n.Cut("127.0.0.2", "127.0.0.3")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("a's end still open across the cut: read gives %v", err)
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("b's end still open across the cut")
	}
	for _, d := range []struct {
		from *simnet.HostNet
		to   string
	}{{a, lnB.Addr().String()}, {b, lnA.Addr().String()}} {
		start := time.Now()
		if _, err := dial(t, d.from, d.to); !errors.Is(err, simnet.ErrCut) {
			t.Fatalf("%s dials %s across the cut: %v, want ErrCut", d.from.IP(), d.to, err)
		}
		if el := time.Since(start); el > time.Second {
			t.Fatalf("a dial across the cut took %v, want it to fail at once", el)
		}
	}

	n.Heal()
	for _, d := range []struct {
		from *simnet.HostNet
		to   string
	}{{a, lnB.Addr().String()}, {b, lnA.Addr().String()}} {
		c, err := dial(t, d.from, d.to)
		if err != nil {
			t.Fatalf("%s dials %s after Heal: %v", d.from.IP(), d.to, err)
		}
		if err := roundTrip(c, "after"); err != nil {
			t.Fatalf("%s to %s after Heal: %v", d.from.IP(), d.to, err)
		}
	}
}

// TestCut_AcceptSide: a caller that reaches a listener past simnet's
// dialer (a plain dial bound to a cut-off IP) is closed as it is accepted;
// the test process itself, on no host, is never cut off.
func TestCut_AcceptSide(t *testing.T) {
	n := simnet.New()
	n.Host("127.0.0.2")
	b := n.Host("127.0.0.3")
	ln, err := b.Listen("127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	echoServer(t, ln)
	n.Isolate("127.0.0.3")

	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", ln.Addr().String())
	if err == nil {
		defer c.Close()
		if err := roundTrip(c, "sneak"); err == nil {
			t.Fatal("a connection from a cut-off IP was served")
		}
	}

	outsider, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer outsider.Close()
	if err := roundTrip(outsider, "test process"); err != nil {
		t.Fatalf("the test process cannot reach an isolated host: %v", err)
	}
}

// TestFaults: which dials each fault refuses, by kind.
func TestFaults(t *testing.T) {
	const a, b, c = "127.0.0.2", "127.0.0.3", "127.0.0.4"
	cases := []struct {
		name  string
		fault func(n *simnet.Net)
		// cut lists the refused (from, to) pairs of each kind; every
		// other pair connects.
		cut map[simnet.Kind][][2]string
	}{
		{"none", func(*simnet.Net) {}, nil},
		{"cut", func(n *simnet.Net) { n.Cut(a, b) },
			map[simnet.Kind][][2]string{simnet.API: {{a, b}, {b, a}}, simnet.Raft: {{a, b}, {b, a}}}},
		{"isolate", func(n *simnet.Net) { n.Isolate(c) },
			map[simnet.Kind][][2]string{simnet.API: {{a, c}, {b, c}, {c, a}, {c, b}}, simnet.Raft: {{a, c}, {b, c}, {c, a}, {c, b}}}},
		{"partition", func(n *simnet.Net) { n.Partition([]string{a, b}, []string{c}) },
			map[simnet.Kind][][2]string{simnet.API: {{a, c}, {b, c}, {c, a}, {c, b}}, simnet.Raft: {{a, c}, {b, c}, {c, a}, {c, b}}}},
		{"bridge", func(n *simnet.Net) { n.Cut(b, c) }, // a sees both, b and c not each other
			map[simnet.Kind][][2]string{simnet.API: {{b, c}, {c, b}}, simnet.Raft: {{b, c}, {c, b}}}},
		{"raft only", func(n *simnet.Net) { n.Only(simnet.Raft).Isolate(a) },
			map[simnet.Kind][][2]string{simnet.Raft: {{a, b}, {a, c}, {b, a}, {c, a}}}},
		{"api only, then healed", func(n *simnet.Net) {
			n.Only(simnet.API).Cut(a, b)
			n.Only(simnet.Raft).Cut(a, c)
			n.Only(simnet.API).Heal()
		},
			map[simnet.Kind][][2]string{simnet.Raft: {{a, c}, {c, a}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := simnet.New()
			addrs := map[simnet.Kind]map[string]string{simnet.API: {}, simnet.Raft: {}}
			for _, ip := range []string{a, b, c} {
				h := n.Host(ip)
				for kind, hn := range map[simnet.Kind]*simnet.HostNet{simnet.API: h, simnet.Raft: h.Raft()} {
					ln, err := hn.Listen(ip + ":0")
					if err != nil {
						t.Fatal(err)
					}
					echoServer(t, ln)
					addrs[kind][ip] = ln.Addr().String()
				}
			}
			tc.fault(n)
			for kind, to := range addrs {
				refused := map[[2]string]bool{}
				for _, p := range tc.cut[kind] {
					refused[p] = true
				}
				for _, from := range []string{a, b, c} {
					for _, dst := range []string{a, b, c} {
						_, err := dial(t, n.Host(from), to[dst])
						if want := refused[[2]string{from, dst}]; want != errors.Is(err, simnet.ErrCut) || (!want && err != nil) {
							t.Errorf("%v %s -> %s: err %v, want refused=%v", kind, from, dst, err, want)
						}
					}
				}
			}
		})
	}
}

// TestMark: a listener opened through plain Listen becomes Raft, and its
// open connections with it.
func TestMark(t *testing.T) {
	n := simnet.New()
	a, b := n.Host("127.0.0.2"), n.Host("127.0.0.3")
	ln, err := b.Listen("127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	_, ended := echoServer(t, ln)
	c, err := dial(t, a, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(c, "api"); err != nil {
		t.Fatal(err)
	}
	n.Only(simnet.Raft).Cut(a.IP(), b.IP())
	if err := roundTrip(c, "still api"); err != nil {
		t.Fatalf("a Raft cut closed an API connection: %v", err)
	}
	if err := n.Mark(ln.Addr().String(), simnet.Raft); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("a connection marked Raft stayed open across a Raft cut")
	}
	if _, err := dial(t, a, ln.Addr().String()); !errors.Is(err, simnet.ErrCut) {
		t.Fatalf("dial to a listener marked Raft across a Raft cut: %v", err)
	}
	if err := n.Mark("127.0.0.3:1", simnet.Raft); err == nil {
		t.Fatal("Mark of an address with no listener succeeded")
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
