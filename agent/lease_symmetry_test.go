package agent

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

// TestLease_NeverOutlivesTheLeadersCount: the agent renews its lease from
// a report only if the leader counts the host heard from that report (or
// later), whatever reports and answers are lost and however fast the
// leader commits. Otherwise the leader, waiting lease plus margin from
// what it heard, could promote a mirror while the agent's primary still
// holds its lease (safety rule 5). Each round: the leader has committed
// some version, the agent's replica has applied some version up to it,
// its report (made on that version) reaches the leader or is lost, and
// the answer reaches the agent or is lost.
//
// The rule applied the held acknowledgements on the replica's version at
// the time (in the round and in the fence watch): with the next report
// lost, the lease ran up to a probe interval past the leader's count.
func TestLease_NeverOutlivesTheLeadersCount(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		clock := newJumpClock()
		a := &Agent{
			cfg:   &Config{Lease: 3 * time.Second, LeaseMargin: time.Second},
			log:   slog.New(slog.NewTextHandler(io.Discard, nil)),
			clock: clock,
			lease: &lease{renewedCh: make(chan struct{}, 1)},
		}
		e := &executor{a: a}
		a.exec = e
		l := newLeader(a)
		l.heard = topology.NewLastHeard(clock.Now())
		topo := &topology.Topology{Segments: []topology.Segment{{DBID: 2, Content: 0, Role: topology.RolePrimary, Hostname: "h1"}}}
		l.lostHosts(topo, clock.Now()) // the term's first count
		var committed, applied uint64 = 5, 5
		for i := range rapid.IntRange(1, 40).Draw(rt, "rounds") {
			sent := drawRound(rt, i, clock, &committed, &applied)
			reports := []api.InstanceReport{{DBID: 2, Host: "h1", Up: true, ConfigVersion: applied}}
			if !rapid.Bool().Draw(rt, fmt.Sprintf("reportLost%d", i)) {
				l.accept("h1", reports, committed)
				if !rapid.Bool().Draw(rt, fmt.Sprintf("answerLost%d", i)) {
					e.acknowledged(sent, reports, committed)
				}
			}
			// Renewed later than the leader heard: lost to the leader at
			// heard+lease+margin while the lease runs to renewed+lease.
			leaseNotPastHeard(rt, i, a, l)
		}
	})
}

// leaseNotPastHeard fails round i if a's lease was renewed later than
// the leader l last heard h1: the leader would count h1 lost at
// heard+lease+margin while its lease runs to renewed+lease.
func leaseNotPastHeard(rt *rapid.T, i int, a *Agent, l *leader) {
	a.lease.mu.Lock()
	renewed := a.lease.renewed
	a.lease.mu.Unlock()
	l.mu.Lock()
	_, later := l.heard.Lost([]string{"h1"}, renewed, 0)
	l.mu.Unlock()
	if later["h1"] {
		rt.Fatalf("round %d: the lease was renewed to %s, later than the leader last heard h1", i, renewed.Sub(newJumpClock().Now()))
	}
}

// drawRound draws round i of a lease property run: time passes, the
// leader commits 0-2 entries, the agent's applied version falls behind
// by up to what is committed; it returns the round's send time.
func drawRound(rt *rapid.T, i int, clock *jumpClock, committed, applied *uint64) time.Time {
	clock.advance(time.Duration(rapid.IntRange(1, 1500).Draw(rt, fmt.Sprintf("intervalMs%d", i))) * time.Millisecond)
	*committed += uint64(rapid.IntRange(0, 2).Draw(rt, fmt.Sprintf("commits%d", i)))
	*applied = max(*applied, *committed-uint64(rapid.IntRange(0, int(*committed-*applied)).Draw(rt, fmt.Sprintf("behind%d", i))))
	return clock.Now()
}
