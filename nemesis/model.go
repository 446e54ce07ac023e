// Package nemesis is the fast, model-level nemesis: seeded random fault
// schedules stepped through the pure rules of package topology (Decide,
// NextStep, the lease and last-heard liveness rules, the sync vouch,
// Apply) on a fake clock, with a small deterministic model of the
// instances (WAL of commit ids, timelines, streaming, synchronous
// replication) and of the network (hosts cut off, agents down, clocks that
// jump, followers only). No goroutines, no network: one schedule takes about a
// millisecond, so 100,000 run in minutes. The agent-level nemesis
// (agent.TestSimNemesis) runs the real daemons; this one covers the
// decision rules under many more interleavings.
package nemesis

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/gpagent/gpagent/topology"
)

// Timings of the model, in the ratios of the agent's defaults.
const (
	tick   = 100 * time.Millisecond
	lease  = 1500 * time.Millisecond
	margin = 500 * time.Millisecond // the leader waits lease + margin
	// grace: the fence watchdog kills a host's primaries this long
	// after its lease ran out unless its live agent fenced them (agent
	// Config.WatchdogGrace: LeaseMargin/2). On the 100 ms tick the kill
	// lands at lease + 300 ms, the leader's loss at lease + margin +
	// 100 ms at the earliest: two ticks apart, as the real half margin.
	grace    = margin / 2
	maxAge   = 1 * time.Second        // reports older than this are not acted on
	hangTime = 600 * time.Millisecond // probe_interval + retries x timeout
	// stallTimeout is replication_stall_timeout: with tick as the probe
	// interval, a switchover is abandoned once its mirror made no
	// progress for topology.SwitchoverBound after the stop (14 ticks).
	stallTimeout = 1 * time.Second
)

// inst is one simulated PostgreSQL server.
type inst struct {
	dbid, content int
	host          string
	running, hung bool
	hungAt        time.Time
	inRecovery    bool
	wal           []uint64 // record ids, unique in the world (commits, or ckptBit|n); LSN = len
	tli           int
	upstream      int // dbid it streams from (a standby)
	syncTo        int // dbid in synchronous_standby_names, 0 for none
	stoppedLSN    uint64
	vouch         topology.SyncVouch
	recoveredJob  int
}

// host is one host and its agent.
type host struct {
	name    string
	agentUp bool
	cut     bool          // cut off from every other host
	offset  time.Duration // its clock's jumps
	renewed time.Time     // its lease, on its own clock
	fenced  bool
	view    *topology.Topology // the topology its agent last saw
	// watchdog: its fence watchdog (package watchdog) runs; it outlives
	// a stopped or wiped agent, not the host. known: the primaries the
	// agent last listed for it (instances.json), which it keeps when the
	// data dir is wiped.
	watchdog bool
	known    []int
	// wiped: its data dir was wiped (lease, Raft log and identity lost);
	// it comes back as a fresh Raft member, which counts toward no
	// quorum and cannot lead until a leader has admitted it.
	wiped bool
}

// Ack is one acknowledged commit, in order.
type Ack struct {
	Commit           uint64
	Content, DBID    int
	Timeline, Time   int
	AfterFinalHealed bool
	// Local: acknowledged with synchronous_commit = local, without the
	// standby: counted for split brain, not required to survive.
	Local bool
}

// Result is what one schedule found.
type Result struct {
	Seed                   uint64
	Acked, Indeterminate   int
	LocalAcked             int
	Lost, Split, Stranded  int
	Faults                 int
	Violations             []string // safety: split brain, lost commits, versions
	Liveness               []string // stranded contents, pairs never back in sync
	Schedule               []string
	FinalVersion, Versions uint64
}

// world is one schedule's state.
type world struct {
	rnd   *rand.Rand
	now   time.Time // true time
	ticks int
	t     *topology.Topology
	insts map[int]*inst
	hosts []*host

	leader    *host
	heard     topology.LastHeard
	swWatch   topology.SwitchoverWatch // the leader's, afresh each term
	reports   map[int]topology.Received
	nextID    uint64
	nextTLI   int
	acks      []Ack
	acked     map[int][]uint64 // by content
	indet     int
	lastVer   uint64
	lastHist  int
	res       *Result
	lastWrite map[int]int // content -> tick of its last ack
	// watchdog: the fence watchdog is modelled. Off, the model shows the
	// split brain of a stopped agent's writable primaries that only the
	// watchdog prevents (TestNemesisModel_NoWatchdog).
	watchdog bool
}

func (w *world) logf(format string, args ...any) {
	w.res.Schedule = append(w.res.Schedule, fmt.Sprintf("t%d: ", w.ticks)+fmt.Sprintf(format, args...))
}

func (w *world) liveness(format string, args ...any) {
	w.res.Liveness = append(w.res.Liveness, fmt.Sprintf("t%d: ", w.ticks)+fmt.Sprintf(format, args...))
}

func (w *world) violate(format string, args ...any) {
	w.res.Violations = append(w.res.Violations, fmt.Sprintf("t%d: ", w.ticks)+fmt.Sprintf(format, args...))
}

func (h *host) clock(now time.Time) time.Time { return now.Add(h.offset) }

// newWorld makes three hosts, contents 0..n-1 with spread mirrors, all
// up and in sync, through Apply as the real init and vouches would.
func newWorld(seed uint64, contents int, watchdog bool) *world {
	w := &world{rnd: rand.New(rand.NewPCG(seed, 0x6d6f64656c)), now: time.Unix(1_700_000_000, 0), insts: map[int]*inst{},
		reports: map[int]topology.Received{}, acked: map[int][]uint64{}, nextTLI: 1, res: &Result{Seed: seed}, lastWrite: map[int]int{}, watchdog: watchdog}
	for i := range 3 {
		w.hosts = append(w.hosts, &host{name: fmt.Sprintf("sdw%d", i+1), agentUp: true, renewed: w.now, watchdog: watchdog})
	}
	var segs []topology.Segment
	var ups []topology.SegmentUpdate
	dbid := 0
	// One schedule in two starts with its last content unmirrored, for
	// the operator's addmirrors to mirror it in the middle of faults.
	unmirrored := -1
	if w.rnd.IntN(2) == 0 {
		unmirrored = contents - 1
	}
	for c := range contents {
		ph, mh := w.hosts[c%3].name, w.hosts[(c+1)%3].name
		for _, r := range []struct {
			role topology.Role
			h    string
			port int
		}{{topology.RolePrimary, ph, 6000 + c}, {topology.RoleMirror, mh, 7000 + c}} {
			mode := topology.ModeSynced
			if c == unmirrored {
				if r.role == topology.RoleMirror {
					continue
				}
				mode = topology.ModeNotSynced
			}
			dbid++
			segs = append(segs, topology.Segment{DBID: dbid, Content: c, Role: r.role, PreferredRole: r.role, Mode: topology.ModeNotSynced,
				Status: topology.StatusDown, Port: r.port, Hostname: r.h, Address: r.h, DataDir: fmt.Sprintf("/d/%d", dbid)})
			ups = append(ups, topology.SegmentUpdate{DBID: dbid, Status: topology.StatusUp, Mode: mode, Desc: "model: created"})
			in := &inst{dbid: dbid, content: c, host: r.h, running: true, tli: 1, inRecovery: r.role == topology.RoleMirror, wal: []uint64{w.checkpointID()}}
			if r.role == topology.RoleMirror {
				in.wal = slices.Clone(w.insts[dbid-1].wal)
				in.upstream = dbid - 1
				w.insts[dbid-1].syncTo = dbid
			}
			w.insts[dbid] = in
		}
	}
	// The mirror defaults addmirrors places with: ports apart from the
	// init's, one datadir (one content at most is added per host).
	mirrors := topology.MirrorDefaults{PortBase: 8000, DataDirs: []string{"/m"}, Placement: string(topology.PlacementSpread)}
	w.t = w.mustApply(topology.Command{Type: topology.CmdInit, ClusterID: "model", Segments: segs, Mirrors: mirrors})
	w.t = w.mustApply(topology.Command{Type: topology.CmdUpdateSegments, Updates: ups})
	for _, h := range w.hosts {
		h.view = w.t
		h.list()
	}
	return w
}

// list records the primaries the agent's view puts on h, as the agent
// writes instances.json for its watchdog; an empty view (a wiped data
// dir) leaves the last list.
func (h *host) list() {
	if len(h.view.Segments) == 0 {
		return
	}
	h.known = h.known[:0]
	for _, s := range h.view.OnHost(h.name) {
		if s.Role == topology.RolePrimary {
			h.known = append(h.known, s.DBID)
		}
	}
}

// watchdogs: each host's fence watchdog, on its host's clock, kills the
// primaries its agent last listed once the lease has run out for grace,
// unless the agent, up, has fenced them (h.fenced); a stopped agent's
// primaries are killed regardless. A wiped lease (zero) ran out long ago.
func (w *world) watchdogs() {
	for _, h := range w.hosts {
		if !h.watchdog || !topology.LeaseExpired(h.renewed, h.clock(w.now), lease+grace) || h.agentUp && h.fenced {
			continue
		}
		for _, dbid := range h.known {
			if in := w.insts[dbid]; in != nil && in.host == h.name && in.running {
				w.logf("watchdog of %s kills dbid %d", h.name, dbid)
				in.running, in.hung = false, false
			}
		}
	}
}

func (w *world) mustApply(cmd topology.Command) *topology.Topology {
	t := w.t
	if t == nil {
		t = &topology.Topology{}
	}
	cmd.BaseVersion, cmd.Time = t.ConfigVersion, w.now
	next, err := topology.Apply(t, cmd)
	if err != nil {
		panic(fmt.Sprintf("model setup: %v", err))
	}
	return next
}

// apply commits cmd as the leader would; a refused command changes
// nothing.
func (w *world) apply(cmd topology.Command) error {
	cmd.BaseVersion, cmd.Time = w.t.ConfigVersion, w.now
	next, err := topology.Apply(w.t, cmd)
	if err != nil {
		return err
	}
	if err := topology.Validate(next); err != nil {
		w.violate("Apply produced an invalid topology: %v", err)
	}
	w.t = next
	return nil
}

func (w *world) host(name string) *host {
	for _, h := range w.hosts {
		if h.name == name {
			return h
		}
	}
	return nil
}

// linked: a and b can talk (neither is cut off, or they are the same).
func (w *world) linked(a, b string) bool {
	return a == b || (!w.host(a).cut && !w.host(b).cut)
}

// streams: the standby s receives WAL from its upstream now.
func (w *world) streams(s *inst) bool {
	u := w.insts[s.upstream]
	if s.upstream == 0 || u == nil || !s.running || s.hung || !s.inRecovery || !u.running || u.hung || !w.linked(s.host, u.host) {
		return false
	}
	// Only a standby whose WAL is a prefix of its upstream's follows it
	// (PostgreSQL refuses to stream across a diverged timeline). Record
	// ids are unique and a WAL only grows at its end or is cut back to a
	// prefix, so equal last records mean equal prefixes.
	n := len(s.wal)
	return n == 0 || n <= len(u.wal) && u.wal[n-1] == s.wal[n-1]
}

// ckptBit marks a checkpoint record's id.
const ckptBit = 1 << 63

func (w *world) checkpointID() uint64 {
	w.nextID++
	return w.nextID | ckptBit
}

func (w *world) replicate() {
	for _, s := range w.insts {
		if w.streams(s) {
			// A standby follows its upstream's timeline, as PostgreSQL's
			// does: its WAL is that timeline's history.
			u := w.insts[s.upstream]
			s.wal, s.tli = append(s.wal, u.wal[len(s.wal):]...), u.tli
		}
	}
}

// write: one client per content tries every instance, as a multi-host
// libpq string with target_session_attrs=read-write does.
func (w *world) write() {
	for _, c := range w.t.Contents() {
		for _, s := range w.t.Content(c) {
			in := w.insts[s.DBID]
			if !in.running || in.hung || in.inRecovery || w.host(in.host).fenced {
				continue
			}
			w.nextID++
			id := w.nextID
			in.wal = append(in.wal, id)
			if in.syncTo != 0 {
				m := w.insts[in.syncTo]
				if m.upstream != in.dbid || !w.streams(m) {
					// Waits for its standby until the client gives up:
					// visible locally, never acknowledged.
					w.indet++
					break
				}
				m.wal = append(m.wal, in.wal[len(m.wal):]...)
			}
			w.acks = append(w.acks, Ack{Commit: id, Content: c, DBID: in.dbid, Timeline: in.tli, Time: w.ticks})
			w.acked[c] = append(w.acked[c], id)
			w.lastWrite[c] = w.ticks
			break
		}
	}
}

// writeLocal: the second client per content, with synchronous_commit =
// local, as real clients may set it (gpbench chaos --seed 3 found a
// split brain through one). It holds a connection to every instance of
// the content, not only the one target_session_attrs would pick, so an
// old primary that still takes writes beside a promoted mirror commits
// too: it commits on every running, not hung, not in recovery, not
// fenced instance and is acknowledged at once, without waiting for the
// standby. Its acknowledgements count for the split-brain check; they
// need not survive a failover (a local commit may be lost), so they are
// not in w.acked.
func (w *world) writeLocal() {
	for _, c := range w.t.Contents() {
		for _, s := range w.t.Content(c) {
			in := w.insts[s.DBID]
			if !in.running || in.hung || in.inRecovery || w.host(in.host).fenced {
				continue
			}
			w.nextID++
			in.wal = append(in.wal, w.nextID)
			w.acks = append(w.acks, Ack{Commit: w.nextID, Content: c, DBID: in.dbid, Timeline: in.tli, Time: w.ticks, Local: true})
			w.res.LocalAcked++
		}
	}
}

// hungLong: in runs but has failed probe_retries probes in a row.
func (w *world) hungLong(in *inst) bool {
	return in.running && in.hung && w.now.Sub(in.hungAt) >= hangTime
}

// killHung is the agent's probe of a hung primary (agent/probe.go
// killHung): a primary of h's view that hung is killed before any
// report says it failed, so that it cannot thaw writable beside the
// mirror the leader promotes on that report; while failover is paused
// it is left running and not reported failed (nothing is promoted
// then), and killed at the first probe after the resume. Probes run
// whether or not the agent reaches the leader. A hung mirror is
// reported failed without a kill.
func (w *world) killHung(h *host, s topology.Segment, in *inst) {
	if s.Role != topology.RolePrimary || h.view.Paused || !w.hungLong(in) {
		return
	}
	w.logf("agent %s kills hung primary dbid %d", h.name, in.dbid)
	in.running, in.hung = false, false
}

// observe is what h's agent reports of its instance in (segment s of
// its view), after killHung.
func (w *world) observe(h *host, s topology.Segment, in *inst) topology.Observation {
	o := topology.Observation{DBID: in.dbid, ConfigVersion: h.view.ConfigVersion, LSN: uint64(len(in.wal)), StoppedLSN: in.stoppedLSN, RecoveredJob: in.recoveredJob}
	switch {
	case !in.running:
		o.Failed = in.stoppedLSN == 0
	case in.hung:
		// A hung primary still running here is one left running while
		// failover is paused: not failed (killHung killed any other).
		o.Failed = w.hungLong(in) && s.Role != topology.RolePrimary
	default:
		o.Up, o.InRecovery = true, in.inRecovery
		o.Streaming = in.inRecovery && w.streams(in)
		if !in.inRecovery && in.syncTo != 0 {
			var ok bool
			if in.vouch, ok = in.vouch.Step(w.health(in), topology.AppName(in.syncTo)); ok {
				o.SyncedMirrors = []int{in.syncTo}
			}
		}
	}
	return o
}

// health is pg_stat_replication of the primary in.
func (w *world) health(in *inst) topology.ReplicationHealth {
	h := topology.ReplicationHealth{CurrentLSN: uint64(len(in.wal))}
	if in.syncTo != 0 {
		h.SyncStandbyNames = topology.AppName(in.syncTo)
	}
	for _, s := range w.insts {
		if s.upstream == in.dbid && w.streams(s) {
			state := "async"
			if s.dbid == in.syncTo {
				state = "sync"
			}
			h.Replicas = append(h.Replicas, topology.ReplicaRow{App: topology.AppName(s.dbid), State: "streaming", SyncState: state, Flush: uint64(len(s.wal))})
		}
	}
	return h
}

// agents: every running agent renews its lease if it reaches the
// leader, fences when the lease ran out, reports, and steps its
// instances through NextStep against the topology it last saw.
func (w *world) agents() {
	for _, h := range w.hosts {
		if !h.agentUp {
			continue
		}
		now := h.clock(w.now)
		reach := w.leader != nil && w.linked(h.name, w.leader.name)
		if reach {
			h.renewed, h.view = now, w.t
			h.fenced = false
		} else if topology.LeaseExpired(h.renewed, now, lease) && len(h.view.Segments) > 0 {
			// An agent whose data dir was wiped knows none of its
			// instances until it hears the leader, so it fences nothing:
			// its primaries are held only by synchronous replication.
			h.fenced = true
		}
		for _, s := range h.view.OnHost(h.name) {
			in := w.insts[s.DBID]
			if !topology.IsSwitchoverSource(h.view, s) {
				// The agent keeps a stop's checkpoint only while its
				// switchover lasts (agent/probe.go): a primary
				// restarted after an abandoned one must not report it.
				in.stoppedLSN = 0
			}
			w.killHung(h, s, in)
			if reach {
				w.reports[s.DBID] = topology.Received{Observation: w.observe(h, s, in), At: w.leader.clock(w.now)}
			}
			w.step(h, s, in)
		}
		if reach {
			w.heard = w.heard.Heard(h.name, w.leader.clock(w.now))
		}
		h.list()
	}
}

func (w *world) step(h *host, s topology.Segment, in *inst) {
	v := topology.LocalView{Running: in.running, Hung: w.hungLong(in), HealthKnown: in.running && !in.hung,
		InRecovery: in.inRecovery, StoppedLSN: in.stoppedLSN, RecoveredJob: in.recoveredJob, Fenced: h.fenced}
	st := topology.NextStep(h.view, s, v)
	if in.hung && st.Kind != topology.StepRestartInPlace && st.Kind != topology.StepFence {
		// A frozen server does nothing asked of it; but the fence of a
		// demoted primary is a SIGKILL (agent/step.go), which a stopped
		// process or one stuck in the kernel cannot outlive: it never
		// runs again. Skipping it let a hung old primary thaw writable
		// under a local-commit client.
		return
	}
	switch st.Kind {
	case topology.StepPromote:
		w.nextTLI++
		in.inRecovery, in.upstream, in.tli, in.syncTo = false, 0, w.nextTLI, 0
		in.vouch = topology.SyncVouch{}
	case topology.StepRestartInPlace:
		in.running, in.hung, in.inRecovery, in.upstream = true, false, false, 0
	case topology.StepSwitchoverStop:
		in.wal = append(in.wal, w.checkpointID()) // the shutdown checkpoint, sent to a streaming standby
		for _, d := range w.insts {
			if d.upstream == in.dbid && w.streams(d) {
				d.wal = append(d.wal, in.wal[len(d.wal):]...)
			}
		}
		in.running, in.stoppedLSN = false, uint64(len(in.wal)-1)
	case topology.StepReadCheckpoint:
		in.stoppedLSN = uint64(max(len(in.wal)-1, 1))
	case topology.StepRejoin:
		in.running, in.inRecovery, in.upstream, in.syncTo, in.stoppedLSN = true, true, st.Upstream.DBID, 0, 0
	case topology.StepCreateMirror:
		// pg_basebackup of the primary, then a standby streaming from it.
		u := w.insts[st.Upstream.DBID]
		if !w.linked(h.name, u.host) || !u.running || u.hung || u.inRecovery {
			return
		}
		in.wal, in.tli = slices.Clone(u.wal), u.tli
		in.running, in.hung, in.inRecovery, in.upstream, in.syncTo, in.stoppedLSN = true, false, true, u.dbid, 0, 0
	case topology.StepRecover:
		u := w.insts[st.Upstream.DBID]
		if !w.linked(h.name, u.host) || !u.running || u.hung {
			return
		}
		n := 0
		for n < len(in.wal) && n < len(u.wal) && in.wal[n] == u.wal[n] {
			n++
		}
		if st.Recovery.Kind == topology.RecoveryFull {
			n = 0
		}
		in.wal, in.tli = slices.Clone(u.wal[:n]), u.tli // rewind discards what the primary lacks
		in.running, in.hung, in.inRecovery, in.upstream, in.syncTo, in.stoppedLSN = true, false, true, u.dbid, 0, 0
		in.recoveredJob = st.Recovery.Job
	case topology.StepFence:
		in.running, in.hung = false, false
	case topology.StepManageSync:
		// Rule 3: synchronous replication follows the topology: on for a
		// mirror recorded up, off only once it is recorded down.
		want := 0
		if m, ok := h.view.Mirror(s.Content); ok && m.Status == topology.StatusUp {
			want = m.DBID
		}
		if in.syncTo != want {
			in.syncTo = want
			in.vouch = topology.SyncSwitchedOn(topology.AppName(want), uint64(len(in.wal)))
		}
	}
}

// lead: the leader, if a majority of agents reach each other, decides.
func (w *world) lead() {
	var quorum []*host
	for _, h := range w.hosts {
		if h.agentUp && !h.cut && !h.wiped {
			quorum = append(quorum, h)
		}
	}
	if len(quorum) < 2 {
		w.leader = nil
		return
	}
	if w.leader == nil || !slices.Contains(quorum, w.leader) {
		w.leader = quorum[w.rnd.IntN(len(quorum))]
		w.heard = topology.NewLastHeard(w.leader.clock(w.now))
		w.reports = map[int]topology.Received{}
		w.swWatch = topology.SwitchoverWatch{}
	}
	for _, h := range w.hosts {
		if h.wiped && h.agentUp && w.linked(h.name, w.leader.name) {
			// The leader replaces the wiped agent's old member by the
			// fresh one, which then gets the log from the leader.
			h.wiped = false
			w.logf("%s rejoined as a fresh Raft member", h.name)
		}
	}
	now := w.leader.clock(w.now)
	var lost map[string]bool
	w.heard, lost = w.heard.Lost(w.t.Hosts(), now, lease+margin)
	obs := topology.WithLostHosts(w.t, topology.FreshObservations(w.reports, now, maxAge), lost)
	ups := topology.Decide(w.t, obs)
	if len(ups) == 0 {
		// As the agent's leader: a switchover whose mirror never
		// reaches the shutdown checkpoint is rolled back.
		ups = w.swWatch.Overdue(w.t, obs, now, topology.SwitchoverBound(tick, tick/2, stallTimeout))
	} else {
		w.swWatch.Overdue(w.t, obs, now, topology.SwitchoverBound(tick, tick/2, stallTimeout))
	}
	if len(ups) > 0 {
		if err := w.apply(topology.Command{Type: topology.CmdUpdateSegments, Updates: ups}); err != nil {
			w.violate("Decide's own command refused: %v", err)
		}
	}
}

// check runs after every tick: config version monotone, history
// append-only, and no acknowledgement on a timeline older than one
// already acknowledged for its content (two writable primaries).
func (w *world) check() {
	if w.t.ConfigVersion < w.lastVer {
		w.violate("config version went back from %d to %d", w.lastVer, w.t.ConfigVersion)
	}
	if len(w.t.History) < w.lastHist {
		w.violate("history shrank from %d to %d rows", w.lastHist, len(w.t.History))
	}
	w.lastVer, w.lastHist = w.t.ConfigVersion, len(w.t.History)
}

func (w *world) splitBrains() {
	newest := map[int]Ack{}
	for _, a := range w.acks {
		n, seen := newest[a.Content]
		switch {
		case !seen || a.Timeline > n.Timeline:
			newest[a.Content] = a
		case a.Timeline < n.Timeline:
			w.res.Split++
			if w.res.Split > 3 {
				continue // a split lasts: its first acknowledgements say it
			}
			w.violate("split brain: content %d commit %d acknowledged (%s) by dbid %d on timeline %d at t%d, after dbid %d acknowledged (%s) on timeline %d at t%d",
				a.Content, a.Commit, a.kind(), a.DBID, a.Timeline, a.Time, n.DBID, n.kind(), n.Timeline, n.Time)
		}
	}
}

func (a Ack) kind() string {
	if a.Local {
		return "local"
	}
	return "sync"
}

func (w *world) tickOnce() {
	w.ticks++
	w.now = w.now.Add(tick)
	w.lead()
	w.agents()
	w.watchdogs()
	w.replicate()
	w.write()
	w.writeLocal()
	w.check()
}

// String is the schedule, for a failure message.
func (r *Result) String() string {
	return fmt.Sprintf("seed %d: acked %d (sync) %d (local), indeterminate %d, lost %d, split %d, stranded %d\n  schedule: %s\n  safety: %s\n  liveness: %s",
		r.Seed, r.Acked, r.LocalAcked, r.Indeterminate, r.Lost, r.Split, r.Stranded, strings.Join(r.Schedule, "; "), strings.Join(r.Violations, "; "), strings.Join(r.Liveness, "; "))
}
