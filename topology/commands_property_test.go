package topology

import (
	"fmt"
	"slices"

	"pgregory.net/rapid"
)

// The switchover and recovery commands of TestApply_Property, and the
// helpers that bring the model's cluster into states where they are
// valid: a pair up and in sync, a mirror failed, a switchover completed
// (as Decide would), a recovery finished or failed. Each command is
// drawn valid or invalid, and checked to be accepted exactly when its
// preconditions, restated here from the rules rather than from the
// code, hold.

func (m *applyModel) topo() *Topology {
	if m.cur == nil {
		return &Topology{}
	}
	return m.cur
}

// pairs returns the contents that have a primary and a mirror.
func (m *applyModel) pairs() []int {
	t := m.topo()
	var out []int
	for _, c := range t.Contents() {
		_, okP := t.Primary(c)
		_, okM := t.Mirror(c)
		if okP && okM {
			out = append(out, c)
		}
	}
	return out
}

// inSyncPair: content c's primary and mirror are both recorded up and in
// sync, and no switchover of c is in progress: what a switchover needs.
func inSyncPair(t *Topology, c int) bool {
	p, okP := t.Primary(c)
	mr, okM := t.Mirror(c)
	_, busy := t.SwitchoverOf(c)
	return okP && okM && !busy &&
		p.Status == StatusUp && mr.Status == StatusUp && p.Mode == ModeSynced && mr.Mode == ModeSynced
}

// createCommand records every pending instance up, as Decide does when
// their agents report them created: a cluster that runs.
func (m *applyModel) createCommand(rt *rapid.T) {
	var ups []SegmentUpdate
	for _, d := range m.topo().Pending {
		ups = append(ups, SegmentUpdate{DBID: d, Status: StatusUp, Desc: "test: created"})
	}
	if len(ups) == 0 {
		return
	}
	_, next := m.apply(rt, Command{Type: CmdUpdateSegments, Updates: ups}, mustAccept)
	if next != nil && len(next.Pending) != 0 {
		rt.Fatalf("instances %v still pending once recorded up", next.Pending)
	}
}

// runningCluster initializes the model's cluster with mirrors (1..3
// hosts, 1..2 primaries each) and records every instance created.
func (m *applyModel) runningCluster(rt *rapid.T) {
	nhosts := rapid.IntRange(1, 3).Draw(rt, "hosts")
	perHost := rapid.IntRange(1, 2).Draw(rt, "perHost")
	s := &Spec{
		Coordinator: CoordinatorSpec{Hostname: "cdw", Address: "cdw", Port: 5432, DataDir: "/data/c"},
		Primary:     PortDirs{PortBase: 6000},
		Mirror:      &MirrorSpec{PortDirs: PortDirs{PortBase: 7000}},
	}
	for i := range nhosts {
		h := fmt.Sprintf("sdw%d", i+1)
		s.SegmentHosts = append(s.SegmentHosts, Host{Hostname: h, Address: h})
	}
	for k := range perHost {
		s.Primary.DataDirs = append(s.Primary.DataDirs, fmt.Sprintf("/data/p%d", k))
		s.Mirror.DataDirs = append(s.Mirror.DataDirs, fmt.Sprintf("/data/m%d", k))
	}
	segs, err := s.Segments(true)
	if err != nil {
		rt.Fatalf("Segments: %v", err)
	}
	m.cur = decApply(rt, &Topology{}, Command{Type: CmdInit, ClusterID: "c1", SegPrefix: "gpseg", Mirrors: s.MirrorDefaults(), Segments: segs})
	var ups []SegmentUpdate
	for _, d := range m.cur.Pending {
		ups = append(ups, SegmentUpdate{DBID: d, Status: StatusUp, Desc: "test: created"})
	}
	m.cur = decUpdate(rt, m.cur, ups...)
}

// syncPairCommand records a pair up and in sync, as Decide does on its
// primary's vouch.
func (m *applyModel) syncPairCommand(rt *rapid.T) {
	pairs := m.pairs()
	if len(pairs) == 0 {
		return
	}
	c := rapid.SampledFrom(pairs).Draw(rt, "syncContent")
	p, _ := m.cur.Primary(c)
	mr, _ := m.cur.Mirror(c)
	m.apply(rt, Command{Type: CmdUpdateSegments, Updates: []SegmentUpdate{
		{DBID: p.DBID, Status: StatusUp, Mode: ModeSynced, Desc: "test: in sync"},
		{DBID: mr.DBID, Status: StatusUp, Mode: ModeSynced, Desc: "test: in sync"},
	}}, mustAccept)
}

// failMirrorCommand records a mirror lost, as Decide does.
func (m *applyModel) failMirrorCommand(rt *rapid.T) {
	pairs := m.pairs()
	if len(pairs) == 0 {
		return
	}
	c := rapid.SampledFrom(pairs).Draw(rt, "failContent")
	p, _ := m.cur.Primary(c)
	mr, _ := m.cur.Mirror(c)
	m.apply(rt, Command{Type: CmdUpdateSegments, Updates: []SegmentUpdate{
		{DBID: mr.DBID, Status: StatusDown, Mode: ModeNotSynced, Desc: "test: mirror lost"},
		{DBID: p.DBID, Mode: ModeNotSynced, Desc: "test: pair not in sync"},
	}}, mustAccept)
}

// switchoverCommand asks to swap a drawn content (sometimes one the
// cluster does not have). It must be accepted exactly when the pair is
// up and in sync with no switchover in progress, and then only record
// the swap: no role changes until Decide completes it.
func (m *applyModel) switchoverCommand(rt *rapid.T) {
	pick := append(m.topo().Contents(), 99)
	if ok := slices.DeleteFunc(slices.Clone(pick), func(c int) bool { return !inSyncPair(m.topo(), c) }); len(ok) > 0 && decLikely(rt, "pickInSync") {
		pick = ok // mostly a pair that can swap
	}
	c := rapid.SampledFrom(pick).Draw(rt, "swContent")
	want := mustReject
	if inSyncPair(m.topo(), c) {
		want = mustAccept
	}
	before, next := m.apply(rt, Command{Type: CmdSwitchover, Content: c}, want)
	if next == nil {
		return
	}
	p, _ := before.Primary(c)
	mr, _ := before.Mirror(c)
	sw, ok := next.SwitchoverOf(c)
	if wantSw := (Switchover{Content: c, From: p.DBID, To: mr.DBID, Version: next.ConfigVersion}); !ok || sw != wantSw {
		rt.Fatalf("switchover of content %d recorded as %+v (%v), want %+v", c, sw, ok, wantSw)
	}
}

// completeSwitchoverCommand is Decide's completion of a switchover in
// progress: the mirror promoted, the old primary following it.
func (m *applyModel) completeSwitchoverCommand(rt *rapid.T) {
	sws := m.topo().Switchovers
	if len(sws) == 0 {
		return
	}
	sw := rapid.SampledFrom(sws).Draw(rt, "switchover")
	_, next := m.apply(rt, Command{Type: CmdUpdateSegments, Updates: []SegmentUpdate{
		{DBID: sw.To, Role: RolePrimary, Mode: ModeNotSynced, Desc: "test: switchover: promoted"},
		{DBID: sw.From, Role: RoleMirror, Status: StatusDown, Mode: ModeNotSynced, Rejoin: true, Desc: "test: switchover: follows"},
	}}, mustAccept)
	if next == nil {
		return
	}
	if _, still := next.SwitchoverOf(sw.Content); still {
		rt.Fatalf("content %d: switchover still in progress after its roles swapped", sw.Content)
	}
	if !next.IsRejoining(sw.From) {
		rt.Fatalf("content %d: old primary dbid %d not rejoining after the swap", sw.Content, sw.From)
	}
}

// recoverable restates when dbid may be recovered: a mirror recorded
// down, not being created or rejoined, not already being recovered (in
// t or earlier in the same command), whose content's primary is up.
func recoverable(t *Topology, dbid int, earlier []int) bool {
	s, ok := t.Segment(dbid)
	if !ok || s.Role != RoleMirror || s.Status != StatusDown || t.IsPending(dbid) || t.IsRejoining(dbid) || slices.Contains(earlier, dbid) {
		return false
	}
	if _, busy := t.Recovering(dbid); busy {
		return false
	}
	p, ok := t.Primary(s.Content)
	return ok && p.Status == StatusUp
}

// recoverCommand asks for up to three recoveries, of any instances (or
// an unknown one), of any kind (or a bogus one), some moved to a fresh
// location and some onto another instance's port.
func (m *applyModel) recoverCommand(rt *rapid.T) {
	t := m.topo()
	dbids := append(decDBIDs(t), 999)
	cmd := Command{Type: CmdRecover, Parallel: rapid.IntRange(0, 3).Draw(rt, "parallel"), Auto: rapid.Bool().Draw(rt, "auto")}
	want := mustAccept
	var asked []int
	collidesWith := -1
	n := rapid.IntRange(1, 3).Draw(rt, "recoveries")
	if rapid.IntRange(0, 7).Draw(rt, "noRecoveries") == 0 {
		n = 0
	}
	for i := range n {
		// Mostly an instance that can be recovered, and no more requests
		// than there are such instances, so that whole commands are often
		// valid.
		pick := dbids
		ok := slices.DeleteFunc(slices.Clone(dbids), func(d int) bool { return !recoverable(t, d, asked) })
		if len(ok) > 0 && decLikely(rt, "pickRecoverable") {
			pick = ok
		} else if len(ok) == 0 && i > 0 && decLikely(rt, "enough") {
			break
		}
		req := RecoveryRequest{
			DBID: rapid.SampledFrom(pick).Draw(rt, "recoverDBID"),
			Kind: rapid.SampledFrom([]RecoveryKind{RecoveryIncremental, RecoveryFull, RecoveryIncremental, RecoveryFull, RecoveryIncremental, RecoveryFull, "differential"}).Draw(rt, "kind"),
		}
		if req.Kind != RecoveryIncremental && req.Kind != RecoveryFull {
			want = mustReject
		}
		if !recoverable(t, req.DBID, asked) {
			want = mustReject
		}
		switch rapid.IntRange(0, 7).Draw(rt, "move") {
		case 0:
			m.moves++
			host := fmt.Sprintf("new%d", m.moves)
			req.Move = &Location{Hostname: host, Address: host, Port: 9000 + m.moves, DataDir: fmt.Sprintf("/data/new%d", m.moves)}
		case 1:
			others := slices.DeleteFunc(slices.Clone(t.Segments), func(s Segment) bool { return s.DBID == req.DBID })
			if len(others) == 0 {
				break
			}
			o := rapid.SampledFrom(others).Draw(rt, "collideWith")
			m.moves++
			req.Move = &Location{Hostname: o.Hostname, Address: o.Address, Port: o.Port, DataDir: fmt.Sprintf("/data/new%d", m.moves)}
			collidesWith = o.DBID
		}
		asked = append(asked, req.DBID)
		cmd.Recover = append(cmd.Recover, req)
	}
	if len(cmd.Recover) == 0 {
		want = mustReject
	}
	if collidesWith >= 0 && want == mustAccept {
		want = mustReject
		if slices.Contains(asked, collidesWith) {
			want = mayAccept // the instance in the way moves too
		}
	}
	before, next := m.apply(rt, cmd, want)
	if next != nil {
		checkRecoverApplied(rt, before, next, cmd)
	}
}

// checkRecoverApplied checks what an accepted recover command did: one new
// job; each instance queued under it, still a mirror recorded down,
// moved where asked (a move is always a full copy); nothing else moved.
func checkRecoverApplied(rt *rapid.T, before, next *Topology, cmd Command) {
	if next.RecoveryJob != before.RecoveryJob+1 {
		rt.Fatalf("recover: job %d -> %d, want +1", before.RecoveryJob, next.RecoveryJob)
	}
	if cmd.Parallel > 0 && next.RecoveryParallel != cmd.Parallel {
		rt.Fatalf("recover -B %d: parallel is %d", cmd.Parallel, next.RecoveryParallel)
	}
	asked := map[int]RecoveryRequest{}
	for _, req := range cmd.Recover {
		asked[req.DBID] = req
	}
	for _, old := range before.Segments {
		s, _ := next.Segment(old.DBID)
		req, ok := asked[old.DBID]
		if !ok {
			if s != old {
				rt.Fatalf("recover changed dbid %d, which it was not asked to recover: %+v -> %+v", old.DBID, old, s)
			}
			continue
		}
		want := old
		kind := req.Kind
		if req.Move != nil {
			want.Hostname, want.Address, want.Port, want.DataDir = req.Move.Hostname, req.Move.Address, req.Move.Port, req.Move.DataDir
			kind = RecoveryFull
		}
		if s != want {
			rt.Fatalf("recover of dbid %d left it as %+v, want %+v", old.DBID, s, want)
		}
		r, ok := next.Recovering(old.DBID)
		if !ok || r.Job != next.RecoveryJob || r.Kind != kind || r.Auto != cmd.Auto {
			rt.Fatalf("recover of dbid %d recorded as %+v (%v), want job %d kind %s auto %v", old.DBID, r, ok, next.RecoveryJob, kind, cmd.Auto)
		}
	}
}

// finishRecoveryCommand ends an active recovery as Decide does: the
// instance recorded up, or the recovery recorded failed.
func (m *applyModel) finishRecoveryCommand(rt *rapid.T) {
	var active []Recovery
	for _, r := range m.topo().Recoveries {
		if r.Active {
			active = append(active, r)
		}
	}
	if len(active) == 0 {
		return
	}
	r := rapid.SampledFrom(active).Draw(rt, "finish")
	u := SegmentUpdate{DBID: r.DBID, Status: StatusUp, Desc: "test: recovered"}
	failed := rapid.Bool().Draw(rt, "recoveryFailed")
	if failed {
		u = SegmentUpdate{DBID: r.DBID, RecoveryFailed: true, Desc: "test: recovery failed"}
	}
	_, next := m.apply(rt, Command{Type: CmdUpdateSegments, Updates: []SegmentUpdate{u}}, mustAccept)
	if next == nil {
		return
	}
	if _, still := next.Recovering(r.DBID); still {
		rt.Fatalf("recovery of dbid %d still in progress after it ended (failed %v)", r.DBID, failed)
	}
	if failed && !slices.Contains(next.NoAutoRecover, r.DBID) {
		rt.Fatalf("failed recovery of dbid %d not kept from auto_recover", r.DBID)
	}
}

// checkRolesKept: no command but an explicit segment update changes a
// role. A switchover only records its intent; the promotion is Decide's
// (rule 2), as is every failover.
func checkRolesKept(rt *rapid.T, before, next *Topology, typ CommandType) {
	if before == nil {
		return
	}
	for _, old := range before.Segments {
		if s, _ := next.Segment(old.DBID); s.Role != old.Role {
			rt.Fatalf("%s changed dbid %d's role %s -> %s", typ, old.DBID, old.Role, s.Role)
		}
	}
}

// checkInvariants checks what every committed topology keeps, whatever
// the commands were.
func checkInvariants(rt *rapid.T, t *Topology) {
	if err := Validate(t); err != nil {
		rt.Fatalf("committed topology invalid: %v", err)
	}
	acting := map[int]int{}
	for _, s := range t.Segments {
		if s.Role == RolePrimary && s.Status == StatusUp {
			if other, ok := acting[s.Content]; ok {
				rt.Fatalf("rule 1: content %d has two acting primaries, dbid %d and dbid %d", s.Content, other, s.DBID)
			}
			acting[s.Content] = s.DBID
		}
	}
	// Lists of instances in progress name existing instances still down:
	// each leaves its list when the instance is recorded up.
	for name, list := range map[string][]int{"pending": t.Pending, "rejoin": t.Rejoin, "no_auto_recover": t.NoAutoRecover} {
		for _, d := range list {
			if s, ok := t.Segment(d); !ok || s.Status != StatusDown {
				rt.Fatalf("%s lists dbid %d, which is %+v (exists %v)", name, d, s, ok)
			}
		}
	}
	seen := map[int]bool{}
	for _, sw := range t.Switchovers {
		from, _ := t.Segment(sw.From)
		to, _ := t.Segment(sw.To)
		if seen[sw.Content] || from.Content != sw.Content || to.Content != sw.Content ||
			from.Role != RolePrimary || from.Status != StatusUp || to.Role != RoleMirror {
			rt.Fatalf("switchover %+v in progress over primary %+v and mirror %+v (another of its content: %v)", sw, from, to, seen[sw.Content])
		}
		seen[sw.Content] = true
	}
	limit := t.RecoveryParallel
	if limit <= 0 {
		limit = DefaultRecoveryParallel
	}
	active, queued := 0, 0
	recovering := map[int]bool{}
	for _, r := range t.Recoveries {
		if _, ok := t.Segment(r.DBID); !ok || recovering[r.DBID] || r.Job < 1 || r.Job > t.RecoveryJob {
			rt.Fatalf("recovery %+v: unknown or repeated instance, or job outside 1..%d", r, t.RecoveryJob)
		}
		recovering[r.DBID] = true
		if r.Active {
			active++
		} else {
			queued++
		}
	}
	if queued > 0 && active < limit {
		rt.Fatalf("%d recoveries queued while only %d of %d run", queued, active, limit)
	}
}
