package topology

import (
	"maps"
	"reflect"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func ts(d time.Duration) time.Time { return t0.Add(d) }

func TestLeaseExpired_Boundary(t *testing.T) {
	const d = 3 * time.Second
	for _, tc := range []struct {
		name    string
		elapsed time.Duration
		want    bool
	}{
		{"just renewed", 0, false},
		{"exactly the lease: still valid", d, false},
		{"a nanosecond past the lease", d + 1, true},
		{"renewed in the future (a late renewal read early)", -time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := LeaseExpired(t0, t0.Add(tc.elapsed), d); got != tc.want {
				t.Fatalf("LeaseExpired after %s = %v, want %v", tc.elapsed, got, tc.want)
			}
		})
	}
}

func TestLastHeard_Lost(t *testing.T) {
	const wait = 4 * time.Second
	hosts := []string{"h1", "h2"}
	for _, tc := range []struct {
		name  string
		table func() LastHeard
		now   time.Duration
		want  []string
	}{
		{
			name:  "never heard, first counted now: full wait",
			table: func() LastHeard { return NewLastHeard(ts(0)) },
			now:   10 * time.Second,
		},
		{
			name:  "heard within the wait",
			table: func() LastHeard { return NewLastHeard(ts(0)).Heard("h1", ts(time.Second)).Heard("h2", ts(time.Second)) },
			now:   5 * time.Second,
		},
		{
			name: "one host silent for longer than the wait",
			table: func() LastHeard {
				return NewLastHeard(ts(0)).Heard("h1", ts(time.Second)).Heard("h2", ts(6*time.Second))
			},
			now:  5*time.Second + 1,
			want: []string{"h1"},
		},
		{
			name:  "exactly the wait: not yet lost",
			table: func() LastHeard { return NewLastHeard(ts(0)).Heard("h1", ts(time.Second)).Heard("h2", ts(time.Second)) },
			now:   5 * time.Second,
		},
		{
			name: "counted at the term's first reconcile, never heard since",
			table: func() LastHeard {
				h, _ := NewLastHeard(ts(0)).Lost(hosts, ts(0), wait)
				return h
			},
			now:  wait + 1,
			want: []string{"h1", "h2"},
		},
		{
			name: "heard before the term started: counted from the term's start",
			table: func() LastHeard {
				return LastHeard{start: ts(10 * time.Second), at: map[string]time.Time{"h1": ts(0), "h2": ts(0)}}
			},
			now: 12 * time.Second,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, lost := tc.table().Lost(hosts, ts(tc.now), wait)
			want := map[string]bool{}
			for _, h := range tc.want {
				want[h] = true
			}
			if !maps.Equal(lost, want) {
				t.Fatalf("lost %v, want %v", lost, want)
			}
		})
	}
}

func TestLastHeard_NewHostGetsAFullWait(t *testing.T) {
	const wait = 4 * time.Second
	h := NewLastHeard(ts(0)).Heard("h1", ts(0))
	// h2 joins the topology long after the term started.
	h, lost := h.Lost([]string{"h1", "h2"}, ts(100*time.Second), wait)
	if !lost["h1"] || lost["h2"] {
		t.Fatalf("lost %v, want only h1", lost)
	}
	if _, lost = h.Lost([]string{"h2"}, ts(100*time.Second+wait), wait); lost["h2"] {
		t.Fatal("a host new to the topology was lost before a full wait")
	}
	if _, lost = h.Lost([]string{"h2"}, ts(100*time.Second+wait+1), wait); !lost["h2"] {
		t.Fatal("a host new to the topology and never heard was not lost after a full wait")
	}
}

func TestLastHeard_StepsDoNotMutate(t *testing.T) {
	h := NewLastHeard(ts(0)).Heard("h1", ts(time.Second))
	before := maps.Clone(h.at)
	h2 := h.Heard("h1", ts(2*time.Second)).Heard("h2", ts(2*time.Second))
	h3, _ := h.Lost([]string{"h1", "h3"}, ts(3*time.Second), time.Second)
	if !maps.Equal(h.at, before) {
		t.Fatalf("Heard or Lost changed the table they stepped from: %v, was %v", h.at, before)
	}
	if !h2.at["h1"].Equal(ts(2*time.Second)) || h3.at["h3"].IsZero() {
		t.Fatalf("next tables lack the step: %v, %v", h2.at, h3.at)
	}
	if late := h2.Heard("h1", ts(time.Second)); !late.at["h1"].Equal(ts(2 * time.Second)) {
		t.Fatal("a late report moved a host's last-heard time back")
	}
}

func TestFreshObservations_Age(t *testing.T) {
	const maxAge = 2 * time.Second
	reports := map[int]Received{
		1: {Observation: Observation{DBID: 1, Up: true}, At: ts(0)},
		2: {Observation: Observation{DBID: 2, Up: true}, At: ts(time.Second)},
		3: {Observation: Observation{DBID: 3, Failed: true}, At: ts(3 * time.Second)},
	}
	for _, tc := range []struct {
		name string
		now  time.Duration
		want []int
	}{
		{"all fresh", 2 * time.Second, []int{1, 2, 3}},
		{"exactly maxAge old is fresh", 3 * time.Second, []int{2, 3}},
		{"oldest gone", 3*time.Second + 1, []int{3}},
		{"all stale", 6 * time.Second, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := FreshObservations(reports, ts(tc.now), maxAge)
			want := map[int]Observation{}
			for _, d := range tc.want {
				want[d] = reports[d].Observation
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("fresh %v, want %v", got, want)
			}
		})
	}
}

func TestWithLostHosts_FailsEveryInstanceOnALostHost(t *testing.T) {
	topo := &Topology{ConfigVersion: 7, Segments: []Segment{
		{DBID: 1, Content: -1, Role: RolePrimary, Hostname: "h1"},
		{DBID: 2, Content: 0, Role: RolePrimary, Hostname: "h2"},
		{DBID: 3, Content: 0, Role: RoleMirror, Hostname: "h1"},
	}}
	obs := map[int]Observation{1: {DBID: 1, Up: true}, 2: {DBID: 2, Up: true}}
	before := maps.Clone(obs)
	t.Run("none lost: same observations", func(t *testing.T) {
		if got := WithLostHosts(topo, obs, nil); !reflect.DeepEqual(got, obs) {
			t.Fatalf("got %v, want %v", got, obs)
		}
	})
	t.Run("h1 lost", func(t *testing.T) {
		got := WithLostHosts(topo, obs, map[string]bool{"h1": true})
		want := map[int]Observation{
			1: {DBID: 1, Failed: true, ConfigVersion: 7},
			2: {DBID: 2, Up: true},
			3: {DBID: 3, Failed: true, ConfigVersion: 7},
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
		if !reflect.DeepEqual(obs, before) {
			t.Fatalf("WithLostHosts changed its input: %v, was %v", obs, before)
		}
	})
}

func TestTopology_Hosts(t *testing.T) {
	topo := &Topology{Segments: []Segment{{Hostname: "b"}, {Hostname: "a"}, {Hostname: "b"}}}
	if got := topo.Hosts(); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("Hosts() = %v", got)
	}
}

// An acknowledgement renews the lease only once the agent acts on a
// topology at least as recent as the leader's when it acknowledged,
// and then from when its report was sent.
func TestPendingRenewals_WaitForTheLeadersVersion(t *testing.T) {
	var p PendingRenewals
	p.Acked(ts(0), 5)
	if _, ok := p.Applied(4); ok {
		t.Fatal("renewed while the agent still acts on version 4, the leader had 5")
	}
	got, ok := p.Applied(5)
	if !ok || !got.Equal(ts(0)) {
		t.Fatalf("Applied(5) = %v, %v; want the send time %v", got, ok, ts(0))
	}
	if _, ok := p.Applied(9); ok {
		t.Fatal("an acknowledgement renewed twice")
	}
}

// The leader commits faster than a report's round trip: every
// acknowledgement names a version the agent applies only after it
// arrives. Each still renews once applied; none is lost behind a newer
// one still pending.
func TestPendingRenewals_LeaderAhead(t *testing.T) {
	var p PendingRenewals
	p.Acked(ts(0), 10)
	p.Acked(ts(time.Second), 12)
	got, ok := p.Applied(11)
	if !ok || !got.Equal(ts(0)) {
		t.Fatalf("Applied(11) = %v, %v; want the first report's send time", got, ok)
	}
	got, ok = p.Applied(12)
	if !ok || !got.Equal(ts(time.Second)) {
		t.Fatalf("Applied(12) = %v, %v; want the second report's send time", got, ok)
	}
	for i := range 2 * maxPendingRenewals {
		p.Acked(ts(time.Duration(i)*time.Second), 100+uint64(i))
	}
	if len(p.acks) > maxPendingRenewals {
		t.Fatalf("%d acknowledgements held, bound %d", len(p.acks), maxPendingRenewals)
	}
	got, ok = p.Applied(1000)
	if want := ts(time.Duration(2*maxPendingRenewals-1) * time.Second); !ok || !got.Equal(want) {
		t.Fatalf("Applied(1000) = %v, %v; want the newest %v", got, ok, want)
	}
}

// A host that reports but was never heard from this term (its reports all
// made on an older version: a client before its first topology answer, a
// replica replaying its log) gets one grace more than the wait; a host
// that never reported, or was heard once and went silent, does not.
func TestLastHeard_GraceForReportingNeverHeard(t *testing.T) {
	const wait, grace = 4 * time.Second, 4 * time.Second
	hosts := []string{"catching", "silent", "gone"}
	h, _ := NewLastHeard(ts(0)).LostWithGrace(hosts, ts(0), wait, grace)
	h = h.Heard("gone", ts(0)).Reported("gone").Reported("catching")
	_, lost := h.LostWithGrace(hosts, ts(wait+1), wait, grace)
	if lost["catching"] || !lost["silent"] || !lost["gone"] {
		t.Fatalf("at wait: lost %v, want silent and gone, not catching", lost)
	}
	_, lost = h.LostWithGrace(hosts, ts(wait+grace+1), wait, grace)
	if !lost["catching"] {
		t.Fatalf("at wait+grace: lost %v, want catching too (a stalled host is lost in the end)", lost)
	}
	// Heard once, it waits the plain wait from then on.
	h = h.Heard("catching", ts(time.Second))
	if _, lost = h.LostWithGrace(hosts, ts(time.Second+wait+1), wait, grace); !lost["catching"] {
		t.Fatalf("heard once then silent: lost %v, want catching after the plain wait", lost)
	}
	// Lost is LostWithGrace without a grace.
	h2 := NewLastHeard(ts(0)).Reported("catching")
	h2, _ = h2.Lost(hosts, ts(0), wait)
	if _, lost = h2.Lost(hosts, ts(wait+1), wait); !lost["catching"] {
		t.Fatalf("Lost: lost %v, want catching (no grace)", lost)
	}
}

// NextLost names the instant the first host not yet lost will be: a host
// heard counts lost wait after, a catching-up one wait plus grace after
// it was first counted, one never seen wait after now; a host lost
// already is not counted.
func TestLastHeard_NextLost(t *testing.T) {
	start := time.Unix(1000, 0)
	wait, grace := 4*time.Second, 4*time.Second
	hosts := []string{"a", "b"}
	h := NewLastHeard(start).Heard("a", start.Add(time.Second)).Reported("b")
	now := start.Add(2 * time.Second)
	h, _ = h.LostWithGrace(hosts, now, wait, grace) // b first counted at 2 s
	at, ok := h.NextLost(hosts, now, wait, grace)
	if !ok || !at.Equal(start.Add(5*time.Second)) {
		t.Fatalf("next loss %v %v, want a's at start+5s", at, ok)
	}
	now = start.Add(6 * time.Second)
	if _, lost := h.LostWithGrace(hosts, now, wait, grace); !lost["a"] || lost["b"] {
		t.Fatalf("lost %v at start+6s, want a only", lost)
	}
	at, ok = h.NextLost(hosts, now, wait, grace)
	if !ok || !at.Equal(start.Add(10*time.Second)) {
		t.Fatalf("next loss %v %v, want b's at start+10s (2 s + wait + grace)", at, ok)
	}
	if _, lost := h.LostWithGrace(hosts, at.Add(time.Millisecond), wait, grace); !lost["b"] {
		t.Fatal("b not lost just past its next loss")
	}
	// A host never seen: wait after now.
	at, _ = h.NextLost([]string{"a", "c"}, now, wait, grace)
	if !at.Equal(now.Add(wait)) {
		t.Fatalf("next loss %v, want c's at now+wait", at)
	}
	if _, ok := h.NextLost([]string{"a"}, now, wait, grace); ok {
		t.Fatal("a next loss among hosts all lost already")
	}
}

// Hear (in place) leaves the table as Heard (a copy) does, whatever the
// order of the times heard: a later time moves a host, an earlier one
// does not, and either marks it heard.
func TestLastHeard_HearIsHeardInPlace(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pure := NewLastHeard(start)
	inPlace := NewLastHeard(start)
	hosts := []string{"h1", "h2", "h3"}
	steps := []struct {
		host string
		at   int
	}{{"h1", 3}, {"h2", 1}, {"h1", 2}, {"h1", 5}, {"h3", 0}, {"h2", 1}, {"h3", 4}}
	for i, st := range steps {
		at := start.Add(time.Duration(st.at) * time.Second)
		pure = pure.Heard(st.host, at)
		inPlace.Hear(st.host, at)
		now := start.Add(time.Duration(i+6) * time.Second)
		_, lostP := pure.Lost(hosts, now, 3*time.Second)
		_, lostI := inPlace.Lost(hosts, now, 3*time.Second)
		if !maps.Equal(lostP, lostI) || !maps.Equal(pure.at, inPlace.at) || !maps.Equal(pure.heard, inPlace.heard) {
			t.Fatalf("step %d (%s at %d): Heard %v %v lost %v, Hear %v %v lost %v", i, st.host, st.at, pure.at, pure.heard, lostP, inPlace.at, inPlace.heard, lostI)
		}
	}
}
