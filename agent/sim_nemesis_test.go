package agent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/internal/simnet"
	"github.com/gpagent/gpagent/simpg"
	"github.com/gpagent/gpagent/topology"
)

// TestSimNemesis runs seeded random fault schedules on the in-process
// mesh (three agents, real Raft, memberlist and HTTP, simulated
// instances): crashes, hangs and restarts of instances and agents, host
// loss, partitions of several shapes (one host, the leader, a bridge, Raft
// only, gossip only), replication stalls, clock jumps, a wiped agent data
// dir, and operator commands (recoverseg, -F, -r, switchover, pause,
// addmirrors) in the middle of faults. One schedule in three starts with
// no mirrors and adds them with addmirrors during its second fault (and
// the next ones while faults refuse it). A
// writer commits on every content throughout. The checker:
//
//   - no two instances of one content acknowledge commits at once: the
//     World's acknowledgement log, in its true order, never shows a
//     commit acknowledged on a timeline older than one already
//     acknowledged for that content (an old primary still taking writes
//     after its mirror was promoted);
//   - config versions are monotone as every agent sees them;
//   - after the final heal every content has a primary that takes
//     commits within simWait (nothing stranded);
//   - after recoverseg every acknowledged commit is on the content's
//     primary and mirror (Jepsen's set-full: acknowledged vs final
//     content; indeterminate commits are counted apart, never required),
//     and every content has a mirror in sync (addmirrors included);
//   - an agent whose data dir was wiped holds no lease from before its
//     wipe when it starts again, and comes back as a fresh Raft member:
//     after the final heal the configuration has one server per agent
//     and none of the wiped identities.
//
// The schedule is drawn from the seed; its timing is real time, so a
// rerun of a seed replays the same faults in the same order, not the
// same interleaving. A failure prints the seed and the command to rerun
// it. GPAGENT_NEMESIS_SCHEDULES=N runs N schedules (seeds 1..N, or from
// GPAGENT_NEMESIS_SEED); GPAGENT_NEMESIS_SEED=S alone runs seed S.
func TestSimNemesis(t *testing.T) {
	if testing.Short() {
		t.Skip("the in-process nemesis takes tens of seconds")
	}
	// Three schedules by default (about 40 s). The schedules run as
	// parallel subtests (newSimWorld), -parallel at a time: a count, not
	// a time budget, bounds the run.
	first, n := uint64(1), 3
	if v := os.Getenv("GPAGENT_NEMESIS_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("GPAGENT_NEMESIS_SEED=%q: not a number: %v", v, err)
		}
		first, n = s, 1
	}
	if v := os.Getenv("GPAGENT_NEMESIS_SCHEDULES"); v != "" {
		k, err := strconv.Atoi(v)
		if err != nil || k < 1 {
			t.Fatalf("GPAGENT_NEMESIS_SCHEDULES=%q: want a positive number", v)
		}
		n = k
	}
	for seed := first; seed < first+uint64(n); seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			defer func() {
				if t.Failed() {
					t.Logf("NEMESIS FAILURE seed=%d; rerun: GPAGENT_NEMESIS_SEED=%d go test -race -count=1 -run 'TestSimNemesis' -v ./agent/", seed, seed)
				}
			}()
			runNemesis(t, seed)
		})
	}
}

// nemesis is one schedule's state: the faults in force, to undo them at
// the final heal.
type nemesis struct {
	c   *simCluster
	rnd *rand.Rand
	log []string

	stopped  map[string]bool // agents stopped (host name)
	hung     map[string]bool // instances frozen (address:port)
	stalled  map[string]bool // replication links stalled (address:port)
	paused   bool
	segments []topology.Segment // as after init, and mirrors added: dbids are stable
	writers  map[int]*nemesisWriter
	// wiped: the Raft server id each wiped agent had, by host name (one
	// wipe per schedule: with two of three voters' logs lost, no Raft
	// cluster recovers without an operator's peers.json).
	wiped map[string]string
	// wipedAt: a wiped agent's clock when it was stopped, until it starts.
	wipedAt map[string]time.Time
}

func (nm *nemesis) logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	nm.log = append(nm.log, line)
	nm.c.t.Logf("nemesis: %s", line)
}

func runNemesis(t *testing.T, seed uint64) {
	c := newSimCluster(t, 3, "")
	nm := &nemesis{c: c, rnd: rand.New(rand.NewPCG(seed, 0x6e656d65)), stopped: map[string]bool{}, hung: map[string]bool{}, stalled: map[string]bool{},
		writers: map[int]*nemesisWriter{}, wiped: map[string]string{}, wipedAt: map[string]time.Time{}}
	mirrorless := nm.rnd.IntN(3) == 0
	if mirrorless {
		c.initNoMirrors()
	} else {
		c.initCluster(1)
	}
	nm.segments = c.state().Segments
	var contents []int
	for _, s := range nm.segments {
		if !slices.Contains(contents, s.Content) {
			contents = append(contents, s.Content)
		}
	}
	versions := c.watchVersions()
	writers := nm.writers
	for _, ct := range contents {
		writers[ct] = c.startNemesisWriter(ct, nm.segments)
	}

	steps := 4 + nm.rnd.IntN(3)
	for i := range steps {
		undo := nm.fault(i)
		nm.pause(300*time.Millisecond, 2*time.Second)
		if mirrorless && i >= 1 {
			// addmirrors while the second fault is in force, and
			// again at each later one while faults refuse it.
			mirrorless = nm.addMirrors() != nil
			nm.pause(100*time.Millisecond, time.Second)
		} else if nm.rnd.IntN(5) < 2 {
			nm.operator()
			nm.pause(100*time.Millisecond, time.Second)
		}
		if undo != nil && nm.rnd.IntN(10) < 7 {
			undo()
		}
	}
	nm.healAll()

	// No content stranded: each has a primary that takes commits.
	for _, ct := range contents {
		w := writers[ct]
		t0 := time.Now()
		c.waitUntil(fmt.Sprintf("content %d takes commits after the final heal (not stranded)", ct), func() (bool, string) {
			return w.ackedSince(t0), w.lastError() + "; " + c.describeContent(ct)
		})
	}
	// Mirror what addmirrors could not during the faults, then bring
	// every pair back in sync, as an operator would: recoverseg, and -F
	// for what an incremental recovery cannot mend.
	nm.addMirrorsAfterHeal()
	nm.recoverUntilInSync()
	nm.checkWipedRejoined()
	for _, ct := range contents {
		writers[ct].stop()
	}
	versions.stop()

	// The checks.
	content := map[int]int{} // dbid -> content, mirrors added included
	mirrored := map[int]bool{}
	for _, s := range c.state().Segments {
		content[s.DBID] = s.Content
		mirrored[s.Content] = mirrored[s.Content] || s.Role == topology.RoleMirror
	}
	for _, ct := range contents {
		if ct >= 0 && !mirrored[ct] {
			t.Errorf("content %d has no mirror after the final heal and addmirrors", ct)
		}
	}
	for _, e := range versions.errors() {
		t.Errorf("config version: %s", e)
	}
	for _, e := range splitBrains(c.world.Acks(0), content) {
		t.Errorf("split brain: %s", e)
	}
	s := c.state()
	var acked, indet, failed int
	for _, ct := range contents {
		w := writers[ct]
		w.mu.Lock()
		acked += len(w.acked)
		indet += w.indeterminate
		failed += w.failed
		var lost []uint64
		for _, seg := range s.Segments {
			if seg.Content != ct || seg.Status != topology.StatusUp {
				continue
			}
			// One read of the instance's durable commits: Has scans the
			// WAL, once per id would be quadratic.
			has := map[uint64]bool{}
			for _, id := range c.world.Commits(seg.Address, seg.Port) {
				if has[id] {
					t.Errorf("content %d: commit %d twice on %s", ct, id, seg)
				}
				has[id] = true
			}
			for id := range w.acked {
				if !has[id] {
					lost = append(lost, id)
				}
			}
			if len(lost) > 0 {
				slices.Sort(lost)
				t.Errorf("content %d: %d acknowledged commits missing on %s (role %s), first %v", ct, len(lost), seg, seg.Role, lost[:min(5, len(lost))])
			}
			lost = lost[:0]
		}
		w.mu.Unlock()
	}
	t.Logf("seed %d: %d steps, acked %d, failed %d, indeterminate %d; schedule: %s", seed, steps, acked, failed, indet, strings.Join(nm.log, "; "))
}

// pause lets a fault act for a drawn time: the schedule's own timing, not
// a wait for a condition.
func (nm *nemesis) pause(lo, hi time.Duration) {
	<-time.After(lo + time.Duration(nm.rnd.Int64N(int64(hi-lo))))
}

func (nm *nemesis) randHost() *simHost { return nm.c.hosts[nm.rnd.IntN(len(nm.c.hosts))] }

func (nm *nemesis) randSegment() topology.Segment {
	return nm.segments[nm.rnd.IntN(len(nm.segments))]
}

// leaderOrAny is the current leader, or a drawn host when none leads.
func (nm *nemesis) leaderOrAny() *simHost {
	for _, h := range nm.c.running() {
		if a := nm.c.agent(h); a.node.IsLeader() {
			return h
		}
	}
	return nm.randHost()
}

// fault applies one drawn fault and returns how to undo it (nil: nothing
// to undo, or undone only at the final heal).
func (nm *nemesis) fault(step int) func() {
	c := nm.c
	switch k := nm.rnd.IntN(13); k {
	case 0:
		s := nm.randSegment()
		nm.logf("%d: crash %s dbid %d (%s)", step, s.Hostname, s.DBID, s.Role)
		c.world.Crash(s.Address, s.Port)
		return nil
	case 1:
		s := nm.randSegment()
		key := addrOf(s)
		nm.logf("%d: hang dbid %d (%s)", step, s.DBID, s.Role)
		c.world.Hang(s.Address, s.Port)
		nm.hung[key] = true
		return func() {
			nm.logf("%d: resume dbid %d", step, s.DBID)
			c.world.Resume(s.Address, s.Port)
			delete(nm.hung, key)
		}
	case 2:
		h := nm.randHost()
		if nm.stopped[h.name] {
			return nil
		}
		nm.logf("%d: stop agent %s", step, h.name)
		c.stop(h)
		nm.stopped[h.name] = true
		return func() { nm.startAgent(step, h) }
	case 3:
		h := nm.randHost()
		if nm.stopped[h.name] {
			return nil
		}
		nm.logf("%d: host loss %s", step, h.name)
		c.stop(h)
		c.world.KillHost(h.name)
		nm.stopped[h.name] = true
		return func() { nm.startAgent(step, h) }
	case 4, 5:
		h := nm.randHost()
		if k == 5 {
			h = nm.leaderOrAny()
		}
		nm.logf("%d: isolate %s (leader cut: %v)", step, h.name, k == 5)
		c.isolate(h)
		return func() { nm.logf("%d: heal network", step); c.heal() }
	case 6, 7:
		kind, word := simnet.Raft, "raft"
		if k == 7 {
			kind, word = simnet.Gossip, "gossip"
		}
		h := nm.randHost()
		nm.logf("%d: isolate %s, %s only", step, h.name, word)
		c.net.Only(kind).Isolate(h.ip)
		return func() { nm.logf("%d: heal network", step); c.heal() }
	case 8:
		a := nm.rnd.IntN(len(c.hosts))
		b := (a + 1 + nm.rnd.IntN(len(c.hosts)-1)) % len(c.hosts)
		nm.logf("%d: bridge: cut %s-%s", step, c.hosts[a].name, c.hosts[b].name)
		c.net.Cut(c.hosts[a].ip, c.hosts[b].ip)
		return func() { nm.logf("%d: heal network", step); c.heal() }
	case 9:
		h := nm.randHost()
		d := time.Duration(200+nm.rnd.IntN(1800)) * time.Millisecond
		nm.logf("%d: clock of %s jumps %s forward", step, h.name, d)
		h.clock.Jump(d)
		return nil
	case 10:
		var ms []topology.Segment
		for _, s := range nm.segments {
			if s.Content >= 0 {
				ms = append(ms, s)
			}
		}
		s := ms[nm.rnd.IntN(len(ms))]
		key := addrOf(s)
		nm.logf("%d: stall the replication link of dbid %d", step, s.DBID)
		c.world.StallLink(s.Address, s.Port)
		nm.stalled[key] = true
		return func() {
			nm.logf("%d: resume the link of dbid %d", step, s.DBID)
			c.world.ResumeLink(s.Address, s.Port)
			delete(nm.stalled, key)
		}
	case 11:
		return nm.wipe(step, nm.randHost())
	default:
		nm.operator()
		return nil
	}
}

// wipe stops h's agent and empties its data dir (Raft log and server id,
// lease file, instances.json, gossip peers: as if someone removed
// /var/lib/gpagent); its instances run on. The undo starts it again.
func (nm *nemesis) wipe(step int, h *simHost) func() {
	c := nm.c
	if nm.stopped[h.name] || len(nm.wiped) > 0 {
		return nil
	}
	nm.logf("%d: wipe the data dir of agent %s", step, h.name)
	if strings.Contains(h.cfgDoc, "bootstrap: true") {
		// A wiped bootstrapping agent would found a new cluster: its
		// operator's config lists the others to join, as c.start does
		// for a restart.
		var others []string
		for _, o := range c.hosts {
			if o != h {
				others = append(others, c.agent(o).mesh.LocalAddr())
			}
		}
		h.cfgDoc = strings.Replace(h.cfgDoc, "bootstrap: true", "join: ["+strings.Join(others, ", ")+"]", 1)
	}
	nm.wiped[h.name] = c.agent(h).node.ID()
	c.stop(h)
	if err := os.RemoveAll(h.dir); err != nil {
		c.t.Fatal(err)
	}
	nm.wipedAt[h.name] = h.clock.Now()
	nm.stopped[h.name] = true
	return func() { nm.startAgent(step, h) }
}

func (nm *nemesis) startAgent(step int, h *simHost) {
	if !nm.stopped[h.name] {
		return
	}
	nm.logf("%d: start agent %s", step, h.name)
	if _, ok := nm.wipedAt[h.name]; ok {
		// What the agent reads of its lease when it starts on the wiped
		// dir: no lease until the leader hears it (a missing file must
		// not grant one: it may have been cut off for longer than its
		// lease, and its mirrors promoted meanwhile). 1500ms is
		// simAgentTimings' lease.
		if l := newLease(h.dir, h.clock.Now(), nil); !l.expired(h.clock.Now(), 1500*time.Millisecond) {
			nm.c.t.Errorf("the wiped agent %s starts with a lease (renewed at %s) before the leader heard it", h.name, l.renewed.Format("15:04:05.000"))
		}
	}
	nm.c.start(h)
	delete(nm.stopped, h.name)
	if at, ok := nm.wipedAt[h.name]; ok {
		delete(nm.wipedAt, h.name)
		a := nm.c.agent(h)
		if id := a.node.ID(); id == nm.wiped[h.name] {
			nm.c.t.Errorf("the wiped agent %s came back with its old Raft server id %s", h.name, id)
		}
		// Any lease it holds was granted by a leader after this start,
		// never resumed from before the wipe.
		a.lease.mu.Lock()
		renewed := a.lease.renewed
		a.lease.mu.Unlock()
		if !renewed.IsZero() && renewed.Before(at) {
			nm.c.t.Errorf("the wiped agent %s holds a lease renewed at %s, before its wipe at %s", h.name, renewed.Format("15:04:05.000"), at.Format("15:04:05.000"))
		}
	}
}

// checkWipedRejoined: after the final heal, the leader's Raft
// configuration has one server per agent and none of the identities the
// wiped agents had (each replaced by its fresh member).
func (nm *nemesis) checkWipedRejoined() {
	if len(nm.wiped) == 0 {
		return
	}
	c := nm.c
	c.waitUntil("the wiped agents' old Raft members replaced by fresh ones", func() (bool, string) {
		l := c.waitLeader()
		servers, err := c.agent(l).node.Servers()
		if err != nil {
			return false, err.Error()
		}
		var ids []string
		ok := len(servers) == len(c.hosts)
		for _, s := range servers {
			ids = append(ids, s.ID)
			for _, old := range nm.wiped {
				ok = ok && s.ID != old
			}
		}
		return ok, strings.Join(ids, " ")
	})
}

// addMirrors runs the operator's addmirrors (plan, then commit); on
// success the new mirrors join the faults' targets and their content's
// writer.
func (nm *nemesis) addMirrors() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl := nm.c.client()
	plan, err := cl.PlanMirrors(ctx, api.MirrorPlanRequest{})
	if err == nil && len(plan.Mirrors) == 0 {
		nm.logf("operator: addmirrors: every content has a mirror")
		return nil
	}
	if err == nil {
		_, err = cl.AddMirrors(ctx, *plan)
	}
	nm.logf("operator: addmirrors: %v", err)
	if err != nil {
		return err
	}
	for _, m := range plan.Mirrors {
		nm.segments = append(nm.segments, m)
		if w := nm.writers[m.Content]; w != nil {
			w.add(m)
		}
	}
	return nil
}

// addMirrorsAfterHeal mirrors, as the operator would, what addmirrors
// could not during the faults.
func (nm *nemesis) addMirrorsAfterHeal() {
	nm.c.waitUntil("addmirrors after the final heal", func() (bool, string) {
		if err := nm.addMirrors(); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
}

// operator runs one drawn operator command; it may fail (a fault is in
// force): what matters is that it never breaks a safety rule.
func (nm *nemesis) operator() {
	c := nm.c
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl := c.client()
	var err error
	switch k := nm.rnd.IntN(6); k {
	case 0, 1:
		full := k == 1
		var plan *api.RecoverPlan
		if plan, err = cl.PlanRecovery(ctx, api.RecoverRequest{Full: full}); err == nil && len(plan.Steps) > 0 {
			_, err = cl.Recover(ctx, *plan)
		}
		nm.logf("operator: recoverseg full=%v: %v", full, err)
	case 2:
		_, err = cl.Rebalance(ctx, api.RebalanceRequest{})
		nm.logf("operator: recoverseg -r: %v", err)
	case 3:
		ct := nm.rnd.IntN(len(nm.c.hosts))
		_, err = cl.Switchover(ctx, ct)
		nm.logf("operator: switchover content %d: %v", ct, err)
	case 4:
		nm.paused = !nm.paused
		_, err = cl.SetPaused(ctx, nm.paused)
		nm.logf("operator: paused=%v: %v", nm.paused, err)
	case 5:
		_ = nm.addMirrors()
	}
}

// healAll undoes every fault in force: network, hung instances, stalled
// links, stopped agents and hosts, pause.
func (nm *nemesis) healAll() {
	c := nm.c
	nm.logf("final heal")
	c.heal()
	for key := range nm.hung {
		host, port := splitKey(key)
		c.world.Resume(host, port)
	}
	for key := range nm.stalled {
		host, port := splitKey(key)
		c.world.ResumeLink(host, port)
	}
	for _, h := range c.hosts {
		nm.startAgent(-1, h)
	}
	c.waitUntil("failover resumed after the final heal", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := c.client().SetPaused(ctx, false)
		if err != nil {
			return false, err.Error()
		}
		return !s.Paused, "still paused"
	})
}

func splitKey(key string) (string, int) {
	i := strings.LastIndexByte(key, ':')
	port, _ := strconv.Atoi(key[i+1:])
	return key[:i], port
}

// recoverUntilInSync runs recoverseg until every instance is up and every
// pair in sync; after an incremental attempt that does not get there it
// runs -F, as an operator told so by the incremental failure would.
func (nm *nemesis) recoverUntilInSync() {
	c := nm.c
	deadline := time.Now().Add(2 * simWait)
	attempt := 0
	var last string
	for time.Now().Before(deadline) {
		s, err := c.client().State(context.Background())
		if err == nil {
			last = ""
			for _, seg := range s.Segments {
				if seg.Content >= 0 && (seg.Status != topology.StatusUp || seg.Mode != topology.ModeSynced) {
					last = seg.String()
				}
			}
			if last == "" && len(s.Recoveries) == 0 && len(s.Switchovers) == 0 {
				return
			}
			if len(s.Recoveries) == 0 && len(s.Switchovers) == 0 && last != "" {
				attempt++
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				cl := c.client()
				plan, perr := cl.PlanRecovery(ctx, api.RecoverRequest{Full: attempt > 2})
				if perr == nil && len(plan.Steps) > 0 {
					_, perr = cl.Recover(ctx, *plan)
				}
				cancel()
				nm.logf("recoverseg after heal (full=%v): %v", attempt > 2, perr)
			}
		} else {
			last = err.Error()
		}
		<-time.After(200 * time.Millisecond)
	}
	c.t.Fatalf("every pair in sync after the final heal and recoverseg: not within %s; last seen: %s", 2*simWait, last)
}

// splitBrains reads the World's acknowledgements in their true order and
// names every commit acknowledged on a timeline older than one already
// acknowledged for the same content: two instances took writes for it.
func splitBrains(acks []simpg.Ack, content map[int]int) []string {
	newest := map[int]simpg.Ack{}
	var out []string
	for _, a := range acks {
		ct, ok := content[a.DBID]
		if !ok {
			continue
		}
		n, seen := newest[ct]
		switch {
		case !seen || a.Timeline > n.Timeline:
			newest[ct] = a
		case a.Timeline < n.Timeline:
			out = append(out, fmt.Sprintf("content %d: commit %d acknowledged by dbid %d on timeline %d at %s, after dbid %d acknowledged commit %d on timeline %d at %s",
				ct, a.Commit, a.DBID, a.Timeline, a.At.Format("15:04:05.000"), n.DBID, n.Commit, n.Timeline, n.At.Format("15:04:05.000")))
		}
	}
	return out
}

// nemesisWriter commits on one content without pause through any of its
// instances, and keeps each commit's outcome: acknowledged (with its id),
// failed (refused: no server, read-only), or indeterminate.
type nemesisWriter struct {
	c *simCluster

	mu            sync.Mutex
	insts         []topology.Segment // the content's instances, a mirror added appended
	acked         map[uint64]bool
	failed        int
	indeterminate int
	lastAt        time.Time
	lastErr       error

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

func (c *simCluster) startNemesisWriter(content int, segs []topology.Segment) *nemesisWriter {
	w := &nemesisWriter{c: c, acked: map[uint64]bool{}, done: make(chan struct{})}
	for _, s := range segs {
		if s.Content == content {
			w.insts = append(w.insts, s)
		}
	}
	var ctx context.Context
	ctx, w.cancel = context.WithCancel(context.Background())
	go w.run(ctx)
	c.t.Cleanup(w.stop)
	return w
}

func (w *nemesisWriter) run(ctx context.Context) {
	defer close(w.done)
	for ctx.Err() == nil {
		ok := false
		w.mu.Lock()
		insts := slices.Clone(w.insts)
		w.mu.Unlock()
		for _, s := range insts {
			cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			id, _, err := w.c.world.Commit(cctx, s.Address, s.Port)
			cancel()
			w.mu.Lock()
			switch {
			case err == nil:
				w.acked[id], w.lastAt, ok = true, time.Now(), true
			case errors.Is(err, simpg.ErrCommitIndeterminate):
				w.indeterminate++
				w.lastErr = err
			default:
				w.failed++
				w.lastErr = err
			}
			w.mu.Unlock()
			if ok {
				break
			}
		}
		// A short breath between commits: a writer that never yields
		// starves the agents on a loaded 2-core machine.
		pause := time.Millisecond
		if !ok {
			pause = 10 * time.Millisecond
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
}

// add makes the writer try a mirror added to its content too (it may be
// promoted later).
func (w *nemesisWriter) add(s topology.Segment) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.insts = append(w.insts, s)
}

func (w *nemesisWriter) ackedSince(t0 time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastAt.After(t0)
}

func (w *nemesisWriter) lastError() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return fmt.Sprint(w.lastErr)
}

func (w *nemesisWriter) stop() {
	w.once.Do(func() {
		w.cancel()
		<-w.done
	})
}

// versionWatch samples every running agent's committed config version
// and records any step backwards within one agent's run.
type versionWatch struct {
	mu     sync.Mutex
	errs   []string
	cancel context.CancelFunc
	done   chan struct{}
}

func (c *simCluster) watchVersions() *versionWatch {
	ctx, cancel := context.WithCancel(context.Background())
	vw := &versionWatch{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(vw.done)
		seen := map[*Agent]uint64{}
		for ctx.Err() == nil {
			for _, h := range c.running() {
				a := c.agent(h)
				v := a.node.Topology().ConfigVersion
				if prev, ok := seen[a]; ok && v < prev {
					vw.mu.Lock()
					vw.errs = append(vw.errs, fmt.Sprintf("agent %s went from version %d back to %d", h.name, prev, v))
					vw.mu.Unlock()
				}
				seen[a] = max(seen[a], v)
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	c.t.Cleanup(vw.stop)
	return vw
}

// initNoMirrors creates one primary per host and no mirror, and waits
// until every primary is up.
func (c *simCluster) initNoMirrors() {
	c.t.Helper()
	spec := topology.Spec{
		SegPrefix:   "gpseg",
		Coordinator: topology.CoordinatorSpec{Hostname: c.hosts[0].name, Address: c.hosts[0].ip, Port: 5000, DataDir: "/sim/coordinator"},
		Primary:     topology.PortDirs{PortBase: 6000, DataDirs: []string{"/sim/primary"}},
		Mirror:      &topology.MirrorSpec{PortDirs: topology.PortDirs{PortBase: 7000, DataDirs: []string{"/sim/mirror"}}, Placement: "spread"},
	}
	for _, h := range c.hosts {
		spec.SegmentHosts = append(spec.SegmentHosts, topology.Host{Hostname: h.name, Address: h.ip})
	}
	ctx, cancel := context.WithTimeout(context.Background(), simWait)
	defer cancel()
	if _, err := c.client().Init(ctx, api.InitRequest{Spec: spec, NoMirrors: true}); err != nil {
		c.t.Fatalf("init: %v", err)
	}
	c.waitUntil("every primary up after init with no mirrors", func() (bool, string) {
		s, err := c.client().State(context.Background())
		if err != nil {
			return false, err.Error()
		}
		if len(s.Segments) == 0 {
			return false, "no segments"
		}
		for _, seg := range s.Segments {
			if seg.Content >= 0 && seg.Status != topology.StatusUp {
				return false, seg.String()
			}
		}
		return true, ""
	})
}

func (vw *versionWatch) stop() {
	vw.cancel()
	<-vw.done
}

func (vw *versionWatch) errors() []string {
	vw.mu.Lock()
	defer vw.mu.Unlock()
	return slices.Clone(vw.errs)
}

// describeContent says what the cluster knows of one content, for a
// failure message: its instances in the topology and in the World, and
// any switchover or recovery of it.
func (c *simCluster) describeContent(ct int) string {
	s, err := c.client().State(context.Background())
	if err != nil {
		return err.Error()
	}
	var parts []string
	for _, seg := range s.Segments {
		if seg.Content != ct {
			continue
		}
		st := c.world.State(seg.Address, seg.Port)
		parts = append(parts, fmt.Sprintf("%s [running=%v recovery=%v readonly=%v hung=%v tli=%d]", seg, st.Running, st.InRecovery, st.ReadOnly, st.Hung, st.Timeline))
	}
	for _, sw := range s.Switchovers {
		parts = append(parts, fmt.Sprintf("switchover %+v", sw))
	}
	for _, r := range s.Recoveries {
		parts = append(parts, fmt.Sprintf("recovery %+v", r))
	}
	for _, in := range s.Instances {
		parts = append(parts, fmt.Sprintf("report %+v", in))
	}
	return fmt.Sprintf("v%d paused=%v: %s", s.ConfigVersion, s.Paused, strings.Join(parts, "; "))
}
