package simnet_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gpagent/gpagent/internal/simnet"
	"github.com/gpagent/gpagent/membership"
)

// startMember gossips as name over h's gossip transport.
func startMember(t *testing.T, h *simnet.HostNet, name string) *membership.Membership {
	t.Helper()
	tr, err := h.GossipTransport(h.IP(), 0)
	if err != nil {
		t.Fatal(err)
	}
	m, err := membership.New(membership.Config{
		Name:      name,
		Transport: tr,
		Meta:      membership.Meta{APIAddr: h.IP() + ":1", RaftAddr: h.IP() + ":2", Version: "test"},
		Logger:    testLogger(t).With("node", name),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	if !strings.HasPrefix(m.LocalAddr(), h.IP()+":") {
		t.Fatalf("%s gossips on %s, not on its host's IP", name, m.LocalAddr())
	}
	return m
}

func join(t *testing.T, m, to *membership.Membership) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := m.Join(ctx, []string{to.LocalAddr()}); err != nil {
		t.Fatal(err)
	}
}

func statusOf(m *membership.Membership, name string) membership.Status {
	mem, _ := m.Member(name)
	return mem.Status
}

func statuses(ms ...*membership.Membership) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "%s sees [", m.LocalAddr())
		for _, mem := range m.Members() {
			fmt.Fprintf(&b, " %s=%s", mem.Name, mem.Status)
		}
		b.WriteString(" ] ")
	}
	return b.String()
}

func waitAllAlive(t *testing.T, what string, ms ...*membership.Membership) {
	t.Helper()
	waitFor(t, 10*time.Second, what, func() (bool, string) {
		for _, m := range ms {
			alive := 0
			for _, mem := range m.Members() {
				if mem.Status == membership.StatusAlive {
					alive++
				}
			}
			if alive != len(ms) {
				return false, statuses(ms...)
			}
		}
		return true, ""
	})
}

// TestGossip_IsolateAndHeal: two members joined over simnet; isolating
// one makes the other see it fail within the failure detector's time;
// after Heal and a rejoin (the agent's mesh rejoins its peers) both are
// alive again.
func TestGossip_IsolateAndHeal(t *testing.T) {
	n := simnet.New()
	a := startMember(t, n.Host("127.0.0.2"), "a")
	b := startMember(t, n.Host("127.0.0.3"), "b")
	join(t, b, a)
	waitAllAlive(t, "both alive", a, b)

	n.Isolate("127.0.0.3")
	waitFor(t, membership.DefaultDeadAfter+5*time.Second, "a sees b fail", func() (bool, string) {
		s := statusOf(a, "b")
		return s == membership.StatusSuspect || s == membership.StatusDead, statuses(a, b)
	})
	// A gossip dial across the cut fails at once, so rejoining does not
	// work until Heal.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if got, err := b.Join(ctx, []string{a.LocalAddr()}); err == nil && got > 0 {
		t.Fatalf("b joined a across the cut (%d contacted)", got)
	}

	n.Heal()
	join(t, b, a)
	waitAllAlive(t, "both alive after Heal", a, b)
}
