package topology

import (
	"fmt"
	"testing"

	"pgregory.net/rapid"
)

// nsSameTopology fails the test if after differs from before (its
// snapshot): NextStep and the other plans must leave their input alone.
func nsSameTopology(t decFatalfer, before string, after *Topology) {
	t.Helper()
	if now := snapshot(after); now != before {
		t.Fatalf("input topology modified:\nbefore %s\nafter  %s", before, now)
	}
}

// nsRandomTopology draws any topology at all, valid or not: 1..3
// contents of one or two instances with any role, status and mode, and
// any pending, rejoining, switchover and recovery lists. NextStep's rules
// must hold whatever it is handed.
func nsRandomTopology(rt *rapid.T) *Topology {
	t := &Topology{ClusterID: "c1", ConfigVersion: rapid.Uint64Range(1, 20).Draw(rt, "version")}
	roles := []Role{RolePrimary, RoleMirror}
	dbid := 0
	for c := range rapid.IntRange(1, 3).Draw(rt, "contents") {
		for range rapid.IntRange(1, 2).Draw(rt, fmt.Sprintf("instances%d", c)) {
			dbid++
			t.Segments = append(t.Segments, Segment{
				DBID: dbid, Content: c - 1,
				Role:          rapid.SampledFrom(roles).Draw(rt, "role"),
				PreferredRole: rapid.SampledFrom(roles).Draw(rt, "preferred"),
				Mode:          rapid.SampledFrom([]Mode{ModeSynced, ModeNotSynced}).Draw(rt, "mode"),
				Status:        rapid.SampledFrom([]Status{StatusUp, StatusDown}).Draw(rt, "status"),
				Port:          6000 + dbid, Hostname: fmt.Sprintf("h%d", dbid%2), Address: fmt.Sprintf("10.0.0.%d", dbid),
				DataDir: fmt.Sprintf("/data/%d", dbid),
			})
		}
	}
	anyDBID := rapid.IntRange(1, dbid)
	for d := 1; d <= dbid; d++ {
		// Rarely pending or rejoining: either hides every later case.
		if nsRarely(rt, fmt.Sprintf("pending%d", d)) {
			t.Pending = append(t.Pending, d)
		}
		if nsRarely(rt, fmt.Sprintf("rejoin%d", d)) {
			t.Rejoin = append(t.Rejoin, d)
		}
		if rapid.Bool().Draw(rt, fmt.Sprintf("recovering%d", d)) {
			t.Recoveries = append(t.Recoveries, Recovery{
				DBID: d, Kind: rapid.SampledFrom([]RecoveryKind{RecoveryIncremental, RecoveryFull}).Draw(rt, "kind"),
				Job: rapid.IntRange(1, 3).Draw(rt, "job"), Active: rapid.Bool().Draw(rt, "active"),
			})
		}
	}
	for _, c := range t.Contents() {
		if nsRarely(rt, fmt.Sprintf("switchover%d", c)) {
			t.Switchovers = append(t.Switchovers, Switchover{Content: c, From: anyDBID.Draw(rt, "from"), To: anyDBID.Draw(rt, "to")})
		}
	}
	return t
}

// nsRarely is true one time in five.
func nsRarely(rt *rapid.T, label string) bool { return rapid.IntRange(0, 4).Draw(rt, label) == 0 }

func nsRandomView(rt *rapid.T) LocalView {
	return LocalView{
		Running: rapid.Bool().Draw(rt, "running"), Busy: nsRarely(rt, "busy"),
		RetryPending: nsRarely(rt, "retryPending"), Hung: rapid.Bool().Draw(rt, "hung"),
		HealthKnown: rapid.Bool().Draw(rt, "healthKnown"), InRecovery: rapid.Bool().Draw(rt, "inRecovery"),
		StoppedLSN:        rapid.SampledFrom([]uint64{0, 0x3000028}).Draw(rt, "stoppedLSN"),
		RecoveryFailedJob: rapid.IntRange(0, 3).Draw(rt, "recoveryFailedJob"),
		RecoveredJob:      rapid.IntRange(0, 3).Draw(rt, "recoveredJob"),
		Fenced:            rapid.Bool().Draw(rt, "fenced"),
	}
}

// TestNextStep_Property checks the safety rules NextStep upholds for any
// topology, any of its instances and any local view.
func TestNextStep_Property(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		topo := nsRandomTopology(rt)
		s := rapid.SampledFrom(topo.Segments).Draw(rt, "instance")
		v := nsRandomView(rt)
		before := snapshot(topo)
		step := NextStep(topo, s, v)
		nsSameTopology(rt, before, topo)
		if (v.Busy || v.RetryPending) && step.Kind != StepNone {
			rt.Fatalf("%v while busy or backing off", step.Kind)
		}
		p, hasPrimary := topo.Primary(s.Content)
		rec, isRecovering := topo.Recovering(s.DBID)
		switch step.Kind {
		case StepPromote:
			// Only an instance the topology names primary: up, or down
			// and back as a standby (crashed before its promotion) on a
			// host that holds its lease.
			if s.Role != RolePrimary || (s.Status != StatusUp && (v.Fenced || !v.InRecovery)) {
				rt.Fatalf("promote of dbid %d recorded %s/%s", s.DBID, s.Role, s.Status)
			}
		case StepInitPrimary, StepRestartInPlace:
			// Rule 7: a demoted primary never starts as a primary.
			if s.Role != RolePrimary {
				rt.Fatalf("%v of dbid %d, role %s", step.Kind, s.DBID, s.Role)
			}
		case StepRecover:
			if !isRecovering || !rec.Active || step.Recovery != rec {
				rt.Fatalf("recover of dbid %d with recovery %+v (in t: %+v, %v)", s.DBID, step.Recovery, rec, isRecovering)
			}
			if s.Role != RoleMirror || s.Status != StatusDown {
				rt.Fatalf("recover of dbid %d recorded %s/%s", s.DBID, s.Role, s.Status)
			}
		case StepFence:
			if s.Role != RoleMirror || !v.Running {
				rt.Fatalf("fence of dbid %d, role %s, running %v", s.DBID, s.Role, v.Running)
			}
		case StepManageSync:
			if s.Role != RolePrimary || s.Status != StatusUp || v.Fenced {
				rt.Fatalf("manage sync of dbid %d recorded %s/%s, fenced %v", s.DBID, s.Role, s.Status, v.Fenced)
			}
		}
		switch step.Kind {
		case StepInitPrimary, StepCreateMirror:
			// Only a pending instance is created from nothing.
			if !topo.IsPending(s.DBID) {
				rt.Fatalf("%v of dbid %d, not pending", step.Kind, s.DBID)
			}
		}
		switch step.Kind {
		case StepCreateMirror, StepRejoin, StepRecover:
			// A mirror follows only the primary the topology names.
			if s.Role != RoleMirror || !hasPrimary || step.Upstream != p || p.DBID == s.DBID {
				rt.Fatalf("%v of dbid %d (%s) from %+v; the topology's primary %+v (%v)", step.Kind, s.DBID, s.Role, step.Upstream, p, hasPrimary)
			}
			if step.Kind != StepRejoin && p.Status != StatusUp {
				rt.Fatalf("%v of dbid %d from a primary down", step.Kind, s.DBID)
			}
		default:
			if step.Upstream != (Segment{}) {
				rt.Fatalf("%v carries an upstream", step.Kind)
			}
		}
		if (step.Kind == StepNone || step.Kind == StepManageSync) != (step.Phase == PhaseUnknown) {
			rt.Fatalf("%v with phase %v", step.Kind, step.Phase)
		}
		if step.StopFirst && (step.Kind != StepRestartInPlace || !v.Running) {
			rt.Fatalf("stop first with %v, running %v", step.Kind, v.Running)
		}
	})
}
