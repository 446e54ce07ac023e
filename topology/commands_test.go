package topology

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// expect says what a generated command must do when its base version is
// current; a stale one must always be rejected.
type expect int

const (
	mayAccept expect = iota
	mustAccept
	mustReject
)

// applyModel runs random command sequences through Apply and checks rule
// 6 as the topology sees it: versions only rise, a rejected command
// changes nothing, an accepted one raises the version by exactly one and
// appends history, and Apply never touches its input.
type applyModel struct {
	cur   *Topology
	clock time.Time
	moves int // numbers the fresh locations recoveries move instances to
}

func (m *applyModel) version() uint64 {
	if m.cur == nil {
		return 0
	}
	return m.cur.ConfigVersion
}

func (m *applyModel) history() []HistoryEntry {
	if m.cur == nil {
		return nil
	}
	return m.cur.History
}

func jsonOf(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// apply runs cmd through Apply against the model's topology and checks
// what every command must do; it returns the topology before and the one
// after (nil when the command was rejected) for the command's own checks.
func (m *applyModel) apply(rt *rapid.T, cmd Command, want expect) (*Topology, *Topology) {
	m.clock = m.clock.Add(time.Second)
	cmd.Time = m.clock
	cmd.BaseVersion = m.version()
	if rapid.IntRange(0, 9).Draw(rt, "stale") == 0 {
		cmd.BaseVersion = uint64(rapid.IntRange(0, int(m.version())+3).Filter(func(v int) bool { return uint64(v) != m.version() }).Draw(rt, "base"))
	}
	stale := cmd.BaseVersion != m.version()
	before, cmdBefore := jsonOf(m.cur), jsonOf(cmd)
	next, err := Apply(m.cur, cmd)
	if jsonOf(m.cur) != before {
		rt.Fatalf("Apply(%s) changed its input topology", cmd.Type)
	}
	if jsonOf(cmd) != cmdBefore {
		rt.Fatalf("Apply(%s) changed its command", cmd.Type)
	}
	switch {
	case stale && !errors.Is(err, ErrStale):
		rt.Fatalf("%s from version %d on version %d: err = %v, want ErrStale", cmd.Type, cmd.BaseVersion, m.version(), err)
	case !stale && want == mustReject && err == nil:
		rt.Fatalf("%s accepted, want rejected: %s", cmd.Type, cmdBefore)
	case !stale && want == mustAccept && err != nil:
		rt.Fatalf("%s rejected: %v", cmd.Type, err)
	}
	if err != nil {
		if next != nil {
			rt.Fatalf("rejected %s returned a topology", cmd.Type)
		}
		return m.cur, nil
	}
	if next.ConfigVersion != m.version()+1 {
		rt.Fatalf("%s: version %d -> %d, want +1", cmd.Type, m.version(), next.ConfigVersion)
	}
	old := m.history()
	if len(next.History) <= len(old) {
		rt.Fatalf("%s: history %d rows -> %d, want more", cmd.Type, len(old), len(next.History))
	}
	for i := range old {
		if jsonOf(next.History[i]) != jsonOf(old[i]) {
			rt.Fatalf("%s: history row %d rewritten: %+v -> %+v", cmd.Type, i, old[i], next.History[i])
		}
	}
	if err := Validate(next); err != nil {
		rt.Fatalf("%s accepted into an invalid topology: %v", cmd.Type, err)
	}
	checkNoAliasing(rt, m.cur, next, cmd)
	if cmd.Type != CmdUpdateSegments {
		checkRolesKept(rt, m.cur, next, cmd.Type)
	}
	checkInvariants(rt, next)
	prev := m.cur
	m.cur = next
	return prev, next
}

// checkNoAliasing scribbles over the result and the command and checks the
// others did not change with them: a later change to one must never leak
// into a topology another goroutine reads.
func checkNoAliasing(rt *rapid.T, cur, next *Topology, cmd Command) {
	curBefore, nextBefore := jsonOf(cur), jsonOf(next)
	saved := next.Clone()
	for i := range next.Segments {
		next.Segments[i].Port = -1
	}
	for i := range next.History {
		next.History[i].Desc = "scribbled"
	}
	for i := range next.Mirrors.DataDirs {
		next.Mirrors.DataDirs[i] = "scribbled"
	}
	if jsonOf(cur) != curBefore {
		rt.Fatalf("%s: the result shares memory with the input topology", cmd.Type)
	}
	copy(next.Segments, saved.Segments)
	copy(next.History, saved.History)
	copy(next.Mirrors.DataDirs, saved.Mirrors.DataDirs)
	for i := range cmd.Segments {
		cmd.Segments[i].Port = -1
	}
	for i := range cmd.Mirrors.DataDirs {
		cmd.Mirrors.DataDirs[i] = "scribbled"
	}
	if jsonOf(next) != nextBefore {
		rt.Fatalf("%s: the result shares memory with the command", cmd.Type)
	}
}

func (m *applyModel) initCommand(rt *rapid.T) {
	nhosts := rapid.IntRange(1, 3).Draw(rt, "hosts")
	perHost := rapid.IntRange(1, 2).Draw(rt, "perHost")
	s := &Spec{
		Coordinator: CoordinatorSpec{Hostname: "cdw", Port: 5432, DataDir: "/data/c"},
		Primary:     PortDirs{PortBase: 6000},
		Mirror:      &MirrorSpec{PortDirs: PortDirs{PortBase: 7000}},
	}
	for i := range nhosts {
		s.SegmentHosts = append(s.SegmentHosts, Host{Hostname: fmt.Sprintf("sdw%d", i+1)})
	}
	for k := range perHost {
		s.Primary.DataDirs = append(s.Primary.DataDirs, fmt.Sprintf("/data/p%d", k))
		s.Mirror.DataDirs = append(s.Mirror.DataDirs, fmt.Sprintf("/data/m%d", k))
	}
	segs, err := s.Segments(rapid.Bool().Draw(rt, "withMirrors"))
	if err != nil {
		rt.Fatalf("Segments: %v", err)
	}
	cmd := Command{Type: CmdInit, ClusterID: "c1", SegPrefix: "gpseg", Mirrors: s.MirrorDefaults(), Segments: segs}
	want := mustAccept
	if m.cur.Initialized() {
		want = mustReject
	}
	switch rapid.IntRange(0, 5).Draw(rt, "initFault") {
	case 0:
		cmd.Segments, want = nil, mustReject
	case 1:
		cmd.Segments[len(segs)-1].DBID, want = 1, mustReject
	case 2:
		cmd.Segments[0].Role, want = "x", mustReject
	}
	m.apply(rt, cmd, want)
}

func (m *applyModel) addMirrorsCommand(rt *rapid.T) {
	want := mustAccept
	mirrors, err := PlaceMirrors(m.cur, nil, PlacementGroup, MirrorDefaults{PortBase: 8000, DataDirs: []string{"/data/x0", "/data/x1"}})
	if err != nil {
		mirrors, want = []Segment{{DBID: 500, Content: 0, Role: RoleMirror, PreferredRole: RoleMirror, Mode: ModeNotSynced,
			Status: StatusDown, Port: 9000, Hostname: "sdw1", Address: "sdw1", DataDir: "/data/y"}}, mayAccept
	}
	switch rapid.IntRange(0, 4).Draw(rt, "addFault") {
	case 0:
		mirrors, want = nil, mustReject
	case 1:
		mirrors[0].Role, want = RolePrimary, mustReject
	case 2:
		mirrors[0].Content, want = 99, mustReject
	}
	m.apply(rt, Command{Type: CmdAddMirrors, Segments: mirrors}, want)
}

func (m *applyModel) updateCommand(rt *rapid.T) {
	var dbids []int
	if m.cur != nil {
		for _, s := range m.cur.Segments {
			dbids = append(dbids, s.DBID)
		}
	}
	want := mayAccept
	var updates []SegmentUpdate
	for range rapid.IntRange(0, 3).Draw(rt, "updates") {
		u := SegmentUpdate{
			DBID:   rapid.SampledFrom(append(dbids, 999)).Draw(rt, "dbid"),
			Role:   rapid.SampledFrom([]Role{"", RolePrimary, RoleMirror, "x"}).Draw(rt, "role"),
			Status: rapid.SampledFrom([]Status{"", StatusUp, StatusDown, "x"}).Draw(rt, "status"),
			Mode:   rapid.SampledFrom([]Mode{"", ModeSynced, ModeNotSynced, "x"}).Draw(rt, "mode"),
			Desc:   rapid.SampledFrom([]string{"", "fts: marked down"}).Draw(rt, "desc"),
		}
		if u.DBID == 999 || u.Role == "x" || u.Status == "x" || u.Mode == "x" {
			want = mustReject
		}
		updates = append(updates, u)
	}
	if len(updates) == 0 {
		want = mustReject
	}
	m.apply(rt, Command{Type: CmdUpdateSegments, Updates: updates}, want)
}

func TestApply_Property(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		m := &applyModel{clock: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
		if rapid.Bool().Draw(rt, "startEmpty") {
			m.cur = &Topology{}
		}
		last := m.version()
		rt.Repeat(map[string]func(*rapid.T){
			"init":       m.initCommand,
			"addMirrors": m.addMirrorsCommand,
			"update":     m.updateCommand,
			"setPaused": func(rt *rapid.T) {
				m.apply(rt, Command{Type: CmdSetPaused, Paused: rapid.Bool().Draw(rt, "paused")}, mustAccept)
			},
			"create":             m.createCommand,
			"switchover":         m.switchoverCommand,
			"completeSwitchover": m.completeSwitchoverCommand,
			"syncPair":           m.syncPairCommand,
			"failMirror":         m.failMirrorCommand,
			"recover":            m.recoverCommand,
			"finishRecovery":     m.finishRecoveryCommand,
			"unknownType": func(rt *rapid.T) {
				m.apply(rt, Command{Type: CommandType(rapid.IntRange(int(CmdRecover)+1, 255).Draw(rt, "type"))}, mustReject)
			},
			"": func(rt *rapid.T) {
				if m.version() < last {
					rt.Fatalf("config version went down: %d -> %d", last, m.version())
				}
				last = m.version()
				if m.cur != nil {
					checkInvariants(rt, m.cur)
				}
			},
		})
	})
}

// TestApply_PropertyRecoverSwitchover starts from a running mirrored
// cluster and draws the commands of switchovers and recoveries, valid
// and not, with the updates that make them valid (pairs in sync, mirrors
// lost) and those Decide writes to end them, checking the invariants
// after every step.
func TestApply_PropertyRecoverSwitchover(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		m := &applyModel{clock: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
		m.runningCluster(rt)
		last := m.version()
		rt.Repeat(map[string]func(*rapid.T){
			"switchover":         m.switchoverCommand,
			"completeSwitchover": m.completeSwitchoverCommand,
			"syncPair":           m.syncPairCommand,
			"failMirror":         m.failMirrorCommand,
			"recover":            m.recoverCommand,
			"finishRecovery":     m.finishRecoveryCommand,
			"update":             m.updateCommand,
			"setPaused": func(rt *rapid.T) {
				m.apply(rt, Command{Type: CmdSetPaused, Paused: rapid.Bool().Draw(rt, "paused")}, mustAccept)
			},
			"": func(rt *rapid.T) {
				if m.version() < last {
					rt.Fatalf("config version went down: %d -> %d", last, m.version())
				}
				last = m.version()
				checkInvariants(rt, m.cur)
			},
		})
	})
}

func TestApply_RejectsStale(t *testing.T) {
	topo := &Topology{ConfigVersion: 3}
	_, err := Apply(topo, Command{Type: CmdSetPaused, BaseVersion: 2})
	if !errors.Is(err, ErrStale) {
		t.Fatalf("err = %v, want ErrStale", err)
	}
}

// TestApply_HistoryBounded: the history keeps the newest MaxHistory rows,
// in order, however many commands are applied (issue 12, hole 9).
func TestApply_HistoryBounded(t *testing.T) {
	topo := &Topology{}
	const n = MaxHistory + 250
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		next, err := Apply(topo, Command{Type: CmdSetPaused, BaseVersion: topo.ConfigVersion, Paused: i%2 == 0, Time: start.Add(time.Duration(i) * time.Second)})
		if err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
		topo = next
	}
	if got := len(topo.History); got != MaxHistory {
		t.Fatalf("history holds %d rows after %d commands, want %d", got, n, MaxHistory)
	}
	if first, last := topo.History[0].Time, topo.History[MaxHistory-1].Time; !first.Equal(start.Add((n-MaxHistory)*time.Second)) || !last.Equal(start.Add((n-1)*time.Second)) {
		t.Fatalf("history spans %s..%s, want the newest %d rows", first, last, MaxHistory)
	}
	if topo.ConfigVersion != n {
		t.Fatalf("config version %d, want %d", topo.ConfigVersion, n)
	}
}

// TestApply_UpdateValidatesTheContentsItTouches: an update is checked
// only on the contents it names (validateContents), and still refuses
// what Validate refuses there: a content with two primaries, or a mirror
// and no primary, whether the command is small or large enough to use a
// dbid index.
func TestApply_UpdateValidatesTheContentsItTouches(t *testing.T) {
	topo := &Topology{ConfigVersion: 1}
	for c := range 40 {
		topo.Segments = append(topo.Segments,
			Segment{DBID: 2*c + 1, Content: c, Role: RolePrimary, PreferredRole: RolePrimary, Mode: ModeSynced, Status: StatusUp, Hostname: "h1", Address: "h1", Port: 6000 + c, DataDir: fmt.Sprintf("/p/%d", c)},
			Segment{DBID: 2*c + 2, Content: c, Role: RoleMirror, PreferredRole: RoleMirror, Mode: ModeSynced, Status: StatusUp, Hostname: "h2", Address: "h2", Port: 7000 + c, DataDir: fmt.Sprintf("/m/%d", c)})
	}
	if err := Validate(topo); err != nil {
		t.Fatalf("fixture: %v", err)
	}
	for _, n := range []int{1, 30} { // 30 updates: the indexed path
		var fine []SegmentUpdate
		for c := range n {
			fine = append(fine, SegmentUpdate{DBID: 2*c + 2, Status: StatusDown, Mode: ModeNotSynced})
		}
		next, err := Apply(topo, Command{Type: CmdUpdateSegments, BaseVersion: 1, Updates: fine})
		if err != nil {
			t.Fatalf("%d mirrors marked down: %v", n, err)
		}
		if s, _ := next.Segment(2*(n-1) + 2); s.Status != StatusDown {
			t.Fatalf("%d updates: dbid %d is %s, want down", n, s.DBID, s.Status)
		}
		twoPrimaries := append(slices.Clone(fine[:n-1]), SegmentUpdate{DBID: 2*(n-1) + 2, Role: RolePrimary})
		if _, err := Apply(topo, Command{Type: CmdUpdateSegments, BaseVersion: 1, Updates: twoPrimaries}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "two primaries") {
			t.Fatalf("%d updates, one promoting a mirror beside its primary: err = %v, want two primaries refused", n, err)
		}
		noPrimary := append(slices.Clone(fine[:n-1]), SegmentUpdate{DBID: 2*(n-1) + 1, Role: RoleMirror})
		if _, err := Apply(topo, Command{Type: CmdUpdateSegments, BaseVersion: 1, Updates: noPrimary}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("%d updates, one demoting a primary: err = %v, want refused", n, err)
		}
	}
}
