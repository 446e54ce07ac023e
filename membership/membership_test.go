package membership

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// tWriter sends log lines to t.Log until the test's cleanup, then drops
// them: memberlist goroutines can still log after Shutdown, and t.Log
// after the test ends panics.
type tWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type nodeOpt func(*Config)

func withKeys(keys ...[]byte) nodeOpt  { return func(c *Config) { c.Keys = keys } }
func withEvents(ch chan Event) nodeOpt { return func(c *Config) { c.Events = ch } }

// startNode starts a member on 127.0.0.1 with a port from :0, shut down at
// the end of the test.
func startNode(t *testing.T, name string, opts ...nodeOpt) *Membership {
	t.Helper()
	cfg := Config{
		Name:     name,
		BindAddr: "127.0.0.1",
		Meta:     testMeta(name),
		Logger:   testLogger(t).With("node", name),
	}
	for _, o := range opts {
		o(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return m
}

func testMeta(name string) Meta {
	return Meta{APIAddr: "127.0.0.1:8" + name, RaftAddr: "127.0.0.1:9" + name, Version: "test-" + name}
}

// startCluster starts the named nodes and joins the others to the first.
func startCluster(t *testing.T, names []string, opts ...nodeOpt) []*Membership {
	t.Helper()
	nodes := make([]*Membership, len(names))
	for i, name := range names {
		nodes[i] = startNode(t, name, opts...)
	}
	for _, n := range nodes[1:] {
		joinOK(t, n, nodes[0])
	}
	for _, n := range nodes {
		waitFor(t, 5*time.Second, n.name+" sees all alive", func() (bool, string) {
			return countStatus(n, StatusAlive) == len(nodes), statuses(n)
		})
	}
	return nodes
}

func joinOK(t *testing.T, n, to *Membership) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if got, err := n.Join(ctx, []string{to.LocalAddr()}); err != nil || got != 1 {
		t.Fatalf("%s joins %s: got %d, %v", n.name, to.name, got, err)
	}
}

// waitFor polls cond until it holds, and fails with the last thing it saw
// when within has passed.
func waitFor(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, seen := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v still waiting for %s; last saw: %s", within, what, seen)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitEvent reads ch until an event matches, failing after within.
func waitEvent(t *testing.T, ch <-chan Event, within time.Duration, what string, match func(Event) bool) Event {
	t.Helper()
	timeout := time.After(within)
	var seen []string
	for {
		select {
		case e := <-ch:
			if match(e) {
				return e
			}
			seen = append(seen, e.Kind.String()+":"+e.Member.Name)
		case <-timeout:
			t.Fatalf("after %v no event %s; saw %v", within, what, seen)
		}
	}
}

func statuses(m *Membership) string {
	var b strings.Builder
	for _, mem := range m.Members() {
		fmt.Fprintf(&b, "%s=%s ", mem.Name, mem.Status)
	}
	return strings.TrimSpace(b.String())
}

func countStatus(m *Membership, s Status) int {
	n := 0
	for _, mem := range m.Members() {
		if mem.Status == s {
			n++
		}
	}
	return n
}

func healthOf(m *Membership, name string) string {
	mem, _ := m.Member(name)
	return string(mem.Health)
}

func TestMembership_Join(t *testing.T) {
	t.Parallel()
	events := make(chan Event, 64)
	a := startNode(t, "a", withEvents(events))
	b := startNode(t, "b")
	c := startNode(t, "c")
	joinOK(t, b, a)
	joinOK(t, c, b) // through b: a learns of c by gossip

	t.Run("all three see three alive members with their meta", func(t *testing.T) {
		for _, n := range []*Membership{a, b, c} {
			waitFor(t, 5*time.Second, n.name+" sees 3 alive", func() (bool, string) {
				return countStatus(n, StatusAlive) == 3, statuses(n)
			})
			members := n.Members()
			for i, want := range []*Membership{a, b, c} {
				got := members[i]
				wantMeta := testMeta(want.name)
				wantMeta.Name = want.name
				if got.Name != want.name || got.Meta != wantMeta || got.Addr != want.LocalAddr() {
					t.Errorf("%s sees member %d as %+v, want name %s meta %+v addr %s", n.name, i, got, want.name, wantMeta, want.LocalAddr())
				}
			}
		}
	})
	t.Run("join events arrive for the others", func(t *testing.T) {
		for _, name := range []string{"b", "c"} {
			e := waitEvent(t, events, 5*time.Second, "join of "+name, func(e Event) bool {
				return e.Kind == EventJoin && e.Member.Name == name
			})
			if e.Member.Status != StatusAlive || e.Member.Meta.Version != "test-"+name {
				t.Errorf("join event for %s carries %+v", name, e.Member)
			}
		}
	})
	t.Run("meta update reaches the others", func(t *testing.T) {
		meta := testMeta("b")
		meta.Version = "test-b2"
		if err := b.UpdateMeta(meta); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "a sees b's new version", func() (bool, string) {
			mem, _ := a.Member("b")
			return mem.Meta.Version == "test-b2", mem.Meta.Version
		})
		waitEvent(t, events, 5*time.Second, "update of b", func(e Event) bool {
			return e.Kind == EventUpdate && e.Member.Name == "b" && e.Member.Meta.Version == "test-b2"
		})
	})
}

func TestMembership_Health(t *testing.T) {
	t.Parallel()
	events := make(chan Event, 64)
	a := startNode(t, "a")
	b := startNode(t, "b", withEvents(events))
	c := startNode(t, "c")
	joinOK(t, b, a)
	joinOK(t, c, a)

	t.Run("a payload set on one is seen by the others", func(t *testing.T) {
		if err := a.SetHealth([]byte("v1")); err != nil {
			t.Fatal(err)
		}
		for _, n := range []*Membership{a, b, c} {
			waitFor(t, 5*time.Second, n.name+" sees a's v1", func() (bool, string) {
				h := healthOf(n, "a")
				return h == "v1", h
			})
		}
		e := waitEvent(t, events, 5*time.Second, "health of a", func(e Event) bool { return e.Kind == EventHealth })
		if e.Member.Name != "a" || string(e.Member.Health) != "v1" || e.Member.HealthAt.IsZero() {
			t.Errorf("health event: %+v", e.Member)
		}
	})
	t.Run("a newer payload replaces the older", func(t *testing.T) {
		for _, v := range []string{"v2", "v3", "v4"} {
			if err := a.SetHealth([]byte(v)); err != nil {
				t.Fatal(err)
			}
		}
		for _, n := range []*Membership{b, c} {
			waitFor(t, 5*time.Second, n.name+" sees a's v4", func() (bool, string) {
				h := healthOf(n, "a")
				return h == "v4", h
			})
		}
		// An old report arriving late (a slow push-pull) changes nothing.
		delegate{b}.MergeRemoteState(encodeHealthState([]healthRecord{{name: "a", seq: 1, payload: []byte("stale")}}), false)
		if h := healthOf(b, "a"); h != "v4" {
			t.Errorf("after a stale report b holds %q, want v4", h)
		}
	})
	t.Run("a late joiner gets payloads by push-pull", func(t *testing.T) {
		if err := c.SetHealth([]byte("c1")); err != nil {
			t.Fatal(err)
		}
		// Once every queue is empty no broadcast is left in flight, so d
		// can only learn the payloads from the push-pull of its join.
		// Draining also shows that reports passed on do not echo forever.
		for _, n := range []*Membership{a, b, c} {
			waitFor(t, 2*time.Second, n.name+"'s broadcast queue to drain", func() (bool, string) {
				q := n.bcast.NumQueued()
				return q == 0, fmt.Sprint(q, " queued")
			})
		}
		d := startNode(t, "d")
		joinOK(t, d, b)
		waitFor(t, 5*time.Second, "d sees a's and c's payloads", func() (bool, string) {
			ha, hc := healthOf(d, "a"), healthOf(d, "c")
			return ha == "v4" && hc == "c1", "a=" + ha + " c=" + hc
		})
	})
	t.Run("the returned payload is a copy", func(t *testing.T) {
		mem, _ := b.Member("a")
		mem.Health[0] = 'X'
		if h := healthOf(b, "a"); h != "v4" {
			t.Errorf("modifying a returned payload changed the held one to %q", h)
		}
	})
	t.Run("a payload over the limit is rejected", func(t *testing.T) {
		err := a.SetHealth(make([]byte, MaxHealthSize+1))
		if !errors.Is(err, ErrHealthTooLarge) {
			t.Errorf("SetHealth(%d bytes) = %v, want ErrHealthTooLarge", MaxHealthSize+1, err)
		}
		if err := a.SetHealth(make([]byte, MaxHealthSize)); err != nil {
			t.Errorf("SetHealth(%d bytes) = %v", MaxHealthSize, err)
		}
		waitFor(t, 5*time.Second, "b sees a's full-size payload", func() (bool, string) {
			n := len(healthOf(b, "a"))
			return n == MaxHealthSize, fmt.Sprint(n, " bytes")
		})
	})
}

func TestMembership_HealthBroadcastIsNamed(t *testing.T) {
	t.Parallel()
	a := startNode(t, "a") // alone: nothing takes the queue's messages
	for _, v := range []string{"old", "newer", "newest"} {
		if err := a.SetHealth([]byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	if q := a.bcast.NumQueued(); q != 1 {
		t.Fatalf("%d broadcasts queued after three reports, want 1", q)
	}
	msgs := a.bcast.GetBroadcasts(0, 1400)
	if len(msgs) != 1 || msgs[0][0] != msgHealth {
		t.Fatalf("queued: %q", msgs)
	}
	r, _, err := readHealthRecord(msgs[0][1:])
	if err != nil || string(r.payload) != "newest" {
		t.Fatalf("queued report: %+v, %v", r, err)
	}
}

func TestMembership_Crash(t *testing.T) {
	t.Parallel()
	events := make(chan Event, 64)
	a := startNode(t, "a", withEvents(events))
	b := startNode(t, "b")
	c := startNode(t, "c")
	joinOK(t, b, a)
	joinOK(t, c, a)
	for _, n := range []*Membership{a, b, c} {
		waitFor(t, 5*time.Second, n.name+" sees 3 alive", func() (bool, string) {
			return countStatus(n, StatusAlive) == 3, statuses(n)
		})
	}

	t.Run("a node shut down without leave is seen suspect, then dead", func(t *testing.T) {
		start := time.Now()
		if err := c.Shutdown(); err != nil {
			t.Fatal(err)
		}
		type seen struct{ suspect, dead time.Duration }
		got := map[string]*seen{"a": {}, "b": {}}
		waitFor(t, 15*time.Second, "a and b to declare c dead", func() (bool, string) {
			done := true
			for _, n := range []*Membership{a, b} {
				s := got[n.name]
				mem, _ := n.Member("c")
				switch {
				case mem.Status == StatusSuspect && s.suspect == 0:
					s.suspect = time.Since(start)
				case mem.Status == StatusDead && s.dead == 0:
					s.dead = time.Since(start)
				}
				done = done && s.dead != 0
			}
			return done, "a: " + statuses(a) + "; b: " + statuses(b)
		})
		for _, name := range []string{"a", "b"} {
			s := got[name]
			t.Logf("%s saw c suspect after %v, dead after %v (defaults: suspect ~%v, dead ~%v)",
				name, s.suspect.Round(time.Millisecond), s.dead.Round(time.Millisecond), DefaultSuspectAfter, DefaultDeadAfter)
			if s.suspect == 0 || s.suspect > s.dead {
				t.Errorf("%s did not see c suspect before dead: %+v", name, *s)
			}
		}
	})
	t.Run("the failure is an event and the member stays listed as dead", func(t *testing.T) {
		e := waitEvent(t, events, 5*time.Second, "failed c", func(e Event) bool { return e.Kind == EventFailed })
		if e.Member.Name != "c" || e.Member.Status != StatusDead {
			t.Errorf("failed event: %+v", e.Member)
		}
		if got := statuses(a); got != "a=alive b=alive c=dead" {
			t.Errorf("a's members: %s", got)
		}
	})
}

func TestMembership_Leave(t *testing.T) {
	t.Parallel()
	events := make(chan Event, 64)
	nodes := startCluster(t, []string{"a", "b", "c"}, withEvents(events))
	a, b, c := nodes[0], nodes[1], nodes[2]

	t.Run("a graceful leave is seen as left", func(t *testing.T) {
		if err := b.Leave(2 * time.Second); err != nil {
			t.Fatal(err)
		}
		for _, n := range []*Membership{a, c} {
			waitFor(t, 5*time.Second, n.name+" sees b left", func() (bool, string) {
				mem, _ := n.Member("b")
				return mem.Status == StatusLeft, statuses(n)
			})
		}
		if err := b.Shutdown(); err != nil {
			t.Fatal(err)
		}
		if err := b.Leave(time.Second); !errors.Is(err, ErrShutdown) {
			t.Errorf("Leave after Shutdown = %v, want ErrShutdown", err)
		}
	})
	t.Run("the leave is an event on the others", func(t *testing.T) {
		waitEvent(t, events, 5*time.Second, "leave of b", func(e Event) bool {
			return e.Kind == EventLeave && e.Member.Name == "b" && e.Member.Status == StatusLeft
		})
	})
}

func TestMembership_Encryption(t *testing.T) {
	t.Parallel()
	key1 := bytes.Repeat([]byte{1}, 32)
	key2 := bytes.Repeat([]byte{2}, 32)
	a := startNode(t, "a", withKeys(key1))
	b := startNode(t, "b", withKeys(key1))

	t.Run("two nodes with the same key join", func(t *testing.T) {
		joinOK(t, b, a)
		waitFor(t, 5*time.Second, "a sees b", func() (bool, string) {
			return countStatus(a, StatusAlive) == 2, statuses(a)
		})
	})
	t.Run("a node with another key cannot join", func(t *testing.T) {
		x := startNode(t, "x", withKeys(key2))
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		start := time.Now()
		n, err := x.Join(ctx, []string{a.LocalAddr()})
		t.Logf("Join with a different key returned after %v: %v", time.Since(start).Round(time.Millisecond), err)
		if err == nil || n != 0 {
			t.Fatalf("Join = %d, %v; want an error", n, err)
		}
		if !errors.Is(err, ErrKeyMismatch) || !strings.Contains(err.Error(), "keys") || strings.Contains(err.Error(), "\n") {
			t.Errorf("error should be one line, say keys differ and match ErrKeyMismatch: %q", err)
		}
		assertNeverIncluded(t, a, b, x)
	})
	t.Run("a node without encryption cannot join", func(t *testing.T) {
		y := startNode(t, "y")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := y.Join(ctx, []string{b.LocalAddr()})
		if !errors.Is(err, ErrKeyMismatch) {
			t.Fatalf("Join = %v, want ErrKeyMismatch", err)
		}
		t.Logf("Join without encryption: %v", err)
		assertNeverIncluded(t, a, b, y)
	})
}

// assertNeverIncluded checks that a and b never list the outsider. A new
// health report from a, once b has it, shows gossip between them ran after
// the refused join.
func assertNeverIncluded(t *testing.T, a, b, outsider *Membership) {
	t.Helper()
	barrier := fmt.Sprintf("after-%s-%d", outsider.name, time.Now().UnixNano())
	if err := a.SetHealth([]byte(barrier)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "b to see a's report "+barrier, func() (bool, string) {
		if _, ok := a.Member(outsider.name); ok {
			t.Fatalf("a lists %s: %s", outsider.name, statuses(a))
		}
		if _, ok := b.Member(outsider.name); ok {
			t.Fatalf("b lists %s: %s", outsider.name, statuses(b))
		}
		h := healthOf(b, "a")
		return h == barrier, h
	})
	if got := statuses(outsider); got != outsider.name+"=alive" {
		t.Errorf("%s sees %s, want only itself", outsider.name, got)
	}
}

func TestMembership_EventsNeverBlock(t *testing.T) {
	t.Parallel()
	full := make(chan Event) // unbuffered and never read: every send would block
	nodes := startCluster(t, []string{"a", "b", "c"}, withEvents(full))
	if err := nodes[0].SetHealth([]byte("h")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "health to spread with nobody reading events", func() (bool, string) {
		h := healthOf(nodes[2], "a")
		return h == "h", h
	})
	if nodes[1].DroppedEvents() == 0 {
		t.Errorf("no event counted as dropped")
	}
}

func TestMembership_JoinGivesUp(t *testing.T) {
	t.Parallel()
	a := startNode(t, "a")
	// joinWithin runs Join against addr with a short context and checks it
	// returns soon after the context ends, naming the address.
	joinWithin := func(t *testing.T, addr string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
		defer cancel()
		start := time.Now()
		n, err := a.Join(ctx, []string{addr})
		took := time.Since(start)
		t.Logf("Join returned after %v: %v", took.Round(time.Millisecond), err)
		if n != 0 || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), addr) {
			t.Errorf("Join = %d, %v; want the deadline and the address in the error", n, err)
		}
		if took > 1500*time.Millisecond {
			t.Errorf("Join took %v with a 700ms context", took)
		}
		return err
	}
	t.Run("nobody listening", func(t *testing.T) {
		gone := startNode(t, "gone")
		addr := gone.LocalAddr()
		if err := gone.Shutdown(); err != nil {
			t.Fatal(err)
		}
		if err := joinWithin(t, addr); !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("error does not say the connection was refused: %v", err)
		}
	})
	t.Run("a peer that accepts and never answers", func(t *testing.T) {
		// Like a SIGSTOPped agent: memberlist's own join would wait
		// DefaultTCPTimeout; Join must still honour the context.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var held []net.Conn // open, unanswered, until the test ends
		closed := false
		t.Cleanup(func() {
			ln.Close()
			mu.Lock()
			defer mu.Unlock()
			closed = true
			for _, c := range held {
				c.Close()
			}
		})
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				if closed {
					c.Close()
				} else {
					held = append(held, c)
				}
				mu.Unlock()
			}
		}()
		joinWithin(t, ln.Addr().String())
	})
}

func TestNew_Config(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", MaxMetaSize)
	cases := []struct {
		name string
		cfg  Config
		want string
		is   error
	}{
		{"meta too large", Config{Name: "a", Meta: Meta{APIAddr: long}}, "memberlist allows 512", ErrMetaTooLarge},
		{"meta name differs from node name", Config{Name: "a", Meta: Meta{Name: "b"}}, `meta name "b" differs`, nil},
		{"empty name", Config{}, "name is empty", nil},
		{"name too long", Config{Name: strings.Repeat("n", MaxNameLen+1)}, "name is 129 bytes", nil},
		{"key of a bad length", Config{Name: "a", Keys: [][]byte{make([]byte, 10)}}, "gossip key 0 is 10 bytes", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.BindAddr = "127.0.0.1"
			tc.cfg.Logger = testLogger(t)
			m, err := New(tc.cfg)
			if err == nil {
				_ = m.Shutdown()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Errorf("New: %v; want %q (%v)", err, tc.want, tc.is)
			}
		})
	}
	t.Run("meta update too large is rejected", func(t *testing.T) {
		m := startNode(t, "a")
		if err := m.UpdateMeta(Meta{APIAddr: long}); !errors.Is(err, ErrMetaTooLarge) {
			t.Errorf("UpdateMeta: %v, want ErrMetaTooLarge", err)
		}
	})
}

func TestStateReader(t *testing.T) {
	t.Parallel()
	// New only warns when memberlist's internals moved; this fails loudly
	// instead, so that a memberlist upgrade does not silently lose suspect.
	m := startNode(t, "a")
	if _, err := newStateReader(m.ml); err != nil {
		t.Fatalf("cannot read this memberlist's node states: %v", err)
	}
	if s := m.states.Load().suspects(); len(s) != 0 {
		t.Errorf("suspects of a lone node: %v", s)
	}
}
