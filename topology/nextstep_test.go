package topology

import "testing"

// The NextStep table uses one content: primary dbid 2 on host a, mirror
// dbid 5 on host b, both up and in sync, nothing in progress. Each case
// changes what it needs.
func nsPair() *Topology {
	p := Segment{DBID: 2, Content: 0, Role: RolePrimary, PreferredRole: RolePrimary, Mode: ModeSynced, Status: StatusUp,
		Port: 6000, Hostname: "a", Address: "10.0.0.1", DataDir: "/data/p0"}
	m := Segment{DBID: 5, Content: 0, Role: RoleMirror, PreferredRole: RoleMirror, Mode: ModeSynced, Status: StatusUp,
		Port: 7000, Hostname: "b", Address: "10.0.0.2", DataDir: "/data/m0"}
	return &Topology{ClusterID: "c1", ConfigVersion: 7, Segments: []Segment{p, m}}
}

// nsSet changes the instance dbid of t in place (test setup only).
func nsSet(t *Topology, dbid int, f func(*Segment)) *Topology {
	f(&t.Segments[t.index(dbid)])
	return t
}

func TestNextStep_Cases(t *testing.T) {
	primaryDown := func(t *Topology) *Topology { return nsSet(t, 2, func(s *Segment) { s.Status = StatusDown }) }
	// demoted: a failover happened: dbid 5 is primary, dbid 2 a mirror down.
	demoted := func() *Topology {
		t := nsPair()
		nsSet(t, 2, func(s *Segment) { s.Role, s.Status, s.Mode = RoleMirror, StatusDown, ModeNotSynced })
		return nsSet(t, 5, func(s *Segment) { s.Role, s.Mode = RolePrimary, ModeNotSynced })
	}
	recoveringOld := func(kind RecoveryKind, active bool) *Topology {
		t := demoted()
		t.Recoveries = []Recovery{{DBID: 2, Kind: kind, Job: 3, Active: active}}
		return t
	}
	switchover := func() *Topology {
		t := nsPair()
		t.Switchovers = []Switchover{{Content: 0, From: 2, To: 5, Version: 7}}
		return t
	}
	pending := func(dbids ...int) *Topology {
		t := nsPair()
		for _, d := range dbids {
			nsSet(t, d, func(s *Segment) { s.Status, s.Mode = StatusDown, ModeNotSynced })
		}
		t.Pending = dbids
		return t
	}
	rejoin := func() *Topology {
		t := demoted()
		t.Rejoin = []int{2}
		return t
	}
	up := func(t *Topology) Segment { s, _ := t.Primary(0); return s }

	cases := []struct {
		name string
		topo *Topology
		dbid int
		view LocalView
		want Step
	}{
		{"busy does nothing", pending(2), 2, LocalView{Busy: true}, Step{}},
		{"backing off does nothing", pending(2), 2, LocalView{RetryPending: true}, Step{}},
		{"pending primary is created", pending(2, 5), 2, LocalView{}, Step{Kind: StepInitPrimary, Phase: PhaseCreating}},
		{"pending primary even if down and running", pending(2), 2, LocalView{Running: true, Hung: true}, Step{Kind: StepInitPrimary, Phase: PhaseCreating}},
		// Created here and running: the leader records it up on the next
		// report. Creating it again would report it creating, and a step
		// that ends at once would do so for ever (a 1,000-host init never
		// got one instance up).
		{"pending primary created here and running waits for the leader", pending(2), 2, LocalView{Running: true, Created: true},
			Step{Kind: StepWait, Phase: PhaseRunning}},
		{"pending primary created here but stopped is started", pending(2), 2, LocalView{Created: true}, Step{Kind: StepInitPrimary, Phase: PhaseCreating}},
		{"pending mirror built here from its primary and running waits", pending(5), 5, LocalView{Running: true, Created: true, CreatedFrom: 2},
			Step{Kind: StepWait, Phase: PhaseRunning}},
		{"pending mirror built here from another primary is built again", pending(5), 5, LocalView{Running: true, Created: true, CreatedFrom: 9},
			Step{Kind: StepCreateMirror, Phase: PhaseBuilding, Upstream: up(nsPair())}},
		{"pending mirror of a primary up is built from it", pending(5), 5, LocalView{},
			Step{Kind: StepCreateMirror, Phase: PhaseBuilding, Upstream: up(nsPair())}},
		{"pending mirror whose primary is down waits", pending(2, 5), 5, LocalView{}, Step{Kind: StepWait, Phase: PhaseWaitingForPrimary}},
		{"pending mirror with no primary waits", func() *Topology {
			t := pending(5)
			t.Segments = t.Segments[1:]
			return t
		}(), 5, LocalView{}, Step{Kind: StepWait, Phase: PhaseWaitingForPrimary}},
		{"mirror named primary running in recovery is promoted", demoted(), 5, LocalView{Running: true, HealthKnown: true, InRecovery: true},
			Step{Kind: StepPromote, Phase: PhasePromoting}},
		{"mirror named primary with no fresh probe is not promoted yet", demoted(), 5, LocalView{Running: true, InRecovery: true},
			Step{Kind: StepManageSync}},
		{"primary in recovery but not running is not promoted", demoted(), 5, LocalView{HealthKnown: true, InRecovery: true}, Step{}},
		// Issue 12, hole 4: the promoted mirror crashed before pg_promote,
		// was recorded down and restarted in place as a standby.
		{"primary down running in recovery is promoted", nsSet(demoted(), 5, func(s *Segment) { s.Status = StatusDown }), 5, LocalView{Running: true, HealthKnown: true, InRecovery: true},
			Step{Kind: StepPromote, Phase: PhasePromoting}},
		{"primary down running in recovery on a fenced host waits", nsSet(demoted(), 5, func(s *Segment) { s.Status = StatusDown }), 5, LocalView{Running: true, HealthKnown: true, InRecovery: true, Fenced: true},
			Step{}},
		{"primary down with a double fault restarts in place", primaryDown(nsPair()), 2, LocalView{},
			Step{Kind: StepRestartInPlace, Phase: PhaseRestartingInPlace}},
		{"a hung down primary is stopped first", primaryDown(nsPair()), 2, LocalView{Running: true, Hung: true},
			Step{Kind: StepRestartInPlace, Phase: PhaseRestartingInPlace, StopFirst: true}},
		{"a down primary just started is left alone", primaryDown(nsPair()), 2, LocalView{Running: true, HealthKnown: true}, Step{}},
		{"switchover source running is stopped cleanly", switchover(), 2, LocalView{Running: true, HealthKnown: true},
			Step{Kind: StepSwitchoverStop, Phase: PhaseSwitchoverStopping}},
		{"switchover source stopped: its checkpoint is read", switchover(), 2, LocalView{},
			Step{Kind: StepReadCheckpoint, Phase: PhaseSwitchoverReadingCheckpoint}},
		{"switchover source stopped, checkpoint read: nothing", switchover(), 2, LocalView{StoppedLSN: 0x3000028}, Step{}},
		{"switchover target (a mirror up) waits for the leader", switchover(), 5, LocalView{Running: true, HealthKnown: true, InRecovery: true}, Step{}},
		{"rejoining mirror starts from the primary", rejoin(), 2, LocalView{},
			Step{Kind: StepRejoin, Phase: PhaseRejoining, Upstream: up(demoted())}},
		{"rejoining mirror without a primary waits silently", func() *Topology {
			t := rejoin()
			t.Segments = t.Segments[:1]
			return t
		}(), 2, LocalView{}, Step{}},
		{"rejoining mirror already running as a standby is not fenced", rejoin(), 2, LocalView{Running: true, HealthKnown: true, InRecovery: true}, Step{}},
		{"incremental recovery rewinds from the primary", recoveringOld(RecoveryIncremental, true), 2, LocalView{},
			Step{Kind: StepRecover, Phase: PhaseRecoveringIncremental, Upstream: up(demoted()), Recovery: Recovery{DBID: 2, Kind: RecoveryIncremental, Job: 3, Active: true}}},
		{"full recovery copies from the primary", recoveringOld(RecoveryFull, true), 2, LocalView{},
			Step{Kind: StepRecover, Phase: PhaseRecoveringFull, Upstream: up(demoted()), Recovery: Recovery{DBID: 2, Kind: RecoveryFull, Job: 3, Active: true}}},
		{"recovery waits for a primary up", func() *Topology {
			return nsSet(recoveringOld(RecoveryFull, true), 5, func(s *Segment) { s.Status = StatusDown })
		}(), 2, LocalView{}, Step{Kind: StepWait, Phase: PhaseRecoveryWaitingForPrimary}},
		{"queued recovery does nothing yet", recoveringOld(RecoveryFull, false), 2, LocalView{}, Step{}},
		{"queued recovery of an old primary running as a primary: fenced first", recoveringOld(RecoveryFull, false), 2, LocalView{Running: true, HealthKnown: true}, Step{Kind: StepFence, Phase: PhaseFencing}},
		{"queued recovery of an old primary hung: fenced first", recoveringOld(RecoveryFull, false), 2, LocalView{Running: true, Hung: true}, Step{Kind: StepFence, Phase: PhaseFencing}},
		{"rejoining old primary running as a primary: fenced first", rejoin(), 2, LocalView{Running: true, HealthKnown: true}, Step{Kind: StepFence, Phase: PhaseFencing}},
		{"recovery failed here in this job is not retried", recoveringOld(RecoveryIncremental, true), 2, LocalView{RecoveryFailedJob: 3}, Step{}},
		{"recovery failed in an earlier job runs again", recoveringOld(RecoveryIncremental, true), 2, LocalView{RecoveryFailedJob: 2},
			Step{Kind: StepRecover, Phase: PhaseRecoveringIncremental, Upstream: up(demoted()), Recovery: Recovery{DBID: 2, Kind: RecoveryIncremental, Job: 3, Active: true}}},
		{"recovered here, running as a standby: wait for the leader", recoveringOld(RecoveryIncremental, true), 2,
			LocalView{Running: true, HealthKnown: true, InRecovery: true, RecoveredJob: 3}, Step{}},
		{"standby that kept running through a cut is recovered", recoveringOld(RecoveryIncremental, true), 2,
			LocalView{Running: true, HealthKnown: true, InRecovery: true, RecoveredJob: 2},
			Step{Kind: StepRecover, Phase: PhaseRecoveringIncremental, Upstream: up(demoted()), Recovery: Recovery{DBID: 2, Kind: RecoveryIncremental, Job: 3, Active: true}}},
		{"recovering instance running as a primary is fenced first", recoveringOld(RecoveryIncremental, true), 2,
			LocalView{Running: true, HealthKnown: true, RecoveredJob: 3}, Step{Kind: StepFence, Phase: PhaseFencing}},
		{"recovering instance killed: recovered", recoveringOld(RecoveryIncremental, true), 2, LocalView{RecoveredJob: 3},
			Step{Kind: StepRecover, Phase: PhaseRecoveringIncremental, Upstream: up(demoted()), Recovery: Recovery{DBID: 2, Kind: RecoveryIncremental, Job: 3, Active: true}}},
		{"recovering instance running, no fresh probe: wait for one", recoveringOld(RecoveryIncremental, true), 2, LocalView{Running: true}, Step{}},
		{"demoted primary still running is fenced", demoted(), 2, LocalView{Running: true, HealthKnown: true}, Step{Kind: StepFence, Phase: PhaseFencing}},
		{"demoted primary running, unanswering, is fenced", demoted(), 2, LocalView{Running: true, Hung: true}, Step{Kind: StepFence, Phase: PhaseFencing}},
		{"demoted primary not running is left alone", demoted(), 2, LocalView{}, Step{}},
		{"down mirror running as a standby is left alone", demoted(), 2, LocalView{Running: true, HealthKnown: true, InRecovery: true}, Step{}},
		{"primary up and running manages sync", nsPair(), 2, LocalView{Running: true, HealthKnown: true}, Step{Kind: StepManageSync}},
		{"fenced primary does not manage sync", nsPair(), 2, LocalView{Running: true, HealthKnown: true, Fenced: true}, Step{}},
		{"primary up not running: left to the leader", nsPair(), 2, LocalView{}, Step{}},
		{"mirror up and streaming: nothing", nsPair(), 5, LocalView{Running: true, HealthKnown: true, InRecovery: true}, Step{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, ok := c.topo.Segment(c.dbid)
			if !ok {
				t.Fatalf("no dbid %d in the test topology", c.dbid)
			}
			before := snapshot(c.topo)
			got := NextStep(c.topo, s, c.view)
			if got != c.want {
				t.Fatalf("NextStep(dbid %d, %+v)\n got %+v\nwant %+v", c.dbid, c.view, got, c.want)
			}
			nsSameTopology(t, before, c.topo)
		})
	}
}

func TestPhase_Words(t *testing.T) {
	// The words are the report's wire format (gpagent state -e).
	want := map[Phase]string{
		PhaseUnknown: "unknown", PhaseRunning: "running", PhaseStopped: "stopped", PhaseFailed: "failed",
		PhaseCreating: "creating", PhaseBuilding: "building", PhaseWaitingForPrimary: "waiting for primary",
		PhasePromoting: "promoting", PhaseRestartingInPlace: "restarting in place",
		PhaseSwitchoverStopping: "switchover: stopping cleanly", PhaseSwitchoverReadingCheckpoint: "switchover: reading checkpoint",
		PhaseRejoining: "rejoining as mirror", PhaseRecoveringIncremental: "recovering (incremental)",
		PhaseRecoveringFull: "recovering (full)", PhaseRecoveryWaitingForPrimary: "recovery waiting for the primary",
		PhaseFencing: "fencing",
	}
	if len(want) != len(phaseWords) {
		t.Fatalf("%d phases have words, the test knows %d", len(phaseWords), len(want))
	}
	for p, w := range want {
		if p.String() != w {
			t.Errorf("Phase %d: %q, want %q", int(p), p.String(), w)
		}
	}
	if Phase(-1).String() != "unknown" || Phase(len(phaseWords)).String() != "unknown" {
		t.Errorf("out-of-range phases are not unknown")
	}
	var zero Phase
	if zero != PhaseUnknown {
		t.Errorf("the zero Phase is %v, want unknown", zero)
	}
}
