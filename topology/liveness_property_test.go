package topology

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestLastHeard_Property drives a term's table through random reports
// (some late, arriving with an older time) and reconciles over a changing
// set of hosts, and checks the lease rule from both sides: a host is never
// lost before wait has passed since it was last heard from, first counted,
// or the term started; and it is lost as soon as that much has passed.
// No step changes the table it stepped from.
func TestLastHeard_Property(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		wait := time.Duration(rapid.IntRange(1, 5000).Draw(rt, "waitMs")) * time.Millisecond
		start := t0.Add(time.Duration(rapid.IntRange(0, 1000).Draw(rt, "startMs")) * time.Millisecond)
		h := NewLastHeard(start)
		now := start
		allHosts := []string{"h0", "h1", "h2", "h3"}
		// The model: when each host's wait started (last heard, or first
		// counted), never earlier than the term's start.
		since := map[string]time.Time{}
		for i := range rapid.IntRange(1, 60).Draw(rt, "steps") {
			now = now.Add(time.Duration(rapid.IntRange(0, int(3*wait/time.Millisecond)).Draw(rt, fmt.Sprintf("advanceMs%d", i))) * time.Millisecond)
			before := maps.Clone(h.at)
			prev := h
			if rapid.Bool().Draw(rt, fmt.Sprintf("report%d", i)) {
				host := rapid.SampledFrom(allHosts).Draw(rt, fmt.Sprintf("host%d", i))
				// A report may be stamped a little before now (it queued).
				sent := now.Add(-time.Duration(rapid.IntRange(0, 500).Draw(rt, fmt.Sprintf("lateMs%d", i))) * time.Millisecond)
				h = h.Heard(host, sent)
				if s, ok := since[host]; !ok || sent.After(s) {
					since[host] = maxTime(sent, start)
				}
			} else {
				hosts := rapid.SliceOfDistinct(rapid.SampledFrom(allHosts), func(s string) string { return s }).Draw(rt, fmt.Sprintf("hosts%d", i))
				var lost map[string]bool
				h, lost = h.Lost(hosts, now, wait)
				for host := range lost {
					if !slices.Contains(hosts, host) {
						rt.Fatalf("step %d: lost %s, which was not asked about", i, host)
					}
				}
				for _, host := range hosts {
					s, ok := since[host]
					switch {
					case !ok && lost[host]:
						rt.Fatalf("step %d: %s lost at its first count", i, host)
					case !ok:
						since[host] = maxTime(now, start)
					case lost[host] && now.Sub(s) <= wait:
						rt.Fatalf("step %d: %s lost %s after its wait started (wait %s)", i, host, now.Sub(s), wait)
					case !lost[host] && now.Sub(s) > wait:
						rt.Fatalf("step %d: %s not lost %s after its wait started (wait %s)", i, host, now.Sub(s), wait)
					}
				}
			}
			if !maps.Equal(prev.at, before) {
				rt.Fatalf("step %d changed the table it stepped from", i)
			}
		}
	})
}

// TestFreshObservations_Property: exactly the reports at most maxAge old
// are kept, unchanged, and the input is left alone.
func TestFreshObservations_Property(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		maxAge := time.Duration(rapid.IntRange(0, 5000).Draw(rt, "maxAgeMs")) * time.Millisecond
		now := t0.Add(time.Hour)
		reports := map[int]Received{}
		for dbid := range rapid.IntRange(0, 8).Draw(rt, "n") {
			age := time.Duration(rapid.IntRange(-100, 10000).Draw(rt, fmt.Sprintf("ageMs%d", dbid))) * time.Millisecond
			reports[dbid] = Received{Observation: Observation{DBID: dbid, Up: rapid.Bool().Draw(rt, fmt.Sprintf("up%d", dbid))}, At: now.Add(-age)}
		}
		before := maps.Clone(reports)
		got := FreshObservations(reports, now, maxAge)
		if !reflect.DeepEqual(reports, before) {
			rt.Fatal("FreshObservations changed its input")
		}
		for dbid, r := range reports {
			o, ok := got[dbid]
			if fresh := now.Sub(r.At) <= maxAge; ok != fresh {
				rt.Fatalf("dbid %d, %s old (maxAge %s): kept %v", dbid, now.Sub(r.At), maxAge, ok)
			}
			if ok && !reflect.DeepEqual(o, r.Observation) {
				rt.Fatalf("dbid %d: observation changed: %+v, was %+v", dbid, o, r.Observation)
			}
		}
		if len(got) > len(reports) {
			rt.Fatalf("FreshObservations made up observations: %v", got)
		}
	})
}

// TestWithLostHosts_Property: every instance on a lost host is reported
// failed, every other observation is kept as it was, and the input is
// left alone.
func TestWithLostHosts_Property(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		hosts := []string{"h0", "h1", "h2"}
		topo := &Topology{ConfigVersion: uint64(rapid.IntRange(1, 100).Draw(rt, "version"))}
		obs := map[int]Observation{}
		n := rapid.IntRange(1, 8).Draw(rt, "segments")
		for dbid := 1; dbid <= n; dbid++ {
			topo.Segments = append(topo.Segments, Segment{DBID: dbid, Hostname: rapid.SampledFrom(hosts).Draw(rt, fmt.Sprintf("host%d", dbid))})
			if rapid.Bool().Draw(rt, fmt.Sprintf("observed%d", dbid)) {
				obs[dbid] = Observation{DBID: dbid, Up: true, LSN: uint64(dbid)}
			}
		}
		lost := map[string]bool{}
		for _, h := range hosts {
			lost[h] = rapid.Bool().Draw(rt, "lost "+h)
		}
		before := maps.Clone(obs)
		got := WithLostHosts(topo, obs, lost)
		if !reflect.DeepEqual(obs, before) {
			rt.Fatal("WithLostHosts changed its input")
		}
		for _, s := range topo.Segments {
			o, ok := got[s.DBID]
			switch {
			case lost[s.Hostname] && (!ok || !o.Failed || o.ConfigVersion != topo.ConfigVersion):
				rt.Fatalf("dbid %d on lost host %s: %+v", s.DBID, s.Hostname, o)
			case !lost[s.Hostname] && !reflect.DeepEqual(o, obs[s.DBID]):
				rt.Fatalf("dbid %d on live host %s: %+v, was %+v", s.DBID, s.Hostname, o, obs[s.DBID])
			}
		}
	})
}
