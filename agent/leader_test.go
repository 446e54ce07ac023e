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

// TestLeader_HeardOnlyWithLease: while the leader commits a version every
// 200 ms, an agent whose reports are made one version behind the
// committed one (it applies, a moment late) renews its lease and is
// heard; one whose reports stay on a version the leader committed past
// more than lease/3 ago (its Raft stalled while its API is open) does not
// renew, so it is not counted heard: it is lost after lease plus margin,
// not heard for ever with its primaries fenced. The ack's renew version
// is what the leader compared with.
func TestLeader_HeardOnlyWithLease(t *testing.T) {
	clock := newJumpClock()
	a := &Agent{
		cfg:   &Config{Lease: 3 * time.Second, LeaseMargin: time.Second},
		log:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		clock: clock,
	}
	l := newLeader(a)
	// As a term starts: its tables, and the version its barrier applied.
	l.heard = topology.NewLastHeard(clock.Now())
	l.commits = topology.NewCommitTimes(renewLag(a.cfg.Lease)).Committed(7, clock.Now())
	topo := &topology.Topology{ConfigVersion: 7, Segments: []topology.Segment{
		{DBID: 2, Content: 0, Role: topology.RolePrimary, Hostname: "h1"},
		{DBID: 3, Content: 0, Role: topology.RoleMirror, Hostname: "h2"},
	}}
	l.lostHosts(topo, clock.Now()) // as the reconcile loop does from the term's start
	committed := uint64(7)
	for range 35 { // 7 s: lease/3, lease and margin, and some
		clock.advance(200 * time.Millisecond)
		committed++
		renew := l.accept("h1", []api.InstanceReport{{DBID: 2, Up: true, ConfigVersion: 7}}, committed) // stalled at 7
		// 8 was committed 200 ms into the term: lease/3 later, 7 is too old.
		if topology.RenewsLease(7, renew) && committed >= 8+uint64(renewLag(a.cfg.Lease)/(200*time.Millisecond)) {
			t.Fatalf("committed %d: the ack renews a lease on version 7 (renew version %d), more than lease/3 behind", committed, renew)
		}
		renew = l.accept("h2", []api.InstanceReport{{DBID: 3, Up: true, ConfigVersion: committed - 1}}, committed) // a commit behind
		if !topology.RenewsLease(committed-1, renew) {
			t.Fatalf("committed %d: the ack does not renew a lease on version %d, one commit behind (renew version %d)", committed, committed-1, renew)
		}
	}
	lost := l.lostHosts(topo, clock.Now())
	if !lost["h1"] || lost["h2"] {
		t.Fatalf("lost %v, want h1 (its reports stay on a version committed past long ago: no lease) and not h2", lost)
	}
}
