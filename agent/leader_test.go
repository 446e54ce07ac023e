package agent

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

// The leader counts a host lost on its own clock, lease plus margin after
// it last heard from it (or after its term started), and acts only on
// reports fresh on that clock.
func TestLeader_LostHostsAndStaleReportsOnTheAgentClock(t *testing.T) {
	clock := newJumpClock()
	a := &Agent{
		cfg:   &Config{Lease: 3 * time.Second, LeaseMargin: time.Second},
		log:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		clock: clock,
	}
	l := newLeader(a)
	l.heard = topology.NewLastHeard(clock.Now()) // as lead does at a term's start
	topo := &topology.Topology{Segments: []topology.Segment{
		{DBID: 2, Content: 0, Role: topology.RolePrimary, Hostname: "h1"},
		{DBID: 3, Content: 0, Role: topology.RoleMirror, Hostname: "h2"},
	}}
	if lost := l.lostHosts(topo, clock.Now()); len(lost) != 0 {
		t.Fatalf("lost at the term's start: %v", lost)
	}
	clock.advance(3 * time.Second)
	l.accept("h1", []api.InstanceReport{{DBID: 2, Up: true}}, 0)
	clock.advance(time.Second)
	if lost := l.lostHosts(topo, clock.Now()); len(lost) != 0 {
		t.Fatalf("lost after exactly lease+margin: %v", lost)
	}
	clock.advance(time.Millisecond)
	if lost := l.lostHosts(topo, clock.Now()); !lost["h2"] || lost["h1"] {
		t.Fatalf("lost %v, want only h2 (never heard this term)", lost)
	}
	if obs := l.observations(clock.Now(), time.Second); len(obs) != 0 {
		t.Fatalf("a report 1.001 s old is fresh for maxAge 1 s: %v", obs)
	}
	if obs := l.observations(clock.Now(), 2*time.Second); !obs[2].Up {
		t.Fatalf("a fresh report was dropped: %v", obs)
	}
}

// TestLeader_HeardOnlyWithLease: reports made on a config version older
// than the leader's committed one do not renew the sender's lease (it must
// apply the topology first), so they do not count the host heard: a
// follower whose Raft is stalled while its API is open is lost after
// lease plus margin, not heard for ever with its primaries fenced.
func TestLeader_HeardOnlyWithLease(t *testing.T) {
	clock := newJumpClock()
	a := &Agent{
		cfg:   &Config{Lease: 3 * time.Second, LeaseMargin: time.Second},
		log:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		clock: clock,
	}
	l := newLeader(a)
	l.heard = topology.NewLastHeard(clock.Now())
	topo := &topology.Topology{ConfigVersion: 7, Segments: []topology.Segment{
		{DBID: 2, Content: 0, Role: topology.RolePrimary, Hostname: "h1"},
		{DBID: 3, Content: 0, Role: topology.RoleMirror, Hostname: "h2"},
	}}
	l.lostHosts(topo, clock.Now()) // as the reconcile loop does from the term's start
	for range 5 {
		clock.advance(time.Second)
		l.accept("h1", []api.InstanceReport{{DBID: 2, Up: true, ConfigVersion: 6}}, 7) // stalled at 6
		l.accept("h2", []api.InstanceReport{{DBID: 3, Up: true, ConfigVersion: 7}}, 7)
	}
	// Past lease plus margin, h1 (never heard this term, yet reporting)
	// is in its catch-up grace; past one more wait it is lost.
	if lost := l.lostHosts(topo, clock.Now()); len(lost) != 0 {
		t.Fatalf("lost %v at 5 s, want none: h1 reports, never heard yet, and gets a grace", lost)
	}
	for range 4 {
		clock.advance(time.Second)
		l.accept("h1", []api.InstanceReport{{DBID: 2, Up: true, ConfigVersion: 6}}, 7)
		l.accept("h2", []api.InstanceReport{{DBID: 3, Up: true, ConfigVersion: 7}}, 7)
	}
	lost := l.lostHosts(topo, clock.Now())
	if !lost["h1"] || lost["h2"] {
		t.Fatalf("lost %v, want h1 (its reports lag the committed version: no lease) and not h2", lost)
	}
	if !topology.RenewsLease(7, 7) || !topology.RenewsLease(8, 7) || topology.RenewsLease(6, 7) {
		t.Fatal("RenewsLease: a report renews the lease exactly when made on the committed version or later")
	}
}

// While the leader commits faster than a report's round trip, every
// report is made one version behind the leader's at its arrival; each
// next report shows that version applied. Such an agent is heard (its
// lease is renewed the same way, topology.PendingRenewals), where a
// stalled one (above) is lost.
func TestLeader_HeardWhileTheLeaderCommitsAhead(t *testing.T) {
	clock := newJumpClock()
	a := &Agent{
		cfg:   &Config{Lease: 3 * time.Second, LeaseMargin: time.Second},
		log:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		clock: clock,
	}
	l := newLeader(a)
	l.heard = topology.NewLastHeard(clock.Now())
	topo := &topology.Topology{ConfigVersion: 7, Segments: []topology.Segment{
		{DBID: 2, Content: 0, Role: topology.RolePrimary, Hostname: "h1"},
		{DBID: 3, Content: 0, Role: topology.RoleMirror, Hostname: "h2"},
	}}
	l.lostHosts(topo, clock.Now())
	// 9 s: past lease plus margin, and past h2's catch-up grace (it
	// reports, never heard this term) of one more.
	for i := range 9 {
		clock.advance(time.Second)
		v := uint64(10 + i)
		l.accept("h1", []api.InstanceReport{{DBID: 2, Up: true, ConfigVersion: v}}, v+1) // always one behind
		l.accept("h2", []api.InstanceReport{{DBID: 3, Up: true, ConfigVersion: 6}}, v+1) // stalled
	}
	lost := l.lostHosts(topo, clock.Now())
	if lost["h1"] || !lost["h2"] {
		t.Fatalf("lost %v, want h2 (stalled) and not h1 (one entry behind a busy leader)", lost)
	}
}

// A host whose first reports of the term are all made on an older version
// than the leader's (a client agent before its topology query answers, a
// replica replaying its log at init) is not counted lost at lease plus
// margin before it was ever heard: it is catching up. Once it catches up
// it is heard, and never counted lost on the way (docs/scale.md: mirrors
// marked down at init on hosts that had not caught up yet).
func TestLeader_CatchingUpHostNotLostBeforeHeard(t *testing.T) {
	clock := newJumpClock()
	a := &Agent{
		cfg:   &Config{Lease: 3 * time.Second, LeaseMargin: time.Second},
		log:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		clock: clock,
	}
	l := newLeader(a)
	l.heard = topology.NewLastHeard(clock.Now())
	topo := &topology.Topology{ConfigVersion: 20, Segments: []topology.Segment{
		{DBID: 2, Content: 0, Role: topology.RolePrimary, Hostname: "h1"},
		{DBID: 3, Content: 0, Role: topology.RoleMirror, Hostname: "h2"},
	}}
	l.lostHosts(topo, clock.Now())
	for i := range 7 {
		clock.advance(time.Second)
		l.accept("h1", []api.InstanceReport{{DBID: 2, Up: true, ConfigVersion: uint64(1 + i)}}, 20) // catching up
		l.accept("h2", []api.InstanceReport{{DBID: 3, Up: true, ConfigVersion: 20}}, 20)
		if lost := l.lostHosts(topo, clock.Now()); len(lost) != 0 {
			t.Fatalf("at %d s: lost %v, want none (h1 reports, catching up)", i+1, lost)
		}
	}
	clock.advance(time.Second)
	l.accept("h1", []api.InstanceReport{{DBID: 2, Up: true, ConfigVersion: 20}}, 20) // caught up
	for range 3 {
		clock.advance(time.Second)
		l.accept("h1", []api.InstanceReport{{DBID: 2, Up: true, ConfigVersion: 20}}, 20)
		l.accept("h2", []api.InstanceReport{{DBID: 3, Up: true, ConfigVersion: 20}}, 20)
		if lost := l.lostHosts(topo, clock.Now()); len(lost) != 0 {
			t.Fatalf("after catching up: lost %v, want none", lost)
		}
	}
}
