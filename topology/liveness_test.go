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

// TestCommitTimes_RenewVersion: a report must have been made on the
// version committed lag ago; before anything that old is known (the term
// just began), on the oldest version recorded.
func TestCommitTimes_RenewVersion(t *testing.T) {
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	c := NewCommitTimes(time.Second)
	if got := c.RenewVersion(ms(0)); got != 0 {
		t.Fatalf("empty record: renew version %d, want 0", got)
	}
	c = c.Committed(5, ms(0)).Committed(6, ms(400)).Committed(7, ms(800)).Committed(8, ms(1300))
	for _, tc := range []struct {
		now  int
		want uint64
	}{
		{0, 5},    // the term's first version: nothing older is known
		{999, 5},  // nothing is a second old yet
		{1000, 5}, // 5 is exactly a second old
		{1399, 5},
		{1400, 6}, // 6 is a second old: a report on 5 no longer renews
		{1800, 7},
		{2299, 7},
		{2300, 8},
		{9000, 8}, // no commit since: the latest
	} {
		if got := c.RenewVersion(ms(tc.now)); got != tc.want {
			t.Errorf("at %d ms: renew version %d, want %d", tc.now, got, tc.want)
		}
	}
}

// TestCommitTimes_Committed: a version no newer than the latest changes
// nothing; a time before the latest is taken as the latest; a step does
// not change the record it stepped from; old entries are dropped.
func TestCommitTimes_Committed(t *testing.T) {
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	c := NewCommitTimes(time.Second).Committed(5, ms(0)).Committed(7, ms(500))
	if got := c.Committed(6, ms(600)); !reflect.DeepEqual(got, c) {
		t.Fatalf("an older version changed the record: %+v, was %+v", got, c)
	}
	// 8 seen "at 100 ms", before 7 was: taken as seen at 500 ms.
	late := c.Committed(8, ms(100))
	if got := late.RenewVersion(ms(1499)); got != 5 {
		t.Fatalf("renew version %d at 1499 ms, want 5", got)
	}
	if got := late.RenewVersion(ms(1500)); got != 8 {
		t.Fatalf("renew version %d at 1500 ms, want 8 (7 and 8 both taken as seen at 500 ms)", got)
	}
	if len(c.seen) != 2 {
		t.Fatalf("the step changed the record it stepped from: %+v", c)
	}
	long := NewCommitTimes(time.Second)
	for i := range 1000 {
		long = long.Committed(uint64(i+1), ms(100*i))
	}
	if n := len(long.seen); n > 12 {
		t.Fatalf("%d entries kept for a lag of 10 commits", n)
	}
	if got := long.RenewVersion(ms(100 * 999)); got != 990 {
		t.Fatalf("renew version %d after pruning, want 990", got)
	}
}
