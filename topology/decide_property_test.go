package topology

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// The Decide property tests drive random fault sequences through Decide
// and Apply and check the safety rules of /DESIGN.md after every step.
//
// TestDecide_PropertyArbitraryObservations feeds Decide anything at all
// (observations that lie, contradict each other or name strangers) and
// checks what Decide must uphold whatever it is told: the topology stays
// valid, a promotion needs a pair recorded in sync (rule 2), a demoted
// primary is never taken back (rule 7), pause stops failure handling.
//
// TestDecide_PropertySimulatedCluster adds a model of the world: instances
// that run or not, commit logs, synchronous replication switched on and
// off by the agents as rule 3 allows, recovery jobs whose steps the
// agents run later, acknowledged commits, and agents that act on and
// report against the topology they last saw. Its observations are true
// (but partial, late, against older versions, and sometimes false
// alarms), and it checks rule 4: the instance the topology names primary
// always holds every commit the content acknowledged, so no failover
// loses one; and that a command computed from an older topology is
// refused as stale and changes nothing.

// decRandomCluster builds, through Apply, an initialized cluster of a
// coordinator and 1..4 segments, each content with or without a mirror,
// each instance created or still pending, each pair in sync or not.
func decRandomCluster(rt *rapid.T) *Topology {
	n := rapid.IntRange(1, 4).Draw(rt, "segments")
	var primaries, mirrors []Segment
	dbid := 0
	mk := func(content int, role Role) Segment {
		dbid++
		return decSegment(dbid, content, role)
	}
	for c := CoordinatorContent; c < n; c++ {
		primaries = append(primaries, mk(c, RolePrimary))
	}
	for c := CoordinatorContent; c < n; c++ {
		if decLikely(rt, fmt.Sprintf("mirror%d", c)) {
			mirrors = append(mirrors, mk(c, RoleMirror))
		}
	}
	topo := &Topology{}
	var up []int
	var ups []SegmentUpdate
	for _, p := range primaries {
		if decLikely(rt, fmt.Sprintf("created%d", p.DBID)) {
			up = append(up, p.Content)
			ups = append(ups, SegmentUpdate{DBID: p.DBID, Status: StatusUp, Desc: "test setup: created"})
		}
	}
	mirrorsAtInit := rapid.Bool().Draw(rt, "mirrorsAtInit")
	if mirrorsAtInit {
		topo = decApply(rt, topo, Command{Type: CmdInit, ClusterID: "c1", Segments: append(primaries, mirrors...)})
	} else {
		topo = decApply(rt, topo, Command{Type: CmdInit, ClusterID: "c1", Segments: primaries})
		if len(ups) > 0 && rapid.Bool().Draw(rt, "primariesUpBeforeMirrors") {
			topo = decUpdate(rt, topo, ups...)
			ups = nil
		}
		if len(mirrors) > 0 {
			topo = decApply(rt, topo, Command{Type: CmdAddMirrors, Segments: mirrors})
		}
	}
	for _, m := range mirrors {
		// A mirror is built from its primary, so it can only be up when
		// the primary is; the pair is in sync only when both are.
		if !slices.Contains(up, m.Content) || !decLikely(rt, fmt.Sprintf("created%d", m.DBID)) {
			continue
		}
		u := SegmentUpdate{DBID: m.DBID, Status: StatusUp, Desc: "test setup: created"}
		if rapid.Bool().Draw(rt, fmt.Sprintf("synced%d", m.Content)) {
			u.Mode = ModeSynced
			p, _ := topo.Primary(m.Content)
			ups = append(ups, SegmentUpdate{DBID: p.DBID, Mode: ModeSynced, Desc: "test setup: in sync"})
		}
		ups = append(ups, u)
	}
	if len(ups) > 0 {
		topo = decUpdate(rt, topo, ups...)
	}
	if !decLikely(rt, "running") {
		topo = decApply(rt, topo, Command{Type: CmdSetPaused, Paused: true})
	}
	return topo
}

// decLikely draws a bool that is true three times in four: most generated
// clusters are set up and running, where failovers can happen.
func decLikely(rt *rapid.T, label string) bool {
	return rapid.IntRange(0, 3).Draw(rt, label) != 0
}

func decDBIDs(t *Topology) []int {
	var out []int
	for _, s := range t.Segments {
		out = append(out, s.DBID)
	}
	slices.Sort(out)
	return out
}

func decContradicts(obs map[int]Observation) bool {
	for _, o := range obs {
		if o.Up && o.Failed {
			return true
		}
	}
	return false
}

// decCheckDecision checks one result of Decide against the topology it
// was computed from. demoted holds the instances demoted by a promotion
// and not rebuilt since (rule 7).
func decCheckDecision(t decFatalfer, before *Topology, obs map[int]Observation, ups []SegmentUpdate, demoted map[int]bool) {
	t.Helper()
	newPrimary := map[int]int{}
	for _, u := range ups {
		s, ok := before.Segment(u.DBID)
		if !ok {
			t.Fatalf("update of unknown dbid %d: %+v", u.DBID, ups)
		}
		if u.Role == RolePrimary {
			if other, ok := newPrimary[s.Content]; ok && other != u.DBID {
				t.Fatalf("content %d: one decision gives role p to dbid %d and dbid %d: %+v", s.Content, other, u.DBID, ups)
			}
			newPrimary[s.Content] = u.DBID
			if demoted[u.DBID] {
				t.Fatalf("rule 7: dbid %d, demoted by an earlier failover and not rebuilt, given role p back: %+v", u.DBID, ups)
			}
		}
		if u.Role == RolePrimary && s.Role != RolePrimary {
			// A promotion: rule 2, judged on the topology before it.
			p, _ := before.Primary(s.Content)
			if s.Status != StatusUp || s.Mode != ModeSynced || p.Mode != ModeSynced {
				t.Fatalf("rule 2: dbid %d (status %s, mode %s) promoted while its primary dbid %d had mode %s: %+v",
					s.DBID, s.Status, s.Mode, p.DBID, p.Mode, ups)
			}
			demotedToo := slices.ContainsFunc(ups, func(o SegmentUpdate) bool {
				return o.DBID == p.DBID && o.Role == RoleMirror && o.Status == StatusDown
			})
			if !demotedToo {
				t.Fatalf("dbid %d promoted without demoting dbid %d in the same decision: %+v", s.DBID, p.DBID, ups)
			}
		}
		// A switchover is the operator's: it completes, or is abandoned,
		// paused or not.
		sw, switching := before.SwitchoverOf(s.Content)
		switching = switching && (u.DBID == sw.From || u.DBID == sw.To)
		if before.Paused && !switching && (u.Status == StatusDown || (u.Role != "" && u.Role != s.Role)) {
			t.Fatalf("paused, yet dbid %d updated to role %q status %q: %+v", u.DBID, u.Role, u.Status, ups)
		}
		// Rule 7: a mirror recorded down comes up only while it is being
		// built: pending, rejoining, or recovering, and then only on a
		// report made after this job's recovery step (a mirror that kept
		// running through a cut may look streaming on a dead connection).
		if u.Status == StatusUp && s.Role == RoleMirror && s.Status != StatusUp &&
			!before.IsPending(s.DBID) && !before.IsRejoining(s.DBID) {
			rec, recovering := before.Recovering(s.DBID)
			if !recovering || !rec.Active || obs[s.DBID].RecoveredJob != rec.Job {
				t.Fatalf("rule 7: dbid %d, a mirror recorded down, neither pending nor rejoining, recorded up without a rebuild (recovery %+v %v, report %+v): %+v",
					u.DBID, rec, recovering, obs[s.DBID], ups)
			}
		}
		if u.RecoveryFailed {
			rec, recovering := before.Recovering(s.DBID)
			if o := obs[s.DBID]; !recovering || !rec.Active || o.RecoveryError == "" || o.RecoveryJob != rec.Job {
				t.Fatalf("recovery of dbid %d (%+v %v) ended as failed on report %+v: %+v", u.DBID, rec, recovering, o, ups)
			}
		}
		if u.Mode == ModeSynced && s.Mode != ModeSynced {
			// Rule 3: s only on the primary's word, given against the
			// topology the decision starts from: a vouch from before the
			// mirror was last marked down is stale.
			p, _ := before.Primary(s.Content)
			m, _ := before.Mirror(s.Content)
			o, ok := obs[p.DBID]
			if !ok || !o.Up || o.InRecovery || !slices.Contains(o.SyncedMirrors, m.DBID) || o.ConfigVersion != before.ConfigVersion {
				t.Fatalf("rule 3: content %d recorded in sync (at version %d), but primary dbid %d did not vouch for dbid %d against it (%+v): %+v",
					s.Content, before.ConfigVersion, p.DBID, m.DBID, o, ups)
			}
		}
		decCheckSwitchover(t, before, obs, ups, u, s)
	}
}

// decCheckSwitchover: while a switchover runs, its primary is demoted
// either by the switchover's completion (the mirror replayed past the
// primary's shutdown checkpoint) or by a failover on a crash reported by
// an agent that knew of the switchover; a stale agent's "not running" of
// a primary stopped on purpose is no crash.
func decCheckSwitchover(t decFatalfer, before *Topology, obs map[int]Observation, ups []SegmentUpdate, u SegmentUpdate, s Segment) {
	t.Helper()
	sw, ok := before.SwitchoverOf(s.Content)
	if !ok || u.DBID != sw.From || u.Role != RoleMirror {
		return
	}
	from, to := obs[sw.From], obs[sw.To]
	if u.Rejoin {
		if from.StoppedLSN == 0 || !to.Up || !to.InRecovery || to.LSN <= from.StoppedLSN {
			t.Fatalf("switchover of content %d completed on reports %+v and %+v: %+v", s.Content, from, to, ups)
		}
		return
	}
	if !from.Failed || from.StoppedLSN != 0 || from.ConfigVersion < sw.Version {
		t.Fatalf("switchover of content %d turned into a failover on report %+v (switchover began at version %d): %+v", s.Content, from, sw.Version, ups)
	}
}

// decStep runs one Decide and applies its result, checking everything
// that holds whatever the observations were. It returns the updates and
// the new topology.
func decStep(rt decFatalfer, topo *Topology, obs map[int]Observation, demoted map[int]bool) ([]SegmentUpdate, *Topology) {
	rt.Helper()
	if ups := Decide(topo, nil); len(ups) != 0 {
		rt.Fatalf("Decide with no observations = %+v, want no change", ups)
	}
	ups, next := decideAndApplyAsIs(rt, topo, obs)
	decCheckDecision(rt, topo, obs, ups, demoted)
	if len(ups) == 0 {
		return nil, topo
	}
	if next.ConfigVersion != topo.ConfigVersion+1 {
		rt.Fatalf("version %d -> %d after a decision, want +1", topo.ConfigVersion, next.ConfigVersion)
	}
	if err := Validate(next); err != nil {
		rt.Fatalf("committed topology invalid: %v", err)
	}
	for _, u := range ups {
		if u.Role == RoleMirror && !u.Rejoin {
			if s, _ := topo.Segment(u.DBID); s.Role == RolePrimary {
				demoted[u.DBID] = true // failed over: back only through a rebuild
			}
		}
	}
	// Decide's result answers the observations: repeated, the same ones
	// call for nothing within a few decisions (a steady cluster writes no
	// log entries; a mirror just recorded created is marked lost only in
	// the next one). Not checked for contradictory observations.
	if !decContradicts(obs) {
		cur := next
		for step := 1; ; step++ {
			again, after := decideAndApplyAsIs(rt, cur, obs)
			if len(again) == 0 {
				break
			}
			if step == 3 {
				rt.Fatalf("Decide not steady: after applying %+v the same observations still call for %+v", ups, again)
			}
			cur = after
		}
	}
	return ups, next
}

func decTogglePause(rt *rapid.T, topo *Topology) *Topology {
	return decApply(rt, topo, Command{Type: CmdSetPaused, Paused: !topo.Paused})
}

func TestDecide_PropertyArbitraryObservations(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		topo := decRandomCluster(rt)
		dbids := decDBIDs(topo)
		strangers := append(slices.Clone(dbids), 0, topo.MaxDBID()+1)
		demoted := map[int]bool{}
		last := topo.ConfigVersion
		for i := range rapid.IntRange(1, 40).Draw(rt, "steps") {
			switch rapid.IntRange(0, 9).Draw(rt, fmt.Sprintf("action%d", i)) {
			case 0:
				topo = decTogglePause(rt, topo)
			case 1:
				topo = decStartRecovery(rt, topo)
			case 2:
				topo = decStartSwitchover(rt, topo)
			default:
				obs := map[int]Observation{}
				for _, d := range rapid.SliceOfNDistinct(rapid.SampledFrom(strangers), 0, len(strangers), rapid.ID[int]).Draw(rt, "observed") {
					obs[d] = decArbitraryObservation(rt, topo, d, strangers)
				}
				_, topo = decStep(rt, topo, obs, demoted)
			}
			if topo.ConfigVersion < last {
				rt.Fatalf("config version went down: %d -> %d", last, topo.ConfigVersion)
			}
			last = topo.ConfigVersion
		}
	})
}

// decArbitraryObservation is anything at all an agent could say of dbid,
// made against the current topology or, late or from a lagging agent, an
// older one, about any recovery job.
func decArbitraryObservation(rt *rapid.T, topo *Topology, d int, strangers []int) Observation {
	version := topo.ConfigVersion
	if !decLikely(rt, "current") {
		version = uint64(rapid.IntRange(0, int(topo.ConfigVersion)).Draw(rt, "version"))
	}
	return Observation{
		DBID:           d,
		Up:             rapid.Bool().Draw(rt, "up"),
		Failed:         rapid.Bool().Draw(rt, "failed"),
		InRecovery:     rapid.Bool().Draw(rt, "inRecovery"),
		Streaming:      rapid.Bool().Draw(rt, "streaming"),
		SyncedMirrors:  rapid.SliceOfNDistinct(rapid.SampledFrom(strangers), 0, 2, rapid.ID[int]).Draw(rt, "synced"),
		StalledMirrors: rapid.SliceOfNDistinct(rapid.SampledFrom(strangers), 0, 2, rapid.ID[int]).Draw(rt, "stalled"),
		LSN:            rapid.SampledFrom([]uint64{0, 5, 15, 25}).Draw(rt, "lsn"),
		StoppedLSN:     rapid.SampledFrom([]uint64{0, 0, 10, 20}).Draw(rt, "stoppedLSN"),
		RecoveryError:  rapid.SampledFrom([]string{"", "", "pg_rewind: could not find common ancestor"}).Draw(rt, "recoveryError"),
		RecoveryJob:    rapid.IntRange(0, topo.RecoveryJob+1).Draw(rt, "recoveryJob"),
		RecoveredJob:   rapid.IntRange(0, topo.RecoveryJob+1).Draw(rt, "recoveredJob"),
		ConfigVersion:  version,
	}
}

// decStartRecovery is gprecoverseg of one mirror that can be recovered,
// if there is one.
func decStartRecovery(rt *rapid.T, topo *Topology) *Topology {
	var can []int
	for _, s := range topo.Segments {
		if CanRecover(topo, s.DBID) == nil {
			can = append(can, s.DBID)
		}
	}
	if len(can) == 0 {
		return topo
	}
	req := RecoveryRequest{DBID: rapid.SampledFrom(can).Draw(rt, "recover"),
		Kind: rapid.SampledFrom([]RecoveryKind{RecoveryIncremental, RecoveryFull}).Draw(rt, "kind")}
	return decApply(rt, topo, Command{Type: CmdRecover, Recover: []RecoveryRequest{req}, Parallel: rapid.IntRange(0, 2).Draw(rt, "parallel")})
}

// decStartSwitchover is gpagent switchover of a pair that can swap, if
// there is one.
func decStartSwitchover(rt *rapid.T, topo *Topology) *Topology {
	var can []int
	for _, c := range topo.Contents() {
		if inSyncPair(topo, c) {
			can = append(can, c)
		}
	}
	if len(can) == 0 {
		return topo
	}
	return decApply(rt, topo, Command{Type: CmdSwitchover, Content: rapid.SampledFrom(can).Draw(rt, "switchover")})
}

// decInstance is one PostgreSQL instance as the world has it.
type decInstance struct {
	created     bool
	running     bool
	inRecovery  bool
	log         []int // the commit ids it holds, in order
	syncOn      bool  // as a primary: synchronous_standby_names names its mirror
	awaitRewind bool  // demoted by a failover: never started again before a rebuild (rule 7)
	recovered   int   // the recovery job whose step (rewind or copy) its agent last ran
}

// decWorld is the simulated cluster: the committed topology, the
// instances, the replication links and what each content acknowledged.
type decWorld struct {
	rt      *rapid.T
	topo    *Topology
	inst    map[int]*decInstance
	stalled map[int]bool  // content -> its replication link makes no progress
	acked   map[int][]int // content -> commit ids acknowledged to clients
	commit  int
	demoted map[int]bool
	last    uint64
	trace   []string
	// Each agent acts on, and reports against, the last topology it has
	// seen, which may lag the committed one.
	seen  map[int]uint64       // dbid -> the config version its agent has seen
	views map[uint64]*Topology // every committed topology since the start
	late  map[int]Observation  // reports held up in the network, delivered later
}

func newDecWorld(rt *rapid.T) *decWorld {
	w := &decWorld{rt: rt, topo: decRandomCluster(rt), inst: map[int]*decInstance{},
		stalled: map[int]bool{}, acked: map[int][]int{}, demoted: map[int]bool{},
		seen: map[int]uint64{}, views: map[uint64]*Topology{}}
	w.views[w.topo.ConfigVersion] = w.topo
	for _, s := range w.topo.Segments {
		w.seen[s.DBID] = w.topo.ConfigVersion
		in := &decInstance{}
		if !w.topo.IsPending(s.DBID) {
			in.created, in.running, in.inRecovery = true, true, s.Role == RoleMirror
			// A pair recorded s has synchronous replication on (rule 3).
			in.syncOn = s.Role == RolePrimary && s.Mode == ModeSynced
		}
		w.inst[s.DBID] = in
	}
	w.last = w.topo.ConfigVersion
	return w
}

func (w *decWorld) logf(format string, args ...any) {
	w.trace = append(w.trace, fmt.Sprintf("v%d: ", w.topo.ConfigVersion)+fmt.Sprintf(format, args...))
}

func (w *decWorld) fatalf(format string, args ...any) {
	w.rt.Helper()
	w.rt.Fatalf("%s\ntrace:\n  %s", fmt.Sprintf(format, args...), strings.Join(w.trace, "\n  "))
}

// actingPrimary returns the instance the topology names primary of c when
// it runs as a primary: the only one that takes writes and serves WAL.
func (w *decWorld) actingPrimary(c int) (int, bool) {
	p, ok := w.topo.Primary(c)
	if !ok {
		return 0, false
	}
	in := w.inst[p.DBID]
	return p.DBID, in.running && !in.inRecovery
}

// canStream: a running mirror receives WAL only from the instance the
// topology names its content's primary, over a link that is not stalled,
// and only if its log is a prefix of the primary's (no divergence).
func (w *decWorld) canStream(dbid int) bool {
	s, _ := w.topo.Segment(dbid)
	in := w.inst[dbid]
	if !in.running || !in.inRecovery || w.stalled[s.Content] {
		return false
	}
	src, ok := w.actingPrimary(s.Content)
	if !ok || src == dbid {
		return false
	}
	srcLog := w.inst[src].log
	return len(in.log) <= len(srcLog) && slices.Equal(in.log, srcLog[:len(in.log)])
}

// view is the topology dbid's agent has seen.
func (w *decWorld) view(dbid int) *Topology { return w.views[w.seen[dbid]] }

// observe is what dbid's agent truthfully reports now, against the
// topology it has seen.
func (w *decWorld) observe(dbid int) Observation {
	in := w.inst[dbid]
	switch {
	case !in.created:
		// Being created: neither up nor failed.
		return Observation{DBID: dbid, ConfigVersion: w.seen[dbid]}
	case !in.running:
		return Observation{DBID: dbid, Failed: true, ConfigVersion: w.seen[dbid]}
	}
	o := Observation{DBID: dbid, Up: true, InRecovery: in.inRecovery, RecoveredJob: in.recovered, ConfigVersion: w.seen[dbid]}
	if in.inRecovery {
		o.Streaming = w.canStream(dbid)
		return o
	}
	s, _ := w.topo.Segment(dbid)
	m, ok := w.topo.Mirror(s.Content)
	if !ok || s.Role != RolePrimary {
		return o
	}
	if in.syncOn && w.canStream(m.DBID) && slices.Equal(w.inst[m.DBID].log, in.log) {
		o.SyncedMirrors = []int{m.DBID}
	}
	if w.stalled[s.Content] && w.inst[m.DBID].running {
		o.StalledMirrors = []int{m.DBID}
	}
	return o
}

// reports is what the leader holds from the agents: true reports, some
// missing (too old to trust) and a few false alarms (a probe that timed
// out on a live instance).
func (w *decWorld) reports(dbids []int) map[int]Observation {
	obs := map[int]Observation{}
	for _, d := range dbids {
		switch rapid.IntRange(0, 19).Draw(w.rt, "report") {
		case 0, 1, 2, 3:
		case 4:
			obs[d] = Observation{DBID: d, Failed: true, ConfigVersion: w.seen[d]}
		default:
			obs[d] = w.observe(d)
		}
	}
	// Some of them are held up and reach the leader only later, after
	// newer ones.
	if rapid.IntRange(0, 4).Draw(w.rt, "holdUp") == 0 {
		w.late = maps.Clone(obs)
	}
	return obs
}

func (w *decWorld) apply(cmd Command) {
	w.rt.Helper()
	w.topo = decApply(w.rt, w.topo, cmd)
	w.checkVersion()
}

func (w *decWorld) checkVersion() {
	w.rt.Helper()
	if w.topo.ConfigVersion < w.last {
		w.fatalf("config version went down: %d -> %d", w.last, w.topo.ConfigVersion)
	}
	w.last = w.topo.ConfigVersion
	w.views[w.topo.ConfigVersion] = w.topo
}

// decide passes obs to Decide, commits the result, and lets the agents act
// on the committed change: the promoted mirror runs pg_promote, the
// demoted primary is fenced (rules 5 and 7: it takes no write once the
// promotion is committed, and is not started again before a rebuild).
func (w *decWorld) decide(obs map[int]Observation) {
	w.rt.Helper()
	before := w.topo
	ups, next := decStep(decWorldT{w}, w.topo, obs, w.demoted)
	if len(ups) == 0 {
		return
	}
	w.logf("decide %s -> %s", jsonOf(obs), jsonOf(ups))
	w.topo = next
	w.checkVersion()
	for _, u := range ups {
		s, _ := before.Segment(u.DBID)
		if u.Role != RolePrimary || s.Role != RoleMirror {
			continue
		}
		old, _ := before.Primary(s.Content)
		if missing := decMissing(w.acked[s.Content], w.inst[u.DBID].log); len(missing) > 0 {
			w.fatalf("rule 4: content %d: dbid %d promoted without acknowledged commits %v (it holds %v)",
				s.Content, u.DBID, missing, w.inst[u.DBID].log)
		}
		w.inst[old.DBID].running, w.inst[old.DBID].awaitRewind = false, true
		if in := w.inst[u.DBID]; in.running {
			in.inRecovery = false
		}
	}
}

// decWorldT reports a failure with the world's trace.
type decWorldT struct{ w *decWorld }

func (t decWorldT) Helper() { t.w.rt.Helper() }

func (t decWorldT) Fatalf(format string, args ...any) {
	t.w.rt.Helper()
	t.w.fatalf(format, args...)
}

func decMissing(acked, log []int) []int {
	var out []int
	for _, id := range acked {
		if !slices.Contains(log, id) {
			out = append(out, id)
		}
	}
	return out
}

// write is a client commit on content c, routed to its acting primary.
// With synchronous replication on it is acknowledged only once the mirror
// has it; if the mirror cannot take it the commit waits (and stays
// unacknowledged: the client gives up, the commit may be visible locally).
func (w *decWorld) write(c int) {
	p, ok := w.actingPrimary(c)
	if !ok {
		return
	}
	in := w.inst[p]
	w.commit++
	in.log = append(in.log, w.commit)
	if in.syncOn {
		m, ok := w.topo.Mirror(c)
		if !ok || !w.canStream(m.DBID) {
			w.logf("content %d: commit %d on dbid %d waits for its mirror", c, w.commit, p)
			return
		}
		w.inst[m.DBID].log = slices.Clone(in.log)
	}
	w.acked[c] = append(w.acked[c], w.commit)
	w.logf("content %d: commit %d acknowledged by dbid %d", c, w.commit, p)
}

// setSync is the primary's agent switching synchronous replication: on at
// any time, off only once the topology it has seen records the mirror
// down (rule 3), as agent.manageSync does. "Not in sync" would not do:
// an agent that vouched for its mirror against version v, whose view
// still says n, may not yet have seen the s recorded at v+1 on that
// vouch; with sync off it acknowledges a commit the mirror lacks, and a
// failover loses it (this property found that when the rule said n;
// TestDecide_FailoverOnReportFromBeforeTheSync keeps the case).
func (w *decWorld) setSync(c int, on bool) {
	p, ok := w.actingPrimary(c)
	if !ok {
		return
	}
	m, hasM := w.view(p).Mirror(c)
	if !hasM {
		return
	}
	if !on && m.Status == StatusUp {
		return
	}
	w.inst[p].syncOn = on
	w.logf("content %d: dbid %d sync %v", c, p, on)
}

// agents is one round of the agents' own work, each part of it done or
// not (an agent may be slow): mirrors catch up, and each primary's agent
// switches synchronous replication on for a mirror the topology records
// up, and off for one it records down.
func (w *decWorld) agents() {
	for _, s := range w.topo.Segments {
		if rapid.Bool().Draw(w.rt, "seeTopology") {
			w.seen[s.DBID] = w.topo.ConfigVersion
		}
	}
	for _, s := range w.topo.Segments {
		if w.canStream(s.DBID) && rapid.Bool().Draw(w.rt, "catchUp") {
			src, _ := w.actingPrimary(s.Content)
			w.inst[s.DBID].log = slices.Clone(w.inst[src].log)
		}
	}
	for _, c := range w.topo.Contents() {
		p, ok := w.actingPrimary(c)
		if !ok {
			continue
		}
		if m, ok := w.view(p).Mirror(c); ok && rapid.Bool().Draw(w.rt, "syncAgent") {
			w.setSync(c, m.Status == StatusUp)
		}
	}
	for _, r := range w.topo.Recoveries {
		if rapid.Bool().Draw(w.rt, "recoveryStep") {
			w.recoveryStep(r.DBID)
		}
	}
}

// start starts a stopped instance in the role the topology gives it (its
// agent reads the topology first, rule 7), or creates a pending one.
func (w *decWorld) start(dbid int) {
	in := w.inst[dbid]
	s, _ := w.topo.Segment(dbid)
	if in.running || in.awaitRewind {
		return
	}
	if !in.created {
		if s.Role == RoleMirror {
			src, ok := w.actingPrimary(s.Content)
			if !ok || w.stalled[s.Content] {
				return
			}
			in.log = slices.Clone(w.inst[src].log) // base backup
		}
		in.created = true
	}
	in.running, in.inRecovery = true, s.Role == RoleMirror
	w.logf("dbid %d started (recovery %v)", dbid, in.inRecovery)
}

// rebuild is gprecoverseg for a mirror recorded down: a recovery job in
// the topology, whose step the mirror's agent runs later (recoveryStep);
// Decide records the mirror up on a report made after the step.
func (w *decWorld) rebuild() {
	var can []int
	for _, s := range w.topo.Segments {
		if CanRecover(w.topo, s.DBID) == nil {
			can = append(can, s.DBID)
		}
	}
	if len(can) == 0 {
		return
	}
	dbid := rapid.SampledFrom(can).Draw(w.rt, "recover")
	kind := rapid.SampledFrom([]RecoveryKind{RecoveryIncremental, RecoveryFull}).Draw(w.rt, "kind")
	w.apply(Command{Type: CmdRecover, Recover: []RecoveryRequest{{DBID: dbid, Kind: kind}}})
	w.logf("%s recovery of dbid %d queued (job %d)", kind, dbid, w.topo.RecoveryJob)
}

// recoveryStep is dbid's agent running its active recovery as its view of
// the topology has it: pg_rewind or a copy from the acting primary, then
// the instance started as a standby. Until then the old instance may still
// run, and look streaming.
func (w *decWorld) recoveryStep(dbid int) {
	rec, ok := w.view(dbid).Recovering(dbid)
	s, _ := w.topo.Segment(dbid)
	src, up := w.actingPrimary(s.Content)
	if !ok || !rec.Active || !up || w.stalled[s.Content] || w.inst[dbid].recovered == rec.Job {
		return
	}
	*w.inst[dbid] = decInstance{created: true, running: true, inRecovery: true, log: slices.Clone(w.inst[src].log), recovered: rec.Job}
	delete(w.demoted, dbid)
	w.logf("dbid %d: recovery job %d step done from dbid %d", dbid, rec.Job, src)
}

// staleCommand is a leader acting on an older topology than the committed
// one (a deposed leader, or one whose FSM lags): whatever it computed from
// that view, a decision, a switchover, a recovery or a pause, Apply
// refuses as stale and the committed topology does not change.
func (w *decWorld) staleCommand(dbids []int) {
	w.rt.Helper()
	var older []uint64
	for v := range w.views {
		if v < w.topo.ConfigVersion {
			older = append(older, v)
		}
	}
	if len(older) == 0 {
		return
	}
	slices.Sort(older)
	v := rapid.SampledFrom(older).Draw(w.rt, "staleVersion")
	old := w.views[v]
	cmds := []Command{{Type: CmdSetPaused, Paused: !old.Paused}}
	if ups := Decide(old, w.reports(dbids)); len(ups) > 0 {
		cmds = append(cmds, Command{Type: CmdUpdateSegments, Updates: ups})
	}
	for _, c := range old.Contents() {
		if inSyncPair(old, c) {
			cmds = append(cmds, Command{Type: CmdSwitchover, Content: c})
		}
	}
	for _, s := range old.Segments {
		if CanRecover(old, s.DBID) == nil {
			cmds = append(cmds, Command{Type: CmdRecover, Recover: []RecoveryRequest{{DBID: s.DBID, Kind: RecoveryFull}}})
		}
	}
	cmd := rapid.SampledFrom(cmds).Draw(w.rt, "staleCmd")
	cmd.BaseVersion = v
	before := jsonOf(w.topo)
	next, err := Apply(w.topo, cmd)
	if !errors.Is(err, ErrStale) || next != nil {
		w.fatalf("%s computed from version %d applied at version %d: err = %v, want ErrStale and no topology", cmd.Type, v, w.topo.ConfigVersion, err)
	}
	if jsonOf(w.topo) != before {
		w.fatalf("a stale %s changed the committed topology", cmd.Type)
	}
}

// checkNoLoss is rule 4 at every step: the instance the topology names
// primary of each content holds every commit the content acknowledged.
func (w *decWorld) checkNoLoss() {
	w.rt.Helper()
	for _, c := range w.topo.Contents() {
		p, _ := w.topo.Primary(c)
		if missing := decMissing(w.acked[c], w.inst[p.DBID].log); len(missing) > 0 {
			w.fatalf("rule 4: content %d: primary dbid %d lacks acknowledged commits %v", c, p.DBID, missing)
		}
	}
}

func TestDecide_PropertySimulatedCluster(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		w := newDecWorld(rt)
		dbids := decDBIDs(w.topo)
		contents := w.topo.Contents()
		anyDBID := rapid.SampledFrom(dbids)
		anyContent := rapid.SampledFrom(contents)
		// Action names, each as many times as its weight (rapid favours
		// the first ones a little more).
		actions := []string{
			"write", "write", "write", "observe", "observe", "observe", "observe",
			"agents", "agents", "agents", "crash", "crash", "start", "start", "rebuild", "rebuild",
			"randomObserve", "sync", "stall", "pause", "late", "staleCommand", "rebuild", "recoveryStep",
		}
		for i := range rapid.IntRange(5, 80).Draw(rt, "steps") {
			switch actions[rapid.IntRange(0, len(actions)-1).Draw(rt, fmt.Sprintf("action%d", i))] {
			case "observe":
				w.decide(w.reports(dbids))
			case "late":
				// Reports held up in the network arrive after newer
				// ones: made against an older topology, about instances
				// since failed over, rebuilt or recovered.
				if w.late != nil {
					w.logf("late reports %s", jsonOf(w.late))
					w.decide(w.late)
				}
			case "staleCommand":
				w.staleCommand(dbids)
			case "randomObserve":
				// Anything for the liveness fields; a primary's vouching
				// for its mirror stays true (the agent's contract), but
				// may be left out.
				obs := map[int]Observation{}
				for _, d := range rapid.SliceOfNDistinct(anyDBID, 0, len(dbids), rapid.ID[int]).Draw(rt, "observed") {
					o := Observation{
						DBID:       d,
						Up:         rapid.Bool().Draw(rt, "up"),
						Failed:     !decLikely(rt, "failed"),
						InRecovery: rapid.Bool().Draw(rt, "inRecovery"),
						Streaming:  rapid.Bool().Draw(rt, "streaming"),
					}
					if rapid.Bool().Draw(rt, "vouch") {
						o.SyncedMirrors = w.observe(d).SyncedMirrors
					}
					o.ConfigVersion = w.seen[d]
					if rapid.Bool().Draw(rt, "stall") {
						o.StalledMirrors = rapid.SliceOfNDistinct(anyDBID, 0, 2, rapid.ID[int]).Draw(rt, "stalled")
					}
					obs[d] = o
				}
				w.decide(obs)
			case "write":
				w.write(anyContent.Draw(rt, "content"))
			case "crash":
				// A dead postmaster is seen at once; its report may or may
				// not reach the leader before anything else happens.
				d := anyDBID.Draw(rt, "dbid")
				if w.inst[d].running {
					w.inst[d].running = false
					w.logf("dbid %d crashed", d)
					if rapid.Bool().Draw(rt, "reportedAtOnce") {
						w.decide(w.reports(dbids))
					}
				}
			case "start":
				w.start(anyDBID.Draw(rt, "dbid"))
			case "agents":
				w.agents()
			case "sync":
				w.setSync(anyContent.Draw(rt, "content"), rapid.Bool().Draw(rt, "on"))
			case "stall":
				c := anyContent.Draw(rt, "content")
				w.stalled[c] = !w.stalled[c]
				w.logf("content %d: link stalled %v", c, w.stalled[c])
			case "rebuild":
				w.rebuild()
			case "recoveryStep":
				if len(w.topo.Recoveries) > 0 {
					w.recoveryStep(rapid.SampledFrom(w.topo.Recoveries).Draw(rt, "recovery").DBID)
				}
			case "pause":
				w.topo = decTogglePause(rt, w.topo)
				w.checkVersion()
				w.logf("paused %v", w.topo.Paused)
			}
			w.checkNoLoss()
		}
	})
}
