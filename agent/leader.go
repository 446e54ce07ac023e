package agent

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

// leader runs the reconcile loop while this agent leads the Raft cluster
// and keeps the latest report of every instance, whoever sent it.
type leader struct {
	a   *Agent
	log *slog.Logger

	mu      sync.Mutex
	reports map[int]received
	// fulls: per agent, its last full report accepted (its Seq and the
	// instances kept of it), which its heartbeats name (heartbeat).
	fulls map[string]fullReport
	// heard is when each host's agent last reported, on this leader's
	// clock. A new term starts a new table: it cannot know what the
	// previous leader heard (Nomad's heartbeat.go).
	heard topology.LastHeard
	// unproven: per agent, the arrival times of reports made on an older
	// version than this leader's at the time, each counted heard once a
	// later report shows that version applied.
	unproven map[string]*topology.PendingRenewals
	// direct: agents known by their reports (clients without gossip).
	direct map[string]directClient
	// deadSince: when the leader first saw a voter dead in gossip.
	deadSince map[string]time.Time
	// deadVoterGrace: deadVoterGrace, shorter in tests.
	deadVoterGrace time.Duration
	// voterRound: voterRound, longer in a test that checks a join is
	// acted on at once.
	voterRound time.Duration
	// members is a hint that gossip saw a member join, leave or fail:
	// the Raft configuration may need a change (a joining agent becomes
	// a voter at once, not at the next voter round).
	members chan struct{}
	// switchovers: when this term first saw each switchover's primary
	// stopped and its mirror last progress (the switchover deadline).
	// Only the term's reconcile loop touches it; a new term starts afresh.
	switchovers topology.SwitchoverWatch
	// wake is a hint that a report arrived; a full reconcile also runs on
	// a ticker, so a dropped hint costs at most one tick.
	wake chan struct{}
	// newsGen counts the reports received that differ from the ones
	// they replace (leader.differs), under mu; quiet holds the inputs of the last reconcile that found
	// nothing to do (the reconcile loop's alone).
	newsGen uint64
	quiet   quietInputs
	// ready: this term's barrier has passed, so the topology here holds
	// every committed entry. Until then a restarted agent that just won
	// the election may not have replayed its log: it must not answer
	// for the cluster (it would say "no cluster").
	ready atomic.Bool
}

type received struct {
	report api.InstanceReport
	at     time.Time // the receiver's clock (monotonic, never another host's)
	// seq: the Seq of the full report it came in (0: none, as the
	// leader's own).
	seq uint64
}

// fullReport is what the leader holds of an agent's last full report.
type fullReport struct {
	seq   uint64
	dbids []int // the instances accepted of it (ownInstances)
}

func newLeader(a *Agent) *leader {
	return &leader{a: a, log: a.log.With("component", "leader"), reports: map[int]received{}, fulls: map[string]fullReport{}, unproven: map[string]*topology.PendingRenewals{}, deadSince: map[string]time.Time{}, deadVoterGrace: deadVoterGrace, voterRound: voterRound, wake: make(chan struct{}, 1), members: make(chan struct{}, 1)}
}

// accept stores reports from an agent and wakes the reconcile loop. The
// agent counts as heard only if the acknowledgement of these reports, at
// committed, renews its lease (topology.RenewsLease).
func (l *leader) accept(agent string, reports []api.InstanceReport, committed uint64) {
	l.acceptFull(agent, 0, reports, committed)
}

// acceptFull is accept of the full report seq (0: one that names none,
// which no heartbeat can name either).
func (l *leader) acceptFull(agent string, seq uint64, reports []api.InstanceReport, committed uint64) {
	now := l.a.clock.Now()
	applied := committed
	for _, r := range reports {
		applied = min(applied, r.ConfigVersion)
	}
	l.mu.Lock()
	if seq == 0 {
		delete(l.fulls, agent)
	} else {
		dbids := make([]int, len(reports))
		for i, r := range reports {
			dbids[i] = r.DBID
		}
		l.fulls[agent] = fullReport{seq: seq, dbids: dbids}
	}
	l.countHeard(agent, now, applied, committed)
	news, differs := false, false
	for _, r := range reports {
		prev, ok := l.reports[r.DBID]
		d := !ok || l.differs(prev.report, r)
		differs = differs || d
		news = news || d || l.late(prev, now)
		l.reports[r.DBID] = received{report: r, at: now, seq: seq}
	}
	if differs {
		l.newsGen++
	}
	l.mu.Unlock()
	if news {
		l.wakeUp()
	}
}

// countHeard counts agent heard at now by the report (or heartbeat) made
// on applied and acknowledged at committed, under l.mu.
func (l *leader) countHeard(agent string, now time.Time, applied, committed uint64) {
	// A report on an older version than this leader's is not dropped:
	// it counts as heard at its arrival once a later report of the same
	// agent shows that version applied (topology.PendingRenewals, the
	// agent's rule mirrored). Dropping it lost every host while the
	// leader committed faster than a report's round trip (gpbench scale,
	// 50 agents at start-up); a follower whose Raft stalls still never
	// shows the version, and is lost after lease plus margin.
	p := l.unproven[agent]
	if p == nil {
		p = &topology.PendingRenewals{}
		l.unproven[agent] = p
	}
	p.Acked(now, committed)
	l.heard = l.heard.Reported(agent)
	if at, ok := p.Applied(applied); ok {
		l.heard.Hear(agent, at)
	}
}

// wakeUp hints the reconcile loop that news arrived; it never blocks.
func (l *leader) wakeUp() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// heartbeat accepts hb, a heartbeat of agent acknowledged at committed,
// as accept would the full report it names made again on
// hb.ConfigVersion at hb.Seen: the held reports of that full report are
// refreshed (received now, made on hb.ConfigVersion) and the agent is
// counted heard by the same rule. It returns false, touching nothing,
// when this leader does not hold that full report as the last one of
// agent: the agent must send it in full.
//
// Held reports outlive a term (lead does not clear them), so a heartbeat
// may name a full report this leader received in an earlier term of its
// own, or one it received before another leader's term. That is safe:
// the agent sends a heartbeat only when its instances are the same as in
// the full report it names, and Seqs are never reused by an agent
// (process start time), so if this leader holds exactly that Seq of this
// agent for every instance it kept, what it holds is what the agent
// would send in full now. Any newer full report the agent sent elsewhere
// would have a larger Seq, so the heartbeat would name that one, and it
// would not match here.
func (l *leader) heartbeat(agent string, hb api.Report, committed uint64) bool {
	now := l.a.clock.Now()
	// The instances are kept by ownInstances' rule on the topology of
	// now, as a full report sent again would be.
	x := l.a.indexed(l.a.node.Topology())
	l.mu.Lock()
	f, ok := l.fulls[agent]
	if !ok || f.seq != hb.Same {
		l.mu.Unlock()
		return false
	}
	keep := make([]int, 0, len(f.dbids))
	for _, dbid := range f.dbids {
		r, ok := l.reports[dbid]
		if !ok || r.seq != f.seq || r.report.Host != agent {
			// Pruned, or replaced by another report since.
			l.mu.Unlock()
			return false
		}
		if s, ok := x.Segment(dbid); ok && s.Hostname == agent {
			keep = append(keep, dbid)
		}
	}
	applied := committed
	if len(keep) > 0 {
		applied = min(applied, hb.ConfigVersion)
	}
	l.countHeard(agent, now, applied, committed)
	news, differs := false, false
	for _, dbid := range keep {
		prev := l.reports[dbid]
		next := prev.report
		next.ConfigVersion = hb.ConfigVersion
		if !hb.Seen.IsZero() {
			next.Seen = hb.Seen
		}
		d := l.differs(prev.report, next)
		differs = differs || d
		news = news || d || l.late(prev, now)
		l.reports[dbid] = received{report: next, at: now, seq: f.seq}
	}
	if differs {
		l.newsGen++
	}
	l.mu.Unlock()
	if news {
		l.wakeUp()
	}
	return true
}

// A report is news, and wakes the reconcile, when it can change what
// reconcile decides compared with prev, the instance's report held: one that
// repeats the last one changes nothing and does not wake the loop, so an
// idle leader reconciles on its tick only instead of once per report
// (gpbench scale, 100 agents idle: reconciles per report were 60 % of the
// leader's 27 % of a core, and they grow with agents x contents). What
// only time changes (a lease running out, a report growing stale) the
// tick catches, as before. The LSN moves on every report of a busy
// primary and is read only by a switchover's catch-up check, so it counts
// only while a switchover is under way. A report arriving after a gap
// long enough that the previous one may have gone stale is news (late).
// A report is news if it differs or is late; each is computed once per
// report (a thousand heartbeats a second reach a 1,000-agent leader).
func (l *leader) late(prev received, now time.Time) bool {
	return now.Sub(prev.at) >= (3*l.a.live().ProbeInterval+l.a.cfg.ProbeTimeout)/2
}

// differs reports whether next tells the reconcile something prev did
// not: its observation changed but for the LSN, or the LSN moved during
// a switchover. Unlike news, not a report that is only late:
// that one changes what Decide reads only if prev had aged out, which
// quietInputs counts (at 1,000 agents a few hosts' reports a second came
// more than half the freshness apart, and no idle reconcile was skipped).
func (l *leader) differs(prev, next api.InstanceReport) bool {
	a, b := prev.Observation(), next.Observation()
	lsnMoved := a.LSN != b.LSN
	a.LSN, b.LSN = 0, 0
	if !reflect.DeepEqual(a, b) {
		return true
	}
	return lsnMoved && len(l.a.node.Topology().Switchovers) > 0
}

// ackVersion is the config version an acknowledgement of agent's report
// names, t being the leader's committed topology: the version from which
// agent's view of the topology (topology.HostViews) has been the one in t.
// A report made on it or later was made on the topology the agent acts on
// today, so it renews the lease (topology.RenewsLease; the agent's
// clientNode.equivalent is the same rule on its side), and the agent acts
// once its view reaches it. The committed version instead made every
// report stale while other hosts' changes were committed faster than a
// probe round (gpbench scale at 100 agents: no lease renewed, agents
// fenced in a loop). A commit that changes the agent's view still moves
// the version past every report made before it.
func (l *leader) ackVersion(agent string, t *topology.Topology) uint64 {
	return min(l.a.node.ViewSince(agent), t.ConfigVersion)
}

// leaseVersion is the config version a lease acknowledgement of agent's
// report names, t being the leader's committed topology: the version
// from which agent's roles in t (its instances, which are primaries)
// have been what they are (topology.ViewChanges.RolesSince). A report
// made on it or later was made on the primaries the agent holds today,
// so it renews the lease (rule 5 needs no more: a report made before a
// demotion still renews nothing). The view's version (ackVersion) moved
// with every commit that touched the host, and through a 1,000-host
// init, where every commit touches every host and a report's round
// trip took seconds, no lease was renewed and every host fenced and
// counted lost over and over.
func (l *leader) leaseVersion(agent string, t *topology.Topology) uint64 {
	return min(l.a.node.RolesSince(agent), t.ConfigVersion)
}

// membersChanged hints that gossip membership changed; it never blocks.
func (l *leader) membersChanged() {
	select {
	case l.members <- struct{}{}:
	default:
	}
}

// instances returns the latest reports, by dbid.
func (l *leader) instances() []api.InstanceReport {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]api.InstanceReport, 0, len(l.reports))
	for _, r := range l.reports {
		out = append(out, r.report)
	}
	slices.SortFunc(out, func(a, b api.InstanceReport) int { return a.DBID - b.DBID })
	return out
}

// observations returns the reports recent enough at now to act on
// (topology.FreshObservations).
func (l *leader) observations(now time.Time, maxAge time.Duration) map[int]topology.Observation {
	l.mu.Lock()
	received := make(map[int]topology.Received, len(l.reports))
	for dbid, r := range l.reports {
		received[dbid] = topology.Received{Observation: r.report.Observation(), At: r.at}
	}
	l.mu.Unlock()
	return topology.FreshObservations(received, now, maxAge)
}

// onCurrentViews counts an observation made on a version from which its
// host's view has been the one in t as made on t itself, and returns obs.
// Decide takes a primary's vouch for its mirror only if made on the
// current topology, and a client's topology query is answered only when
// its host's view changes (viewNewerThan): a client whose view has not
// changed holds an older version and reports on it, though it acts on
// exactly the current topology (the same rule as the acknowledgement's,
// ackVersion). A commit that touches the host's contents (a mirror marked
// down, a promotion) moves its view's version past every report made
// before it, so a stale vouch stays stale.
func (l *leader) onCurrentViews(t *topology.Topology, obs map[int]topology.Observation) map[int]topology.Observation {
	l.mu.Lock()
	defer l.mu.Unlock()
	for dbid, o := range obs {
		r, ok := l.reports[dbid]
		if !ok || o.ConfigVersion >= t.ConfigVersion {
			continue
		}
		if o.ConfigVersion >= l.a.node.ViewSince(r.report.Host) {
			o.ConfigVersion = t.ConfigVersion
			obs[dbid] = o
		}
	}
	return obs
}

// run follows leadership changes and runs the reconcile loop while leader.
func (l *leader) run(ctx context.Context) {
	var stop context.CancelFunc
	var done chan struct{}
	stopLeading := func() {
		if stop != nil {
			stop()
			<-done
			stop = nil
		}
	}
	defer stopLeading()
	start := func() {
		stopLeading()
		var lctx context.Context
		lctx, stop = context.WithCancel(ctx)
		done = make(chan struct{})
		go func() { defer close(done); l.lead(lctx) }()
	}
	// Leadership gained before this loop started (a single bootstrapped
	// node elects itself quickly) is not missed.
	if l.a.node.IsLeader() {
		start()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case isLeader := <-l.a.node.LeaderChanges():
			if isLeader {
				start()
			} else {
				stopLeading()
			}
		}
	}
}

// lead is the body of one term: barrier, then a full reconcile on every
// hint and every tick.
func (l *leader) lead(ctx context.Context) {
	l.log.Info("leading")
	defer l.log.Info("no longer leading")
	l.mu.Lock()
	l.heard = topology.NewLastHeard(l.a.clock.Now())
	l.unproven = map[string]*topology.PendingRenewals{}
	clear(l.deadSince)
	l.mu.Unlock()
	l.switchovers = topology.SwitchoverWatch{}
	l.quiet = quietInputs{}
	if err := l.a.node.Barrier(ctx); err != nil {
		l.log.Warn("barrier failed", "err", err)
		return
	}
	// Every committed entry is applied here now: this agent's own
	// executor may act on its topology.
	l.a.exec.markCaughtUp(l.a.node.Topology().ConfigVersion)
	l.ready.Store(true)
	defer l.ready.Store(false)
	tick := time.NewTicker(l.a.live().ProbeInterval)
	defer tick.Stop()
	voters := time.NewTicker(l.voterRound)
	defer voters.Stop()
	// Members that joined before this term began (a hint sent while
	// another agent led) are added now.
	l.manageVoters(ctx)
	// loss fires when the next host counts lost: reports that repeat
	// themselves no longer wake the loop, and the tick alone would act
	// on a lost host up to a probe interval late.
	loss := time.NewTimer(time.Hour)
	defer loss.Stop()
	for {
		took, committed, views := l.reconcile(ctx)
		// Coalesce: the next reconcile waits twice as long as this one
		// spent deciding (its commit's wait is not CPU), so that a burst
		// of news costs the leader at most a third of a core whatever
		// the cluster's size; and after a commit at least
		// minCommitGap, so that a burst of changes (an init: every
		// instance's creation, start and sync) is a few entries a second
		// holding many changes each, not one entry per report: every
		// entry wakes the clients whose view it changes, and each of
		// them reports again. A first failure after a quiet spell is
		// committed at once. Real time on purpose: it measures this
		// machine's CPU, not the cluster's clock.
		//
		// And after a commit, perHostView for every host whose view
		// it changed (at most maxViewGap): each such host's agent is
		// answered its new view, decodes it, acts and reports, so the
		// cost of an entry grows with the hosts it touches, and at a
		// thousand hosts entries 100 ms apart that each touched every
		// host kept both cores full through an init, every report's
		// round trip took seconds and every lease ran out. An entry
		// that touches a few hosts (a failover) waits a few ms.
		gap := min(2*took, maxReconcileGap)
		if committed {
			gap = max(gap, minCommitGap, min(time.Duration(views)*perHostView, maxViewGap))
		}
		if gap > time.Millisecond {
			select {
			case <-ctx.Done():
				return
			case <-time.After(gap):
			}
		}
		if t := l.a.node.Topology(); t.Initialized() {
			if d, ok := l.nextLoss(t, l.a.clock.Now()); ok {
				loss.Reset(d)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-loss.C:
		case <-l.wake:
		case <-tick.C:
		case <-l.members:
			l.manageVoters(ctx)
		case <-voters.C:
			l.manageVoters(ctx)
		}
	}
}

// maxReconcileGap bounds the coalescing wait between two reconciles, and
// minCommitGap is the least wait after one that committed: a failover
// waits for either at most once.
const (
	maxReconcileGap = 100 * time.Millisecond
	minCommitGap    = 100 * time.Millisecond
	perHostView     = time.Millisecond
	maxViewGap      = time.Second
)

// reconcile compares the committed topology with fresh observations and
// commits the difference, if any, as one command. It returns the time it
// spent deciding, on this machine's clock, whether it committed, and how
// many hosts' views the commit changed.
func (l *leader) reconcile(ctx context.Context) (took time.Duration, committed bool, views int) {
	began := time.Now()
	t := l.a.node.Topology()
	if !t.Initialized() {
		return 0, false, 0
	}
	l.pruneReports(t)
	maxAge := 3*l.a.live().ProbeInterval + l.a.cfg.ProbeTimeout
	now := l.a.clock.Now()
	lost := l.lostHosts(t, now)
	in := l.inputs(t, lost, now, maxAge)
	if l.quiet.same(in) {
		l.a.counts.reconcilesSkipped.Add(1)
		return time.Since(began), false, 0
	}
	l.a.counts.reconcilesDecided.Add(1)
	l.quiet = quietInputs{}
	obs := topology.WithLostHosts(t, l.onCurrentViews(t, l.observations(now, maxAge)), lost)
	updates := topology.Decide(t, obs)
	live := l.a.live()
	bound := topology.SwitchoverBound(live.ProbeInterval, l.a.cfg.ProbeTimeout, live.ReplicationStallTimeout)
	if overdue := l.switchovers.Overdue(t, obs, now, bound); len(overdue) > 0 {
		updates = append(updates, withoutContents(l.a.indexed(t), overdue, updates)...)
	}
	took = time.Since(began)
	if len(updates) == 0 {
		if !l.a.live().AutoRecover || t.Paused || !l.autoRecover(ctx, t, obs, lost) {
			l.quiet = in
		}
		return took, false, 0
	}
	cmd := topology.Command{Type: topology.CmdUpdateSegments, BaseVersion: t.ConfigVersion, Updates: updates}
	next, err := l.a.node.Apply(ctx, cmd)
	switch {
	case errors.Is(err, topology.ErrStale):
		l.log.Debug("reconcile raced another change; will recompute", "err", err)
	case err != nil:
		l.log.Warn("reconcile apply failed", "err", err)
	default:
		l.a.counts.failovers.Add(uint64(failovers(t, updates)))
		for _, u := range updates {
			l.log.Info("topology changed", "dbid", u.DBID, "desc", u.Desc, "config_version", next.ConfigVersion)
		}
	}
	if err != nil {
		return took, false, 0
	}
	return took, true, l.viewsChanged(next)
}

// viewsChanged counts the hosts whose view t's commit changed
// (consensus.Node.ViewSince).
func (l *leader) viewsChanged(t *topology.Topology) int {
	n := 0
	for _, h := range l.a.indexed(t).Hosts() {
		if l.a.node.ViewSince(h) >= t.ConfigVersion {
			n++
		}
	}
	return n
}

// autoRecover starts an incremental recovery of every failed instance
// whose agent reports on it again (auto_recover: incremental).
// It reports whether it asked for any.
func (l *leader) autoRecover(ctx context.Context, t *topology.Topology, obs map[int]topology.Observation, lost map[string]bool) bool {
	reqs := topology.AutoRecover(t, obs, lost)
	if len(reqs) == 0 {
		return false
	}
	cmd := topology.Command{Type: topology.CmdRecover, BaseVersion: t.ConfigVersion, Recover: reqs, Auto: true}
	if _, err := l.a.node.Apply(ctx, cmd); err != nil && !errors.Is(err, topology.ErrStale) {
		l.log.Warn("auto_recover failed to start", "err", err)
		return true
	}
	l.log.Info("auto_recover started", "instances", len(reqs))
	return true
}

// quietInputs are what a reconcile decides from, but for the reports
// themselves: the committed topology (and with it every host's view
// version, which onCurrentViews reads), how many reports that differ
// from the ones they replace have come in, the hosts counted lost, and
// how many held reports are too old to act on. Any other report differs
// from the one it replaces only in its LSNs and probe time, which Decide
// reads only during a switchover. So a reconcile whose inputs equal those of one that found
// nothing to do finds nothing again: at 1,000 agents each idle tick
// copied 16,000 reports and decided every content for nothing, a third
// of the leader's idle CPU.
type quietInputs struct {
	t       *topology.Topology // nil: none recorded
	newsGen uint64
	lost    map[string]bool
	aged    int
}

// same reports whether a reconcile on in may be skipped: q is recorded
// and in equals it, and no switchover runs (its deadline moves with the
// clock alone).
func (q quietInputs) same(in quietInputs) bool {
	return q.t != nil && q.t == in.t && len(in.t.Switchovers) == 0 &&
		q.newsGen == in.newsGen && q.aged == in.aged && maps.Equal(q.lost, in.lost)
}

// inputs reads the quiet inputs of a reconcile of t at now.
func (l *leader) inputs(t *topology.Topology, lost map[string]bool, now time.Time, maxAge time.Duration) quietInputs {
	l.mu.Lock()
	defer l.mu.Unlock()
	in := quietInputs{t: t, newsGen: l.newsGen, lost: lost}
	for _, r := range l.reports {
		if !topology.Fresh(r.at, now, maxAge) {
			in.aged++
		}
	}
	return in
}

// withoutContents drops the updates of extra that touch a content some
// update of base already changes: one command never carries two
// decisions about one content (the next round recomputes the other).
// By the topology's index: base can hold thousands of updates (an init's
// creations), and a scan per update made it quadratic (7 % of the
// leader's CPU at 1,000 agents in init).
func withoutContents(x *topology.Index, extra, base []topology.SegmentUpdate) []topology.SegmentUpdate {
	busy := map[int]bool{}
	for _, u := range base {
		if s, ok := x.Segment(u.DBID); ok {
			busy[s.Content] = true
		}
	}
	var out []topology.SegmentUpdate
	for _, u := range extra {
		if s, ok := x.Segment(u.DBID); ok && !busy[s.Content] {
			out = append(out, u)
		}
	}
	return out
}

// directClient is an agent this leader knows from its reports alone: a
// client that joined no gossip pool (servers in its config).
type directClient struct {
	name string
	api  string
	at   time.Time // last report, on this leader's clock
}

// noteAPI records the API address an agent's report gave, so that the
// leader reaches a client without gossip (preflight of an init or an
// addmirrors, members). Only from an authenticated report (the agent
// credential): an address is not taken from anyone else.
func (l *leader) noteAPI(agent, addr string, now time.Time) {
	if addr == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.direct == nil {
		l.direct = map[string]directClient{}
	}
	l.direct[agent] = directClient{name: agent, api: addr, at: now}
}

// clientAPI is the API address of a client heard within lease + margin:
// one not heard that long is lost for failover too.
func (l *leader) clientAPI(name string, now time.Time) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.direct[name]
	if !ok || now.Sub(c.at) > l.a.cfg.Lease+l.a.cfg.LeaseMargin {
		return "", false
	}
	return c.api, true
}

// directClients lists the clients reports made known, heard within lease
// + margin, sorted by name.
func (l *leader) directClients(now time.Time) []directClient {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []directClient
	for _, c := range l.direct {
		if now.Sub(c.at) <= l.a.cfg.Lease+l.a.cfg.LeaseMargin {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(x, y directClient) int { return strings.Compare(x.name, y.name) })
	return out
}
