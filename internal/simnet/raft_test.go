package simnet_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gpagent/gpagent/consensus"
	"github.com/gpagent/gpagent/internal/simnet"
	"github.com/gpagent/gpagent/membership"
)

// agentNet is the Raft node and gossip member of one simulated host.
type agentNet struct {
	id     string
	ip     string
	raft   *consensus.Node
	member *membership.Membership
}

func startRaft(t *testing.T, h *simnet.HostNet, id string, bootstrap bool) *consensus.Node {
	t.Helper()
	ln, err := h.Raft().Listen(h.IP() + ":0")
	if err != nil {
		t.Fatal(err)
	}
	node, err := consensus.Open(consensus.Config{
		NodeID: id, DataDir: t.TempDir(), Bootstrap: bootstrap, Logger: testLogger(t).With("node", id),
		Listener: ln,
		Dial: func(addr string, timeout time.Duration) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			return h.DialContext(ctx, "tcp", addr)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.Close() })
	return node
}

func describe(agents []*agentNet) string {
	var b strings.Builder
	for _, a := range agents {
		l, _ := a.raft.Leader()
		fmt.Fprintf(&b, "%s: leading=%v knows leader %q; ", a.id, a.raft.IsLeader(), l)
	}
	return b.String()
}

// waitLeader waits until one of agents leads and every one of them knows
// it, and returns it.
func waitLeader(t *testing.T, what string, agents ...*agentNet) *agentNet {
	t.Helper()
	var leader *agentNet
	waitFor(t, 15*time.Second, what, func() (bool, string) {
		leader = nil
		for _, a := range agents {
			if a.raft.IsLeader() {
				leader = a
			}
		}
		if leader == nil {
			return false, describe(agents)
		}
		for _, a := range agents {
			if id, _ := a.raft.Leader(); id != leader.id {
				return false, describe(agents)
			}
		}
		return true, ""
	})
	return leader
}

// TestPartition_RaftOnly: three agents' Raft and gossip over simnet; cut
// the Raft leader's Raft traffic from the others. The two elect a leader
// of their own and the old one steps down, while gossip still carries
// every report: all three stay alive to each other and a report the cut
// host sends after the cut reaches both others. After Heal all three
// follow one leader again.
func TestPartition_RaftOnly(t *testing.T) {
	n := simnet.New()
	var agents []*agentNet
	for i, id := range []string{"n1", "n2", "n3"} {
		ip := fmt.Sprintf("127.0.0.%d", i+2)
		h := n.Host(ip)
		agents = append(agents, &agentNet{id: id, ip: ip,
			raft: startRaft(t, h, id, i == 0), member: startMember(t, h, id)})
	}
	first := agents[0]
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	if err := first.raft.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for _, a := range agents[1:] {
		if err := first.raft.AddVoter(ctx, a.raft.ID(), a.raft.Addr()); err != nil {
			t.Fatal(err)
		}
		join(t, a.member, first.member)
	}
	old := waitLeader(t, "one leader known to all", agents...)
	members := []*membership.Membership{agents[0].member, agents[1].member, agents[2].member}
	waitAllAlive(t, "all alive", members...)

	var rest []*agentNet
	var restIPs []string
	for _, a := range agents {
		if a != old {
			rest, restIPs = append(rest, a), append(restIPs, a.ip)
		}
	}
	n.Only(simnet.Raft).Partition([]string{old.ip}, restIPs)

	waitLeader(t, "the majority elects a leader of its own", rest...)
	waitFor(t, 15*time.Second, "the cut-off leader steps down", func() (bool, string) {
		return !old.raft.IsLeader(), describe(agents)
	})
	if err := old.member.SetHealth([]byte("reported after the raft cut")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the report crosses the raft cut by gossip", func() (bool, string) {
		for _, a := range rest {
			mem, _ := a.member.Member(old.id)
			if string(mem.Health) != "reported after the raft cut" {
				return false, fmt.Sprintf("%s holds %q", a.id, mem.Health)
			}
		}
		return true, ""
	})
	for _, m := range members {
		for _, mem := range m.Members() {
			if mem.Status != membership.StatusAlive {
				t.Fatalf("gossip saw %s %s across a Raft-only cut: %s", mem.Name, mem.Status, statuses(members...))
			}
		}
	}

	n.Heal()
	waitLeader(t, "all three follow one leader after Heal", agents...)
}
