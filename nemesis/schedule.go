package nemesis

import (
	"fmt"
	"slices"
	"time"

	"github.com/gpagent/gpagent/topology"
)

// Run plays one seeded schedule: faults and operator commands drawn from
// the seed, each held for a drawn number of ticks, then the final heal,
// recoverseg until every pair is in sync, and the checks. The same seed
// gives the same run, tick for tick.
func Run(seed uint64) *Result { return run(seed, true) }

// run plays the schedule of seed, with or without the fence watchdog.
func run(seed uint64, watchdog bool) *Result {
	w := newWorld(seed, 4, watchdog)
	for range 20 {
		w.tickOnce()
	}
	steps := 3 + w.rnd.IntN(6)
	for range steps {
		undo := w.fault()
		w.res.Faults++
		for range 1 + w.rnd.IntN(40) {
			w.tickOnce()
		}
		if w.rnd.IntN(3) == 0 {
			w.operator()
		} else if w.unmirrored() && w.rnd.IntN(2) == 0 {
			// The operator mirrors the unmirrored content while the
			// fault is in force.
			w.logf("operator: addmirrors: %v", w.addMirrors())
		}
		if undo != nil && w.rnd.IntN(10) < 6 {
			undo()
		}
	}
	w.healAll()
	w.finish()
	return w.res
}

// fault applies one drawn fault; it returns its undo, or nil.
func (w *world) fault() func() {
	hostN := w.hosts[w.rnd.IntN(len(w.hosts))]
	dbid := 1 + w.rnd.IntN(len(w.insts))
	in := w.insts[dbid]
	switch w.rnd.IntN(11) {
	case 0:
		w.logf("crash dbid %d", dbid)
		in.running = false
		return nil
	case 1:
		if !in.running {
			return nil
		}
		w.logf("hang dbid %d", dbid)
		in.hung, in.hungAt = true, w.now
		return func() { w.logf("resume dbid %d", dbid); in.hung = false }
	case 2:
		w.logf("stop agent %s", hostN.name)
		hostN.agentUp = false
		return func() { w.logf("start agent %s", hostN.name); w.startAgent(hostN) }
	case 3:
		w.logf("host loss %s", hostN.name)
		hostN.agentUp, hostN.watchdog = false, false
		for _, x := range w.insts {
			if x.host == hostN.name {
				x.running, x.hung = false, false
			}
		}
		return func() { w.logf("host %s back", hostN.name); w.startAgent(hostN) }
	case 4, 5:
		h := hostN
		if w.leader != nil && w.rnd.IntN(2) == 0 {
			h = w.leader
		}
		w.logf("cut off %s", h.name)
		h.cut = true
		return func() { w.logf("heal %s", h.name); h.cut = false }
	case 6:
		// Agents time leases on CLOCK_MONOTONIC/BOOTTIME, which never
		// step: a host's clock "jumps" forward only across a suspension
		// of the whole host. Of the two faithful models (a suspension:
		// no renewals, no leader work, instances hung; or the jump on
		// a host that is not the leader) this is the simpler: the jump
		// lands on a follower only, whose lease then looks older to
		// itself (it fences and its watchdog kills early: the safe
		// side). A leader whose clock ran ahead while it kept renewing
		// the others' leases would declare them lost early, which no
		// real clock does. The offset stays; offsets do not matter
		// (a new leader starts its timings afresh), rates do.
		if hostN == w.leader {
			hostN = w.hosts[(slices.Index(w.hosts, hostN)+1)%len(w.hosts)]
		}
		d := time.Duration(1+w.rnd.IntN(20)) * tick
		w.logf("clock of %s jumps %s", hostN.name, d)
		hostN.offset += d
		return nil
	case 7:
		return w.wipe(hostN)
	default:
		w.operator()
		return nil
	}
}

// wipe stops hostN's agent and empties its data dir: its lease and its
// Raft log and identity are gone; its instances run on. It comes back as
// a fresh member with no lease and an empty topology until the leader
// hears it. A second wipe while one is not yet readmitted is not drawn:
// with two of three voters' logs lost no Raft cluster recovers (an
// operator's peers.json), and that is no bug of the rules.
func (w *world) wipe(h *host) func() {
	for _, o := range w.hosts {
		if o.wiped {
			w.logf("wipe %s: skipped, %s not yet readmitted", h.name, o.name)
			return nil
		}
	}
	w.logf("wipe the data dir of agent %s", h.name)
	h.agentUp, h.wiped = false, true
	h.renewed, h.view = time.Time{}, &topology.Topology{}
	return func() { w.logf("start wiped agent %s", h.name); w.startAgent(h) }
}

func (w *world) startAgent(h *host) {
	if h.agentUp {
		return
	}
	// A restarted agent starts its lease afresh only once it reaches the
	// leader; until then it reads the topology it had (its Raft log).
	// It starts its fence watchdog.
	h.agentUp, h.watchdog = true, w.watchdog
}

// operator runs one drawn operator command through the leader, as the
// API does: refused commands change nothing.
func (w *world) operator() {
	if w.leader == nil {
		w.logf("operator: no leader")
		return
	}
	var err error
	switch k := w.rnd.IntN(6); k {
	case 0, 1:
		kind := topology.RecoveryIncremental
		if k == 1 {
			kind = topology.RecoveryFull
		}
		err = w.recoverseg(kind)
		w.logf("operator: recoverseg %s: %v", kind, err)
	case 2:
		c := w.rnd.IntN(len(w.t.Contents()))
		if err = topology.CanSwitchover(w.t, c); err == nil {
			err = w.apply(topology.Command{Type: topology.CmdSwitchover, Content: c})
		}
		w.logf("operator: switchover content %d: %v", c, err)
	case 3:
		for _, it := range topology.PlanRebalance(w.t, w.lags(), 1<<20) {
			if it.Action == topology.RebalanceSwitch {
				err = w.apply(topology.Command{Type: topology.CmdSwitchover, Content: it.Content})
			}
		}
		w.logf("operator: recoverseg -r: %v", err)
	case 4:
		err = w.apply(topology.Command{Type: topology.CmdSetPaused, Paused: !w.t.Paused})
		w.logf("operator: paused=%v: %v", w.t.Paused, err)
	case 5:
		err = w.addMirrors()
		w.logf("operator: addmirrors: %v", err)
	}
}

// addMirrors places a mirror for every content without one, as the
// agent's addmirrors plan does, commits it, and creates each new mirror's
// instance (nothing on disk yet: its agent builds it from the primary).
func (w *world) addMirrors() error {
	ms, err := topology.PlaceMirrors(w.t, nil, "", w.t.Mirrors)
	if err != nil {
		return err
	}
	if err := w.apply(topology.Command{Type: topology.CmdAddMirrors, Segments: ms}); err != nil {
		return err
	}
	for _, m := range ms {
		w.insts[m.DBID] = &inst{dbid: m.DBID, content: m.Content, host: m.Hostname, tli: 1}
	}
	return nil
}

// unmirrored reports whether some content has no mirror.
func (w *world) unmirrored() bool {
	for _, c := range w.t.Contents() {
		if _, ok := w.t.Mirror(c); !ok {
			return true
		}
	}
	return false
}

// lags: each streaming mirror's lag behind its primary, by mirror dbid.
func (w *world) lags() map[int]int64 {
	out := map[int]int64{}
	for _, s := range w.insts {
		if w.streams(s) {
			out[s.dbid] = topology.Lag(uint64(len(w.insts[s.upstream].wal)), uint64(len(s.wal)))
		}
	}
	return out
}

func (w *world) recoverseg(kind topology.RecoveryKind) error {
	var reqs []topology.RecoveryRequest
	for _, s := range w.t.Segments {
		if topology.CanRecover(w.t, s.DBID) == nil {
			reqs = append(reqs, topology.RecoveryRequest{DBID: s.DBID, Kind: kind})
		}
	}
	if len(reqs) == 0 {
		return fmt.Errorf("nothing to recover")
	}
	return w.apply(topology.Command{Type: topology.CmdRecover, Recover: reqs})
}

func (w *world) healAll() {
	w.logf("final heal")
	for _, h := range w.hosts {
		h.cut = false
		w.startAgent(h)
	}
	for _, in := range w.insts {
		in.hung = false
	}
	if w.t.Paused {
		_ = w.apply(topology.Command{Type: topology.CmdSetPaused, Paused: false})
	}
}

// Bounds after the final heal, in ticks: every content takes commits
// within strandBound; every pair is in sync within syncBound.
const (
	strandBound = 100 // 10 s
	syncBound   = 600
)

func (w *world) finish() {
	healed := w.ticks
	stranded := map[int]bool{}
	for _, c := range w.t.Contents() {
		stranded[c] = true
	}
	attempts := 0
	for w.ticks-healed < syncBound {
		w.tickOnce()
		for c := range stranded {
			if w.lastWrite[c] > healed {
				delete(stranded, c)
			}
		}
		if len(stranded) == 0 && w.inSync() {
			break
		}
		if (w.ticks-healed)%20 == 0 && len(w.t.Recoveries) == 0 && len(w.t.Switchovers) == 0 {
			attempts++
			kind := topology.RecoveryIncremental
			if attempts > 2 {
				kind = topology.RecoveryFull
			}
			_ = w.recoverseg(kind)
			if w.unmirrored() {
				// The operator's addmirrors, if faults refused it.
				if err := w.addMirrors(); err != nil {
					w.logf("addmirrors after heal: %v", err)
				}
			}
		}
		if w.ticks-healed == strandBound {
			for c := range stranded {
				w.res.Stranded++
				w.liveness("content %d stranded: no commit within %d ticks of the final heal: %v", c, strandBound, w.describe(c))
			}
			stranded = map[int]bool{}
		}
	}
	if !w.inSync() {
		w.liveness("not every pair in sync %d ticks after the final heal: %v", syncBound, w.describeAll())
	}
	// Set-full: every acknowledged commit on every instance up in the
	// final topology.
	for _, c := range w.t.Contents() {
		for _, s := range w.t.Content(c) {
			// An instance up, or the primary recorded down (a double
			// fault: it would be restarted in place, so it must hold
			// everything).
			if s.Status != topology.StatusUp && s.Role != topology.RolePrimary {
				continue
			}
			has := map[uint64]bool{}
			for _, id := range w.insts[s.DBID].wal {
				has[id] = true
			}
			lost := 0
			for _, id := range w.acked[c] {
				if !has[id] {
					lost++
				}
			}
			if lost > 0 {
				w.res.Lost += lost
				w.violate("content %d: %d acknowledged commits missing on dbid %d (%s/%s)", c, lost, s.DBID, s.Role, s.Status)
			}
		}
	}
	w.splitBrains()
	for _, ids := range w.acked {
		w.res.Acked += len(ids)
	}
	w.res.Indeterminate = w.indet
	w.res.FinalVersion = w.t.ConfigVersion
}

func (w *world) inSync() bool {
	if w.unmirrored() {
		return false
	}
	for _, s := range w.t.Segments {
		if s.Status != topology.StatusUp || s.Mode != topology.ModeSynced {
			return false
		}
	}
	return len(w.t.Recoveries) == 0 && len(w.t.Switchovers) == 0
}

func (w *world) describe(c int) string {
	out := ""
	for _, s := range w.t.Content(c) {
		in := w.insts[s.DBID]
		out += fmt.Sprintf("[%s %s/%s/%s running=%v hung=%v rec=%v up=%d sync=%d tli=%d lsn=%d fenced=%v] ", s, s.Role, s.Status, s.Mode, in.running, in.hung, in.inRecovery, in.upstream, in.syncTo, in.tli, len(in.wal), w.host(in.host).fenced)
	}
	if sw, ok := w.t.SwitchoverOf(c); ok {
		out += fmt.Sprintf("switchover %+v ", sw)
	}
	return out + fmt.Sprintf("recoveries %+v paused=%v v%d", w.t.Recoveries, w.t.Paused, w.t.ConfigVersion)
}

func (w *world) describeAll() string {
	out := ""
	for _, c := range w.t.Contents() {
		out += fmt.Sprintf("content %d: %s; ", c, w.describe(c))
	}
	return out
}
