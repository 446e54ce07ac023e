package agent

import (
	"io"
	"log/slog"
	"slices"
	"sync"
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
	l := newTermLeader(clock, nil) // as lead sets it up at a term's start
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
	l := newTermLeader(clock, nil)
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
	l := newTermLeader(clock, nil)
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
	l := newTermLeader(clock, nil)
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

// newTermLeader is a leader at the start of a term on clock, as lead sets
// it up (lease 3 s, margin 1 s, a probe a second), over node (nil: none).
func newTermLeader(clock *jumpClock, node clusterNode) *leader {
	a := &Agent{
		cfg:   &Config{Lease: 3 * time.Second, LeaseMargin: time.Second, ProbeInterval: time.Second, ProbeTimeout: 500 * time.Millisecond},
		log:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		clock: clock,
		node:  node,
	}
	a.lead = newLeader(a)
	a.lead.heard = topology.NewLastHeard(clock.Now())
	return a.lead
}

// fakeLeaderNode is a leader's cluster state for tests of the report
// handler: it leads, and its topology is what the test commits.
type fakeLeaderNode struct {
	*clientNode
	mu    sync.Mutex
	t     *topology.Topology
	views topology.ViewChanges // as the FSM follows every commit
}

func (f *fakeLeaderNode) ViewSince(host string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.views.Since(host)
}

func (f *fakeLeaderNode) RolesSince(host string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.views.RolesSince(host)
}

func (f *fakeLeaderNode) IsLeader() bool { return true }
func (f *fakeLeaderNode) Topology() *topology.Topology {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}
func (f *fakeLeaderNode) commit(t *topology.Topology) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.views.Apply(f.t, t) // nil before the first commit: every view new
	f.t = t
}

// While the leader commits faster than a probe round (gpbench scale at
// 100 agents: 12-15 entries a second through init, a client's round
// 1-2.5 s), a host whose reports are made on its current view is heard,
// and the acknowledgement names a version its report reaches: its view
// has not changed since, so it acts on the current topology. A host whose
// view changes at every commit but whose roles do not (its mirror marked
// down and up again on another host) is heard too: the lease is
// acknowledged on its roles (leader.leaseVersion), and through a
// 1,000-host init every commit touched every host's view, so no lease was
// renewed while report round trips took seconds. A host whose primary
// was demoted after the version it reports on is not heard, and is lost
// after lease plus margin (plus the catch-up grace of a host never heard
// this term): a report made before the demotion renews nothing.
func TestLeader_ReportOnAnUnchangedViewIsCurrent(t *testing.T) {
	clock := newJumpClock()
	node := &fakeLeaderNode{clientNode: newClientNode(false)}
	l := newTermLeader(clock, node)
	a := l.a
	segs := []topology.Segment{
		{DBID: 2, Content: 0, Role: topology.RolePrimary, Hostname: "h1", Status: topology.StatusUp},
		{DBID: 3, Content: 0, Role: topology.RoleMirror, Hostname: "h2", Status: topology.StatusUp},
		{DBID: 4, Content: 1, Role: topology.RolePrimary, Hostname: "h3", Status: topology.StatusUp},
		{DBID: 5, Content: 1, Role: topology.RoleMirror, Hostname: "h4", Status: topology.StatusUp},
		{DBID: 6, Content: 2, Role: topology.RolePrimary, Hostname: "h5", Status: topology.StatusUp},
		{DBID: 7, Content: 2, Role: topology.RoleMirror, Hostname: "h6", Status: topology.StatusUp},
	}
	version := uint64(10)
	node.commit(&topology.Topology{ConfigVersion: version, Segments: slices.Clone(segs)})
	l.lostHosts(node.Topology(), clock.Now())
	// Version 11: h5's primary demoted, h6's mirror promoted.
	version++
	segs[4].Role, segs[4].Status, segs[5].Role = topology.RoleMirror, topology.StatusDown, topology.RolePrimary
	node.commit(&topology.Topology{ConfigVersion: version, Segments: slices.Clone(segs)})
	for i := range 9 {
		// Three commits a second, each about content 1 (h3 and h4).
		for range 3 {
			version++
			segs[3].Status = map[topology.Status]topology.Status{topology.StatusUp: topology.StatusDown, topology.StatusDown: topology.StatusUp}[segs[3].Status]
			node.commit(&topology.Topology{ConfigVersion: version, Segments: slices.Clone(segs)})
			// The leader sees every commit (its own FSM).
			a.acceptReport(api.Report{Agent: "h2", Instances: []api.InstanceReport{{DBID: 3, Up: true, ConfigVersion: version}}})
		}
		clock.advance(time.Second)
		// h1's view (content 0) has not changed since version 10; its
		// client's query lags, so it reports on a version 2 behind.
		made := version - 2
		ack := a.acceptReport(api.Report{Agent: "h1", Instances: []api.InstanceReport{{DBID: 2, Up: true, ConfigVersion: made}}})
		if ack.ConfigVersion > made || ack.LeaseVersion > made {
			t.Fatalf("at %d s: h1's report made on %d acknowledged at %d (lease %d): its lease would not renew, though its view is unchanged since 10", i+1, made, ack.ConfigVersion, ack.LeaseVersion)
		}
		// h3's view changed at every commit, and its reports stay on
		// version 10 (its queries do not get through): its view is
		// stale, its roles are not.
		ack = a.acceptReport(api.Report{Agent: "h3", Instances: []api.InstanceReport{{DBID: 4, Up: true, ConfigVersion: 10}}})
		if ack.ConfigVersion != version || ack.LeaseVersion != 10 {
			t.Fatalf("at %d s: h3's report acknowledged at %d, lease %d, want %d (its view changed at the last commit) and 10 (its roles did not)", i+1, ack.ConfigVersion, ack.LeaseVersion, version)
		}
		// h5 reports on version 10, before its primary's demotion.
		ack = a.acceptReport(api.Report{Agent: "h5", Instances: []api.InstanceReport{{DBID: 6, Up: true, ConfigVersion: 10}}})
		if ack.LeaseVersion != 11 {
			t.Fatalf("at %d s: h5's report acknowledged with lease version %d, want 11 (its primary demoted there)", i+1, ack.LeaseVersion)
		}
		a.acceptReport(api.Report{Agent: "h2", Instances: []api.InstanceReport{{DBID: 3, Up: true, ConfigVersion: version}}})
		a.acceptReport(api.Report{Agent: "h4", Instances: []api.InstanceReport{{DBID: 5, Up: true, ConfigVersion: version}}})
		a.acceptReport(api.Report{Agent: "h6", Instances: []api.InstanceReport{{DBID: 7, Up: true, ConfigVersion: version}}})
	}
	lost := l.lostHosts(node.Topology(), clock.Now())
	if !lost["h5"] || len(lost) != 1 {
		t.Fatalf("lost %v, want h5 only (its reports made before its primary's demotion for 9 s; h3's roles unchanged, h1's view unchanged)", lost)
	}
}

// A report that repeats the last one does not wake the reconcile loop
// (the tick still runs it): an idle cluster of N hosts would otherwise
// reconcile every content N times a probe interval. News wakes it: a
// changed state, a report after a long gap (the last may have gone
// stale), and an LSN only while a switchover waits on one.
func TestLeader_OnlyNewsWakesTheReconcile(t *testing.T) {
	clock := newJumpClock()
	node := &fakeLeaderNode{clientNode: newClientNode(false)}
	node.commit(&topology.Topology{ConfigVersion: 5})
	l := newTermLeader(clock, node)
	woken := func() bool {
		select {
		case <-l.wake:
			return true
		default:
			return false
		}
	}
	primary := api.InstanceReport{DBID: 2, Up: true, ConfigVersion: 5, LSNValue: 100, SyncedMirrors: []int{3}}
	steps := []struct {
		what    string
		advance time.Duration
		change  func(r *api.InstanceReport)
		switchv bool
		want    bool
	}{
		{"first report", 0, nil, false, true},
		{"the same again", time.Second, nil, false, false},
		{"only the LSN moved", time.Second, func(r *api.InstanceReport) { r.LSNValue = 200 }, false, false},
		{"the mirror no longer vouched", time.Second, func(r *api.InstanceReport) { r.SyncedMirrors = nil }, false, true},
		{"the same after a gap", 2 * time.Second, nil, false, true},
		{"the LSN moved during a switchover", time.Second, func(r *api.InstanceReport) { r.LSNValue = 300 }, true, true},
		{"failed", time.Second, func(r *api.InstanceReport) { r.Up, r.Failed = false, true }, false, true},
	}
	for _, s := range steps {
		clock.advance(s.advance)
		if s.change != nil {
			s.change(&primary)
		}
		sw := &topology.Topology{ConfigVersion: 5}
		if s.switchv {
			sw.Switchovers = []topology.Switchover{{Content: 0}}
		}
		node.commit(sw)
		l.accept("h1", []api.InstanceReport{primary}, 5)
		if got := woken(); got != s.want {
			t.Errorf("%s: woken %v, want %v", s.what, got, s.want)
		}
	}
}

// A reconcile is skipped only when nothing it decides from has changed
// since one that found nothing to do: the same topology, no report with
// news, the same hosts lost, no report aged out. Each of those changes
// makes the next one decide again, and a failure reported after a quiet
// spell is acted on (the promotion is decided).
func TestLeader_QuietReconcileSkipsOnlyWhatFindsNothing(t *testing.T) {
	clock := newJumpClock()
	node := &fakeLeaderNode{clientNode: newClientNode(false)}
	topo := &topology.Topology{ConfigVersion: 5, ClusterID: "c", Segments: []topology.Segment{
		{DBID: 2, Content: 0, Role: topology.RolePrimary, PreferredRole: topology.RolePrimary, Status: topology.StatusUp, Mode: topology.ModeSynced, Hostname: "h1"},
		{DBID: 3, Content: 0, Role: topology.RoleMirror, PreferredRole: topology.RoleMirror, Status: topology.StatusUp, Mode: topology.ModeSynced, Hostname: "h2"},
	}}
	node.commit(topo)
	l := newTermLeader(clock, node)
	primary := api.InstanceReport{DBID: 2, Up: true, ConfigVersion: 5, SyncedMirrors: []int{3}}
	mirror := api.InstanceReport{DBID: 3, Up: true, Recovery: true, Streaming: true, ConfigVersion: 5}
	both := func() {
		l.accept("h1", []api.InstanceReport{primary}, 5)
		l.accept("h2", []api.InstanceReport{mirror}, 5)
	}
	decided := func() uint64 { return l.a.counts.reconcilesDecided.Load() }
	step := func(what string, wantDecide bool) {
		t.Helper()
		before := decided()
		l.reconcile(t.Context())
		if got := decided() > before; got != wantDecide {
			t.Fatalf("%s: decided %v, want %v", what, got, wantDecide)
		}
	}
	both()
	step("first", true)
	if l.quiet.t != topo {
		t.Fatal("a reconcile that found nothing to do recorded no quiet inputs")
	}
	step("nothing new", false)
	clock.advance(time.Second)
	both() // the same reports again: no news
	step("the same reports again", false)
	clock.advance(3 * time.Second) // past half the freshness (1.75 s), within it (3.5 s)
	both()
	step("the same reports after a gap", false)

	node.commit(&topology.Topology{ConfigVersion: 6, ClusterID: "c", Segments: topo.Segments})
	primary.ConfigVersion, mirror.ConfigVersion = 6, 6
	both()
	step("a new topology", true)
	step("quiet on it", false)

	clock.advance(time.Second)
	primary.SyncedMirrors = nil // news: the primary no longer vouches its mirror
	both()
	step("a report with news", true)

	clock.advance(time.Second)
	primary.SyncedMirrors = []int{3}
	both()
	step("vouched again", true)
	step("quiet again", false)

	// Only h1 reports from now on, the same each time: h2's report ages
	// out, then h2 counts lost; each is decided on.
	before := decided()
	for range 5 {
		clock.advance(time.Second)
		l.accept("h1", []api.InstanceReport{primary}, 6)
		l.reconcile(t.Context())
	}
	if decided() == before {
		t.Fatal("h2's silence (its report aged out, the host lost) was never decided on")
	}
	if in := l.inputs(node.Topology(), l.lostHosts(node.Topology(), clock.Now()), clock.Now(), time.Second); !in.lost["h2"] {
		t.Fatalf("h2 not lost after 5 s of silence: %v", in.lost)
	}

	// A failure of the primary after a quiet spell is decided on.
	primary.Up, primary.Failed = false, true
	l.accept("h1", []api.InstanceReport{primary}, 6)
	step("the primary failed", true)
}
