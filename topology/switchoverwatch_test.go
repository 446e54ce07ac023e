package topology

import (
	"strings"
	"testing"
	"time"
)

// swStalled is content 0 mid-switchover (dbid 2 to dbid 5): the primary
// stopped cleanly at checkpoint 100, the mirror running in recovery at
// 90, short of it.
func swStalled(t *testing.T) (*Topology, map[int]Observation) {
	topo := decApply(t, decUp(t, true), Command{Type: CmdSwitchover, Content: 0})
	obs := obsOf(
		Observation{DBID: 2, StoppedLSN: 100, ConfigVersion: topo.ConfigVersion},
		Observation{DBID: 5, Up: true, InRecovery: true, LSN: 90, ConfigVersion: topo.ConfigVersion},
	)
	return topo, obs
}

// A mirror that never replays past the shutdown checkpoint, while its
// agent sees it running, ends the switchover at the bound: the old
// primary restarts in place as primary, the mirror stays mirror, and the
// history says why. Not a moment before the bound.
func TestSwitchoverWatch_StalledMirrorAbandonedAtBound(t *testing.T) {
	topo, obs := swStalled(t)
	bound := SwitchoverBound(time.Second, 500*time.Millisecond, 5*time.Second)
	if bound != 8500*time.Millisecond {
		t.Fatalf("bound with the defaults: %s, want 8.5s", bound)
	}
	w := SwitchoverWatch{}
	t0 := time.Unix(1_700_000_000, 0)
	for _, d := range []time.Duration{0, time.Second, bound - time.Millisecond} {
		if ups := w.Overdue(topo, obs, t0.Add(d), bound); len(ups) != 0 {
			t.Fatalf("at %s after the stop: %+v, want nothing before the bound", d, ups)
		}
	}
	ups := w.Overdue(topo, obs, t0.Add(bound), bound)
	if len(Decide(topo, obs)) != 0 {
		t.Fatalf("Decide acts on the stalled switchover itself")
	}
	next := decUpdate(t, topo, ups...)
	p, _ := next.Segment(2)
	m, _ := next.Segment(5)
	if _, busy := next.SwitchoverOf(0); busy || p.Role != RolePrimary || p.Status != StatusDown || m.Role != RoleMirror || m.Mode != ModeNotSynced {
		t.Fatalf("after the rollback: switchover in progress %v, primary %s, mirror %s; want none, dbid 2 p/d (restarts in place), dbid 5 m/n", busy, p, m)
	}
	if st := NextStep(next, p, LocalView{}); st.Kind != StepRestartInPlace {
		t.Fatalf("the old primary's next step: %v, want a restart in place", st.Kind)
	}
	last := next.History[len(next.History)-2].Desc
	if want := "switchover abandoned"; !strings.Contains(last, want) || !strings.Contains(last, "shutdown checkpoint") {
		t.Fatalf("history: %q, want the reason", last)
	}
}

// A mirror still replaying (its position moves) is waited for: the bound
// counts from its last progress, since the primary is stopped its WAL is
// finite.
func TestSwitchoverWatch_ProgressRestartsTheBound(t *testing.T) {
	topo, obs := swStalled(t)
	bound := 2 * time.Second
	w := SwitchoverWatch{}
	t0 := time.Unix(1_700_000_000, 0)
	w.Overdue(topo, obs, t0, bound)
	o := obs[5]
	o.LSN = 95
	obs[5] = o
	if ups := w.Overdue(topo, obs, t0.Add(bound), bound); len(ups) != 0 {
		t.Fatalf("the mirror progressed at the bound: %+v, want a wait", ups)
	}
	if ups := w.Overdue(topo, obs, t0.Add(2*bound-time.Millisecond), bound); len(ups) != 0 {
		t.Fatalf("within the bound of the progress: %+v", ups)
	}
	if ups := w.Overdue(topo, obs, t0.Add(2*bound), bound); len(ups) != 2 {
		t.Fatalf("a bound after the last progress: %+v, want the rollback", ups)
	}
}

// Nothing is abandoned while the stop is unconfirmed (the primary's agent
// unheard, or reporting against a version before the switchover), the
// mirror failed (Decide abandons it) or past the checkpoint (Decide
// completes it).
func TestSwitchoverWatch_LeavesOtherCasesToDecide(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	bound := time.Second
	for name, change := range map[string]func(topo *Topology, obs map[int]Observation){
		"primary unheard": func(_ *Topology, obs map[int]Observation) { delete(obs, 2) },
		"stale primary agent": func(topo *Topology, obs map[int]Observation) {
			o := obs[2]
			o.ConfigVersion = topo.ConfigVersion - 1
			obs[2] = o
		},
		"not stopped yet": func(_ *Topology, obs map[int]Observation) { obs[2] = obsPrimary(2, 5) },
		"mirror failed":   func(_ *Topology, obs map[int]Observation) { obs[5] = obsFailed(5) },
		"mirror past":     func(_ *Topology, obs map[int]Observation) { o := obs[5]; o.LSN = 101; obs[5] = o },
	} {
		topo, obs := swStalled(t)
		change(topo, obs)
		w := SwitchoverWatch{}
		for _, d := range []time.Duration{0, bound, 10 * bound} {
			if ups := w.Overdue(topo, obs, t0.Add(d), bound); len(ups) != 0 {
				t.Errorf("%s: %+v, want nothing", name, ups)
			}
		}
	}
}
