package topology

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// decFatalfer is what the Decide test helpers need of *testing.T and
// *rapid.T.
type decFatalfer interface {
	Helper()
	Fatalf(format string, args ...any)
}

// The table tests use one small cluster, built through Apply the way a
// real one is:
//
//	content -1: coordinator dbid 1, standby dbid 4
//	content  0: primary dbid 2, mirror dbid 5
//	content  1: primary dbid 3, mirror dbid 6
var decTime = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func decSegment(dbid, content int, role Role) Segment {
	return Segment{DBID: dbid, Content: content, Role: role, PreferredRole: role, Mode: ModeNotSynced,
		Status: StatusDown, Port: 6000, Hostname: fmt.Sprintf("host%d", dbid), Address: fmt.Sprintf("host%d", dbid),
		DataDir: fmt.Sprintf("/data/dbid%d", dbid)}
}

func decPrimaries() []Segment {
	return []Segment{decSegment(1, -1, RolePrimary), decSegment(2, 0, RolePrimary), decSegment(3, 1, RolePrimary)}
}

func decMirrors() []Segment {
	return []Segment{decSegment(4, -1, RoleMirror), decSegment(5, 0, RoleMirror), decSegment(6, 1, RoleMirror)}
}

// decApply applies cmd at the topology's current version and fails the
// test if Apply rejects it.
func decApply(t decFatalfer, topo *Topology, cmd Command) *Topology {
	t.Helper()
	cmd.BaseVersion = topo.ConfigVersion
	cmd.Time = decTime.Add(time.Duration(topo.ConfigVersion) * time.Second)
	next, err := Apply(topo, cmd)
	if err != nil {
		t.Fatalf("Apply(%s): %v", cmd.Type, err)
	}
	return next
}

func decUpdate(t decFatalfer, topo *Topology, updates ...SegmentUpdate) *Topology {
	t.Helper()
	return decApply(t, topo, Command{Type: CmdUpdateSegments, Updates: updates})
}

// decInit returns the table cluster just after init: every instance
// placed, down and pending.
func decInit(t decFatalfer) *Topology {
	t.Helper()
	return decApply(t, &Topology{}, Command{Type: CmdInit, ClusterID: "c1", SegPrefix: "gpseg",
		Segments: append(decPrimaries(), decMirrors()...)})
}

// decUp returns the table cluster with every instance created and up;
// synced says whether every pair is recorded in sync.
func decUp(t decFatalfer, synced bool) *Topology {
	t.Helper()
	mode := ModeNotSynced
	if synced {
		mode = ModeSynced
	}
	var ups []SegmentUpdate
	for dbid := 1; dbid <= 6; dbid++ {
		ups = append(ups, SegmentUpdate{DBID: dbid, Status: StatusUp, Mode: mode, Desc: "test setup: up"})
	}
	return decUpdate(t, decInit(t), ups...)
}

// decFailedOver returns the synced cluster after content 0 failed over:
// mirror dbid 5 acts as primary, the old primary dbid 2 is demoted and down.
func decFailedOver(t decFatalfer) *Topology {
	t.Helper()
	return decUpdate(t, decUp(t, true),
		SegmentUpdate{DBID: 5, Role: RolePrimary, Mode: ModeNotSynced, Desc: "test setup: promoted"},
		SegmentUpdate{DBID: 2, Role: RoleMirror, Status: StatusDown, Mode: ModeNotSynced, Desc: "test setup: demoted"})
}

// decRecovering is decFailedOver with the old primary dbid 2 in recovery
// job 1 (incremental), and content 1's mirror dbid 6 recorded down.
func decRecovering(t decFatalfer) *Topology {
	t.Helper()
	topo := decUpdate(t, decFailedOver(t), SegmentUpdate{DBID: 6, Status: StatusDown, Mode: ModeNotSynced, Desc: "test setup: mirror lost"},
		SegmentUpdate{DBID: 3, Mode: ModeNotSynced, Desc: "test setup: not in sync"})
	return decApply(t, topo, Command{Type: CmdRecover, Recover: []RecoveryRequest{{DBID: 2, Kind: RecoveryIncremental}}})
}

// Observations as healthy agents report them.
func obsPrimary(dbid int, synced ...int) Observation {
	return Observation{DBID: dbid, Up: true, SyncedMirrors: synced}
}

func obsMirror(dbid int) Observation {
	return Observation{DBID: dbid, Up: true, InRecovery: true, Streaming: true}
}

func obsFailed(dbid int) Observation { return Observation{DBID: dbid, Failed: true} }

func obsOf(list ...Observation) map[int]Observation {
	m := map[int]Observation{}
	for _, o := range list {
		m[o.DBID] = o
	}
	return m
}

// fresh stamps observations as made against topo's version, as a
// report made after the agent saw the latest topology would be.
func fresh(topo *Topology, obs map[int]Observation) map[int]Observation {
	out := make(map[int]Observation, len(obs))
	for k, o := range obs {
		o.ConfigVersion = topo.ConfigVersion
		out[k] = o
	}
	return out
}

// rsm renders an instance's role, status and mode as in gpstate: "pun" is
// role p, status u, mode n.
func rsm(s Segment) string { return string(s.Role) + string(s.Status) + string(s.Mode) }

// decideAndApply runs Decide, checks it left its inputs alone, and applies
// its result as one command (which must be accepted). It returns the
// updates and the topology after them (topo itself when there are none).
func decideAndApply(t decFatalfer, topo *Topology, obs map[int]Observation) ([]SegmentUpdate, *Topology) {
	t.Helper()
	return decideAndApplyAsIs(t, topo, fresh(topo, obs))
}

// decideAndApplyAsIs is decideAndApply with the observations' config
// versions as they are: reports made against older topologies.
func decideAndApplyAsIs(t decFatalfer, topo *Topology, obs map[int]Observation) ([]SegmentUpdate, *Topology) {
	t.Helper()
	before, obsBefore := jsonOf(topo), jsonOf(obs)
	ups := Decide(topo, obs)
	if jsonOf(topo) != before {
		t.Fatalf("Decide changed its input topology")
	}
	if jsonOf(obs) != obsBefore {
		t.Fatalf("Decide changed its observations")
	}
	if len(ups) == 0 {
		return ups, topo
	}
	next, err := Apply(topo, Command{Type: CmdUpdateSegments, BaseVersion: topo.ConfigVersion,
		Time: decTime.Add(time.Hour), Updates: ups})
	if err != nil {
		t.Fatalf("Apply(Decide(...)) rejected %+v: %v", ups, err)
	}
	return ups, next
}

func TestDecide_Rules(t *testing.T) {
	cases := []struct {
		name  string
		topo  func(t decFatalfer) *Topology
		obs   map[int]Observation
		want  map[int]string // dbid -> role, status, mode after; every other instance unchanged
		desc  map[int]string // dbid -> text its new history row must contain
		check func(t *testing.T, before, after *Topology, ups []SegmentUpdate)
	}{
		{
			name: "pending primary created is recorded up",
			topo: decInit,
			obs:  obsOf(obsPrimary(2)),
			want: map[int]string{2: "pun"},
			desc: map[int]string{2: "created and up"},
			check: func(t *testing.T, _, after *Topology, _ []SegmentUpdate) {
				if after.IsPending(2) {
					t.Errorf("dbid 2 still pending after it was recorded up: %v", after.Pending)
				}
			},
		},
		{
			name: "pending primary still in recovery stays down",
			topo: decInit,
			obs:  obsOf(Observation{DBID: 2, Up: true, InRecovery: true}),
		},
		{
			name: "pending mirror streaming is recorded up",
			topo: func(t decFatalfer) *Topology {
				return decUpdate(t, decInit(t), SegmentUpdate{DBID: 2, Status: StatusUp})
			},
			obs:  obsOf(obsPrimary(2), obsMirror(5)),
			want: map[int]string{5: "mun"},
			desc: map[int]string{5: "streaming"},
			check: func(t *testing.T, _, after *Topology, _ []SegmentUpdate) {
				if after.IsPending(5) {
					t.Errorf("dbid 5 still pending after it was recorded up: %v", after.Pending)
				}
			},
		},
		{
			name: "pending mirror up but not streaming stays down",
			topo: func(t decFatalfer) *Topology {
				return decUpdate(t, decInit(t), SegmentUpdate{DBID: 2, Status: StatusUp})
			},
			obs: obsOf(obsPrimary(2), Observation{DBID: 5, Up: true, InRecovery: true}),
		},
		{
			name: "pair recorded in sync when the primary vouches",
			topo: func(t decFatalfer) *Topology { return decUp(t, false) },
			obs:  obsOf(obsPrimary(2, 5), obsMirror(5)),
			want: map[int]string{2: "pus", 5: "mus"},
			desc: map[int]string{2: "in sync", 5: "in sync"},
		},
		{
			name: "pair not recorded in sync without the primary vouching",
			topo: func(t decFatalfer) *Topology { return decUp(t, false) },
			obs:  obsOf(obsPrimary(2), obsMirror(5), obsPrimary(3, 5), obsMirror(6)), // dbid 3 names another content's mirror
		},
		{
			name: "pair not recorded in sync on a vouch from a primary in recovery",
			topo: func(t decFatalfer) *Topology { return decUp(t, false) },
			obs:  obsOf(Observation{DBID: 2, Up: true, InRecovery: true, SyncedMirrors: []int{5}}, obsMirror(5)),
		},
		{
			name: "pair not recorded in sync while the mirror is down",
			topo: func(t decFatalfer) *Topology {
				return decUpdate(t, decUp(t, false), SegmentUpdate{DBID: 5, Status: StatusDown})
			},
			obs: obsOf(obsPrimary(2, 5), obsMirror(5)),
		},
		{
			name: "primary lost with mirror in sync: promote and demote in one decision",
			topo: func(t decFatalfer) *Topology { return decUp(t, true) },
			obs:  obsOf(obsFailed(2), Observation{DBID: 5, Up: true, InRecovery: true}),
			want: map[int]string{5: "pun", 2: "mdn"},
			desc: map[int]string{5: "promoted", 2: "demoted"},
		},
		{
			name: "primary lost with mirror not in sync: double fault, no promotion",
			topo: func(t decFatalfer) *Topology { return decUp(t, false) },
			obs:  obsOf(obsFailed(2), obsMirror(5)),
			want: map[int]string{2: "pdn"},
			desc: map[int]string{2: "double fault"},
		},
		{
			name: "primary lost with only one side recorded in sync: no promotion",
			topo: func(t decFatalfer) *Topology {
				// Not a state Decide produces; the promotion must still
				// want both halves of the pair recorded s.
				return decUpdate(t, decUp(t, false), SegmentUpdate{DBID: 5, Mode: ModeSynced})
			},
			obs:  obsOf(obsFailed(2), obsMirror(5)),
			want: map[int]string{2: "pdn", 5: "mun"},
			desc: map[int]string{2: "double fault"},
		},
		{
			name: "primary lost with mirror recorded down though in sync: no promotion",
			topo: func(t decFatalfer) *Topology {
				// Not a state Decide produces: promotion wants the mirror
				// recorded up as well as s.
				return decUpdate(t, decUp(t, true), SegmentUpdate{DBID: 5, Status: StatusDown})
			},
			obs:  obsOf(obsFailed(2), obsMirror(5)),
			want: map[int]string{2: "pdn", 5: "mdn"},
			desc: map[int]string{2: "double fault"},
		},
		{
			name: "primary lost with mirror recorded down: no promotion",
			topo: func(t decFatalfer) *Topology {
				return decUpdate(t, decUp(t, false), SegmentUpdate{DBID: 5, Status: StatusDown})
			},
			obs:  obsOf(obsFailed(2), obsMirror(5)),
			want: map[int]string{2: "pdn"},
			desc: map[int]string{2: "double fault"},
		},
		{
			name: "primary and in-sync mirror both lost: both down, no promotion",
			topo: func(t decFatalfer) *Topology { return decUp(t, true) },
			obs:  obsOf(obsFailed(2), obsFailed(5)),
			want: map[int]string{2: "pdn", 5: "mdn"},
			desc: map[int]string{2: "double fault", 5: "mirror lost"},
		},
		{
			name: "coordinator without a standby lost: down, no promotion",
			topo: func(t decFatalfer) *Topology {
				topo := decApply(t, &Topology{}, Command{Type: CmdInit, Segments: decPrimaries()})
				return decUpdate(t, topo, SegmentUpdate{DBID: 1, Status: StatusUp})
			},
			obs:  obsOf(obsFailed(1)),
			want: map[int]string{1: "pdn"},
			desc: map[int]string{1: "no mirror"},
		},
		{
			name: "mirror lost, primary up: mirror down, pair not in sync",
			topo: func(t decFatalfer) *Topology { return decUp(t, true) },
			obs:  obsOf(obsPrimary(2, 5), obsFailed(5)),
			want: map[int]string{5: "mdn", 2: "pun"},
			desc: map[int]string{5: "mirror lost", 2: "not in sync"},
		},
		{
			name: "mirror replication stalled: same as mirror lost",
			topo: func(t decFatalfer) *Topology { return decUp(t, true) },
			obs:  obsOf(Observation{DBID: 2, Up: true, StalledMirrors: []int{5}}, obsMirror(5)),
			want: map[int]string{5: "mdn", 2: "pun"},
			desc: map[int]string{5: "stalled", 2: "not in sync"},
		},
		{
			name: "paused: failures ignored, creation still recorded",
			topo: func(t decFatalfer) *Topology {
				topo := decApply(t, &Topology{}, Command{Type: CmdInit, Segments: decPrimaries()})
				topo = decUpdate(t, topo, SegmentUpdate{DBID: 1, Status: StatusUp},
					SegmentUpdate{DBID: 2, Status: StatusUp}, SegmentUpdate{DBID: 3, Status: StatusUp})
				topo = decApply(t, topo, Command{Type: CmdAddMirrors, Segments: decMirrors()})
				topo = decUpdate(t, topo, SegmentUpdate{DBID: 5, Status: StatusUp, Mode: ModeSynced},
					SegmentUpdate{DBID: 2, Mode: ModeSynced}, SegmentUpdate{DBID: 4, Status: StatusUp})
				return decApply(t, topo, Command{Type: CmdSetPaused, Paused: true})
			},
			obs: obsOf(
				obsFailed(2), obsMirror(5), // would fail over
				obsPrimary(1), obsFailed(4), // would mark the standby down
				obsPrimary(3, 6), obsMirror(6), // pending mirror created, and in sync
			),
			want: map[int]string{6: "mus", 3: "pus"},
			desc: map[int]string{6: "created", 3: "in sync"},
		},
		{
			name: "double-faulted primary answering as primary is restarted in place",
			topo: func(t decFatalfer) *Topology {
				return decUpdate(t, decUp(t, false),
					SegmentUpdate{DBID: 2, Status: StatusDown}, SegmentUpdate{DBID: 5, Status: StatusDown})
			},
			obs:  obsOf(obsPrimary(2)),
			want: map[int]string{2: "pun"},
			desc: map[int]string{2: "restarted in place"},
		},
		{
			name: "double-faulted primary still in recovery stays down",
			topo: func(t decFatalfer) *Topology {
				return decUpdate(t, decUp(t, false), SegmentUpdate{DBID: 2, Status: StatusDown})
			},
			obs: obsOf(Observation{DBID: 2, Up: true, InRecovery: true}),
		},
		{
			name: "demoted old primary answering as primary is not taken back",
			topo: decFailedOver,
			obs:  obsOf(obsPrimary(2, 5), Observation{DBID: 5, Up: true}),
		},
		{
			name: "new primary lost while the demoted old one answers: double fault, no promotion",
			topo: decFailedOver,
			obs:  obsOf(obsPrimary(2), obsFailed(5)),
			want: map[int]string{5: "pdn"},
			desc: map[int]string{5: "double fault"},
		},
		{
			name: "coordinator with an in-sync standby fails over",
			topo: func(t decFatalfer) *Topology { return decUp(t, true) },
			obs:  obsOf(obsFailed(1), Observation{DBID: 4, Up: true, InRecovery: true}),
			want: map[int]string{4: "pun", 1: "mdn"},
			desc: map[int]string{4: "promoted", 1: "demoted"},
		},
		{
			name: "failures in several contents go into one decision",
			topo: func(t decFatalfer) *Topology { return decUp(t, true) },
			obs:  obsOf(obsFailed(2), obsMirror(5), obsPrimary(3, 6), obsFailed(6), obsPrimary(1, 4), obsMirror(4)),
			want: map[int]string{5: "pun", 2: "mdn", 6: "mdn", 3: "pun"},
		},
		{
			name: "steady synced cluster: no change",
			topo: func(t decFatalfer) *Topology { return decUp(t, true) },
			obs: obsOf(obsPrimary(1, 4), obsPrimary(2, 5), obsPrimary(3, 6),
				obsMirror(4), obsMirror(5), obsMirror(6)),
		},
		{
			name: "steady cluster with a down mirror and a double fault: no change",
			topo: func(t decFatalfer) *Topology {
				return decUpdate(t, decUp(t, false), SegmentUpdate{DBID: 5, Status: StatusDown},
					SegmentUpdate{DBID: 3, Status: StatusDown})
			},
			obs: obsOf(obsPrimary(1), obsPrimary(2), obsFailed(5), obsFailed(3), obsMirror(4), obsMirror(6)),
		},
		{
			name: "steady after a failover: no change",
			topo: decFailedOver,
			obs:  obsOf(obsPrimary(5), obsFailed(2)),
		},
		{
			// A mirror cut off with its host keeps running and may still
			// say "streaming" on a connection that died with the cut.
			name: "recovering mirror streaming before its recovery step ran stays down",
			topo: decRecovering,
			obs:  obsOf(obsPrimary(5), obsMirror(2)),
		},
		{
			name: "recovering mirror streaming after its recovery step is recorded up",
			topo: decRecovering,
			obs: obsOf(obsPrimary(5), func() Observation {
				o := obsMirror(2)
				o.RecoveredJob = 1
				return o
			}()),
			want: map[int]string{2: "mun"},
			desc: map[int]string{2: "recovered (incremental) as mirror, streaming"},
		},
		{
			name: "a step finished for an earlier job does not count",
			topo: func(t decFatalfer) *Topology {
				return decApply(t, decRecovering(t), Command{Type: CmdRecover, Recover: []RecoveryRequest{{DBID: 6, Kind: RecoveryIncremental}}})
			},
			obs: obsOf(obsPrimary(5), obsPrimary(3), func() Observation {
				o := obsMirror(6)
				o.RecoveredJob = 1
				return o
			}()),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.topo(t)
			ups, after := decideAndApply(t, before, tc.obs)
			if len(tc.want) == 0 && len(ups) != 0 {
				t.Fatalf("Decide = %+v, want no change", ups)
			}
			if len(tc.want) != 0 && len(ups) == 0 {
				t.Fatalf("Decide = no change, want %v", tc.want)
			}
			for _, s := range before.Segments {
				got, _ := after.Segment(s.DBID)
				want, ok := tc.want[s.DBID]
				if !ok {
					want = rsm(s)
				}
				if rsm(got) != want {
					t.Errorf("dbid %d: %s -> %s, want %s (updates %+v)", s.DBID, rsm(s), rsm(got), want, ups)
				}
			}
			newRows := after.History[len(before.History):]
			for dbid, text := range tc.desc {
				found := false
				for _, h := range newRows {
					found = found || (h.DBID == dbid && strings.Contains(h.Desc, text))
				}
				if !found {
					t.Errorf("no history row for dbid %d containing %q in %+v", dbid, text, newRows)
				}
			}
			if tc.check != nil {
				tc.check(t, before, after, ups)
			}
		})
	}
}

// A failover must be one decision: both updates in one result, so the
// topology never records the content with two primaries or none.
func TestDecide_FailoverIsOneDecision(t *testing.T) {
	topo := decUp(t, true)
	ups := Decide(topo, obsOf(obsFailed(2), obsMirror(5)))
	var promote, demote bool
	for _, u := range ups {
		promote = promote || (u.DBID == 5 && u.Role == RolePrimary)
		demote = demote || (u.DBID == 2 && u.Role == RoleMirror && u.Status == StatusDown)
	}
	if !promote || !demote {
		t.Fatalf("Decide = %+v, want dbid 5 promoted and dbid 2 demoted together", ups)
	}
	// Applying the promotion alone must be refused: that is why they go
	// together.
	var alone []SegmentUpdate
	for _, u := range ups {
		if u.DBID == 5 {
			alone = append(alone, u)
		}
	}
	if _, err := Apply(topo, Command{Type: CmdUpdateSegments, BaseVersion: topo.ConfigVersion, Updates: alone}); err == nil {
		t.Fatalf("Apply accepted a promotion without the demotion")
	}
}

func TestDecide_NoObservationNoChange(t *testing.T) {
	topos := map[string]func(t decFatalfer) *Topology{
		"just initialized": decInit,
		"up, not in sync":  func(t decFatalfer) *Topology { return decUp(t, false) },
		"up, in sync":      func(t decFatalfer) *Topology { return decUp(t, true) },
		"failed over":      decFailedOver,
	}
	for _, name := range slices.Sorted(maps.Keys(topos)) {
		t.Run(name, func(t *testing.T) {
			topo := topos[name](t)
			for _, obs := range []map[int]Observation{nil, {}, obsOf(Observation{DBID: 99, Failed: true})} {
				if ups := Decide(topo, obs); len(ups) != 0 {
					t.Fatalf("Decide(%v) = %+v, want no change", obs, ups)
				}
			}
		})
	}
}

// Decide's result, applied, answers the observations: the same
// observations then call for nothing more.
func TestDecide_AppliedResultIsSteady(t *testing.T) {
	obs := obsOf(obsFailed(2), obsMirror(5), obsPrimary(3, 6), obsMirror(6), obsFailed(1), obsMirror(4))
	ups, after := decideAndApply(t, decUp(t, false), obs)
	if len(ups) == 0 {
		t.Fatalf("Decide = no change, want a double fault and a sync")
	}
	if again := Decide(after, obs); len(again) != 0 {
		t.Fatalf("second Decide = %+v, want no change", again)
	}
}

// A pending mirror reported created and streaming while its primary
// reports its replication stalled is recorded up first and marked lost in
// the next decision (the failure rules judge the mirror as the topology
// recorded it), so the decisions reach a fixed point. Recording both in
// one decision left it pending and down (Apply judges Pending on the
// final state), and the same observations made the same two updates on
// every reconcile, forever.
func TestDecide_CreatedMirrorStalledIsSteady(t *testing.T) {
	topo := decUpdate(t, decInit(t), SegmentUpdate{DBID: 2, Status: StatusUp})
	obs := obsOf(Observation{DBID: 2, Up: true, StalledMirrors: []int{5}}, obsMirror(5))
	// The creation is recorded first, the stall in the next decision;
	// then nothing more: a fixed point within a few steps.
	for step := 0; ; step++ {
		ups, after := decideAndApply(t, topo, obs)
		if len(ups) == 0 {
			if after.IsPending(5) {
				t.Fatalf("fixed point with dbid 5 still pending")
			}
			return
		}
		if step == 3 {
			t.Fatalf("no fixed point after %d steps: still %+v", step, ups)
		}
		topo = after
	}
}

// A vouch made against an older topology (before the mirror was last
// marked down and rebuilt, say) does not record the pair in sync.
func TestDecide_StaleVouchIgnored(t *testing.T) {
	topo := decUpdate(t, decInit(t),
		SegmentUpdate{DBID: 2, Status: StatusUp}, SegmentUpdate{DBID: 5, Status: StatusUp})
	vouch := Observation{DBID: 2, Up: true, SyncedMirrors: []int{5}, ConfigVersion: topo.ConfigVersion - 1}
	if ups := Decide(topo, obsOf(vouch, obsMirror(5))); len(ups) != 0 {
		t.Fatalf("stale vouch acted on: %+v", ups)
	}
	vouch.ConfigVersion = topo.ConfigVersion
	if ups := Decide(topo, obsOf(vouch, obsMirror(5))); len(ups) != 2 {
		t.Fatalf("current vouch: %+v, want the pair recorded in sync", ups)
	}
}

// A lost primary's in-sync mirror that nobody reports on is not promoted
// (nor the primary demoted): the decision waits for its agent.
func TestDecide_UnseenMirrorNotPromoted(t *testing.T) {
	topo := decUpdate(t, decInit(t),
		SegmentUpdate{DBID: 2, Status: StatusUp, Mode: ModeSynced}, SegmentUpdate{DBID: 5, Status: StatusUp, Mode: ModeSynced})
	if ups := Decide(topo, obsOf(obsFailed(2))); len(ups) != 0 {
		t.Fatalf("acted with the mirror unseen: %+v", ups)
	}
	if ups := Decide(topo, obsOf(obsFailed(2), obsMirror(5))); len(ups) != 2 || ups[0].Role != RolePrimary {
		t.Fatalf("with the mirror seen: %+v, want the promotion", ups)
	}
}

// A switchover's primary, stopped on purpose, looks like a crash to an
// agent that has not applied the switchover yet (restarted midway). Its
// report must not turn the switchover into a failover; the same report
// made once the agent has caught up (no checkpoint read: a real crash)
// does.
func TestDecide_SwitchoverSourceSeenByStaleAgent(t *testing.T) {
	topo := decApply(t, decUp(t, true), Command{Type: CmdSwitchover, Content: 0})
	sw, ok := topo.SwitchoverOf(0)
	if !ok || sw.From != 2 || sw.To != 5 || sw.Version != topo.ConfigVersion {
		t.Fatalf("switchover of content 0: %+v %v, want from 2 to 5 at version %d", sw, ok, topo.ConfigVersion)
	}
	stopped := Observation{DBID: 2, Failed: true, ConfigVersion: topo.ConfigVersion - 1}
	obs := obsOf(stopped, Observation{DBID: 5, Up: true, InRecovery: true, Streaming: true, ConfigVersion: topo.ConfigVersion})
	if ups := Decide(topo, obs); len(ups) != 0 {
		t.Fatalf("a stale agent's report of the stopped switchover source changed the topology: %+v", ups)
	}

	stopped.ConfigVersion = topo.ConfigVersion
	obs[2] = stopped
	ups := Decide(topo, obs)
	if !slices.ContainsFunc(ups, func(u SegmentUpdate) bool { return u.DBID == 5 && u.Role == RolePrimary }) {
		t.Fatalf("a crash of the switchover source reported against the current topology did not fail over to dbid 5: %+v", ups)
	}
}

// A primary's agent that vouched for its mirror against version v may
// lose its primary before it sees the s recorded at v+1 on that vouch:
// its last report is then against v. The failover still happens (a dead
// primary's agent never catches up), so the mirror must hold every
// commit acknowledged meanwhile: an agent keeps synchronous replication
// on for a mirror recorded up, whatever mode its lagging view shows, and
// clears it only for a mirror recorded down (rule 3, DESIGN.md). The
// simulated-cluster property lost a commit when its agents took a view's
// "n" as licence.
func TestDecide_FailoverOnReportFromBeforeTheSync(t *testing.T) {
	topo := decUp(t, false)
	vouchedAt := topo.ConfigVersion
	ups, topo := decideAndApply(t, topo, obsOf(obsPrimary(2, 5), obsMirror(5)))
	if p, _ := topo.Primary(0); len(ups) != 2 || p.Mode != ModeSynced {
		t.Fatalf("vouch at version %d: %+v, want content 0 recorded in sync", vouchedAt, ups)
	}
	lost := obsFailed(2)
	lost.ConfigVersion = vouchedAt
	mirror := obsMirror(5)
	mirror.ConfigVersion = vouchedAt
	ups, after := decideAndApplyAsIs(t, topo, obsOf(lost, mirror))
	if m, _ := after.Segment(5); m.Role != RolePrimary {
		t.Fatalf("primary lost, reported against version %d (before the s at %d): %+v, want dbid 5 promoted", vouchedAt, topo.ConfigVersion, ups)
	}
}

// auto_recover recovers a mirror recorded down once its agent reports on
// it again, not one on a host counted lost: WithLostHosts gives those
// instances a failed observation, which is no report from their agent.
func TestAutoRecover_NotOnALostHost(t *testing.T) {
	topo := &Topology{ConfigVersion: 7, Segments: []Segment{
		{DBID: 2, Content: 0, Role: RolePrimary, PreferredRole: RoleMirror, Status: StatusUp, Mode: ModeNotSynced, Hostname: "b"},
		{DBID: 5, Content: 0, Role: RoleMirror, PreferredRole: RolePrimary, Status: StatusDown, Mode: ModeNotSynced, Hostname: "a"},
	}}
	reported := map[int]Observation{2: {DBID: 2, Up: true}, 5: {DBID: 5, Failed: true}}
	if got := AutoRecover(topo, reported, nil); len(got) != 1 || got[0].DBID != 5 {
		t.Fatalf("host a reporting again: recoveries %+v, want dbid 5's", got)
	}
	lost := map[string]bool{"a": true}
	if got := AutoRecover(topo, WithLostHosts(topo, map[int]Observation{2: {DBID: 2, Up: true}}, lost), lost); len(got) != 0 {
		t.Fatalf("host a lost: recoveries %+v, want none", got)
	}
}
