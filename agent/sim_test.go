package agent

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/simpg"
	"github.com/gpagent/gpagent/topology"
)

// These are the in-process mesh tests: every one runs three agents with
// real Raft, memberlist and HTTP over loopback and simulated instances,
// and ends by checking what an operator would: who is primary, whether
// pairs are in sync, and that no acknowledged commit was lost.

// waitPromoted waits until m is the acting primary of its content and
// p is recorded down.
func (c *simCluster) waitPromoted(p, m topology.Segment) {
	c.t.Helper()
	c.waitUntil(fmt.Sprintf("content %d failed over to dbid %d", p.Content, m.DBID), func() (bool, string) {
		s, err := c.client().State(context.Background())
		if err != nil {
			return false, err.Error()
		}
		np, nm := simPair(c.t, s, p.Content)
		return np.DBID == m.DBID && np.Status == topology.StatusUp && nm.Status == topology.StatusDown, np.String() + " / " + nm.String()
	})
}

// recoverAll runs recoverseg (-F when full) and waits for every pair to
// be in sync again.
func (c *simCluster) recoverAll(full bool) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), simWait)
	defer cancel()
	cl := c.client()
	plan, err := cl.PlanRecovery(ctx, api.RecoverRequest{Full: full})
	if err != nil {
		c.t.Fatalf("recover plan: %v", err)
	}
	if _, err := cl.Recover(ctx, *plan); err != nil {
		c.t.Fatalf("recover: %v", err)
	}
	c.waitUntil("every instance up and every pair in sync after recoverseg", func() (bool, string) {
		s, err := c.client().State(context.Background())
		if err != nil {
			return false, err.Error()
		}
		for _, seg := range s.Segments {
			if seg.Content >= 0 && (seg.Status != topology.StatusUp || seg.Mode != topology.ModeSynced) {
				return false, seg.String()
			}
		}
		return true, ""
	})
}

// primaryOffLeader returns a host that is not the Raft leader's, a
// primary on it and that primary's mirror.
func (c *simCluster) primaryOffLeader() (*simHost, topology.Segment, topology.Segment) {
	c.t.Helper()
	lead := c.waitLeader()
	s := c.state()
	for _, seg := range s.Segments {
		if seg.Content < 0 || seg.Role != topology.RolePrimary || seg.Hostname == lead.name {
			continue
		}
		p, m := simPair(c.t, s, seg.Content)
		return c.host(p.Hostname), p, m
	}
	c.t.Fatalf("no primary off the leader's host %s", lead.name)
	return nil, topology.Segment{}, topology.Segment{}
}

func TestSimElection_LeaderLoss(t *testing.T) {
	c := newSimCluster(t, 3, "")
	c.initCluster(1)
	old := c.waitLeader()
	v := c.state().ConfigVersion
	c.stop(old)
	lead := c.waitLeader()
	if lead == old {
		t.Fatalf("%s still leads after its agent stopped", old.name)
	}
	// The new leader holds every committed entry: it answers with the
	// same topology and goes on deciding.
	if got := c.state().ConfigVersion; got < v {
		t.Fatalf("new leader %s answers config version %d, below the committed %d", lead.name, got, v)
	}
	c.start(old)
	c.waitUntil(old.name+" back as a follower", func() (bool, string) {
		a := c.agent(old)
		return !a.node.IsLeader() && a.node.Topology().ConfigVersion >= v, fmt.Sprint(a.node.Topology().ConfigVersion)
	})
}

func TestSimKillPrimary(t *testing.T) {
	c := newSimCluster(t, 3, "")
	c.initCluster(1)
	p, m := simPair(t, c.state(), 0)
	c.killPrimary(p, m)
	var failovers uint64
	for _, h := range c.running() {
		failovers += c.agent(h).counts.failovers.Load()
	}
	if failovers != 1 {
		t.Errorf("gpagent_failovers_total summed over the agents is %d, want 1", failovers)
	}
	// The old primary stays down (rule 7) until recoverseg.
	if st := c.world.State(p.Address, p.Port); st.Running {
		t.Errorf("the old primary %s runs again without recoverseg: %+v", p, st)
	}
}

func TestSimHangPrimary(t *testing.T) {
	c := newSimCluster(t, 3, "")
	c.initCluster(1)
	p, m := simPair(t, c.state(), 0)
	w := c.startWriter(0)
	w.waitAckedAfter(time.Now(), "writes before the hang")
	t0 := time.Now()
	c.world.Hang(p.Address, p.Port)
	c.waitPromoted(p, m)
	w.waitAckedAfter(t0, "writes on the promoted mirror")
	w.check()
}

// TestSimHungPrimaryNeverWritesAfterPromotion is issue 12's split brain:
// a primary frozen (every process stopped, as by SIGSTOP) is failed over;
// thawed after its mirror's promotion, it must not acknowledge a single
// commit, not even to a session that set synchronous_commit = local (for
// which its synchronous_standby_names is no guard) and that was already
// waiting on it when it froze.
func TestSimHungPrimaryNeverWritesAfterPromotion(t *testing.T) {
	c := newSimCluster(t, 3, "")
	c.initCluster(1)
	p, m := simPair(t, c.state(), 0)
	old := addrOf(p)
	ctx, cancel := context.WithTimeout(context.Background(), simWait)
	defer cancel()
	if _, _, err := c.world.CommitLocal(ctx, p.Address, p.Port); err != nil {
		t.Fatalf("commit on the primary %s before the hang: %v", p, err)
	}
	from := len(c.world.Acks(0))
	c.world.Hang(p.Address, p.Port)
	// A session already open on the old primary: its commit waits while
	// the server is frozen.
	pending := make(chan error, 1)
	go func() {
		_, _, err := c.world.CommitLocal(ctx, p.Address, p.Port)
		pending <- err
	}()
	c.waitPromoted(p, m)
	c.world.Resume(p.Address, p.Port)
	// New sessions after the thaw, for as long as a graceful stop of the
	// demoted primary could take (bounded in count and time).
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; i < 200 && time.Now().Before(deadline); i++ {
		cctx, ccancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, _, err := c.world.CommitLocal(cctx, p.Address, p.Port)
		ccancel()
		if errors.Is(err, simpg.ErrNotRunning) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-pending:
		if err == nil {
			t.Errorf("the session open on the frozen primary %s committed after its mirror's promotion", p)
		}
	case <-ctx.Done():
		t.Fatalf("the commit waiting on the frozen primary %s never ended", p)
	}
	for _, a := range c.world.Acks(from) {
		if a.Instance == old {
			t.Errorf("the old primary %s acknowledged commit %d (timeline %d) after it froze and its mirror %s was promoted", p, a.Commit, a.Timeline, m)
		}
	}
	if st := c.world.State(p.Address, p.Port); st.Running && !st.InRecovery {
		t.Errorf("the old primary %s still runs as a primary after its mirror's promotion: %+v", p, st)
	}
}

func TestSimKillMirror(t *testing.T) {
	c := newSimCluster(t, 3, "")
	c.initCluster(1)
	p, m := simPair(t, c.state(), 0)
	w := c.startWriter(0)
	w.waitAckedAfter(time.Now(), "writes before the kill")
	t0 := time.Now()
	c.world.Crash(m.Address, m.Port)
	c.waitUntil("the mirror recorded down, the primary still primary", func() (bool, string) {
		np, nm := simPair(t, c.state(), 0)
		return np.DBID == p.DBID && nm.Status == topology.StatusDown && np.Mode == topology.ModeNotSynced, np.String() + " / " + nm.String()
	})
	// Rule 3: the primary stops waiting only once the mirror is
	// recorded down; then its commits go on.
	w.waitAckedAfter(t0, "writes after the mirror was recorded down")
	c.recoverAll(false)
	w.check()
}

func TestSimHangMirror(t *testing.T) {
	c := newSimCluster(t, 3, "")
	c.initCluster(1)
	p, m := simPair(t, c.state(), 0)
	w := c.startWriter(0)
	w.waitAckedAfter(time.Now(), "writes before the hang")
	t0 := time.Now()
	c.world.Hang(m.Address, m.Port)
	c.waitUntil("the hung mirror recorded down", func() (bool, string) {
		np, nm := simPair(t, c.state(), 0)
		return np.DBID == p.DBID && nm.Status == topology.StatusDown, np.String() + " / " + nm.String()
	})
	w.waitAckedAfter(t0, "writes after the hung mirror was recorded down")
	w.check()
}

func TestSimHostLoss(t *testing.T) {
	c := newSimCluster(t, 3, "")
	c.initCluster(1)
	host, p, m := c.primaryOffLeader()
	c.loseHost(host, p, m)
}

// killPrimary crashes p (kill -9) under a writer on its content, waits
// until m is promoted and checks that no acknowledged write was lost.
func (c *simCluster) killPrimary(p, m topology.Segment) {
	c.t.Helper()
	w := c.startWriter(p.Content)
	w.waitAckedAfter(time.Now(), "writes before the kill")
	t0 := time.Now()
	c.world.Crash(p.Address, p.Port)
	c.waitPromoted(p, m)
	w.waitAckedAfter(t0, "writes on the promoted mirror")
	w.check()
}

// loseHost loses host whole (agent and instances at once, no goodbye)
// under a writer on p's content, waits until m is promoted and checks
// that no acknowledged write was lost; it returns how long the promotion
// took.
func (c *simCluster) loseHost(host *simHost, p, m topology.Segment) time.Duration {
	c.t.Helper()
	w := c.startWriter(p.Content)
	w.waitAckedAfter(time.Now(), "writes before the host loss")
	t0 := time.Now()
	c.stop(host)
	c.world.KillHost(host.name)
	c.waitPromoted(p, m)
	took := time.Since(t0)
	w.waitAckedAfter(t0, "writes after the host loss")
	w.check()
	return took
}

// TestSimHostCutOff cuts a host with a primary off from the others: it
// must fence its primary (no commit acknowledged there) and the others
// promote its mirror; after the heal the old primary never takes writes.
func TestSimHostCutOff(t *testing.T) {
	c := newSimCluster(t, 3, "")
	c.initCluster(1)
	host, p, m := c.primaryOffLeader()
	c.cutOffFailsOver(host, p, m, func() { c.isolate(host) })
}

// cutOffFailsOver cuts host (whose primary is p) off by cut under a writer
// on p's content: m is promoted, host counts a fence event, and after the
// heal p stops or stays fenced; then every failed instance is recovered
// and no acknowledged write was lost.
func (c *simCluster) cutOffFailsOver(host *simHost, p, m topology.Segment, cut func()) {
	c.t.Helper()
	w := c.startWriter(p.Content)
	w.waitAckedAfter(time.Now(), "writes before the cut")
	t0 := time.Now()
	cut()
	c.waitPromoted(p, m)
	w.waitAckedAfter(t0, "writes after the cut")
	c.waitUntil("the cut-off agent counted a fence event", func() (bool, string) {
		n := c.agent(host).counts.fences.Load()
		return n >= 1, fmt.Sprint(n)
	})
	c.heal()
	c.waitUntil("the cut-off primary stopped or fenced after the heal", func() (bool, string) {
		st := c.world.State(p.Address, p.Port)
		return !st.Running || st.ReadOnly, fmt.Sprintf("%+v", st)
	})
	c.recoverAll(false)
	w.check()
}

func TestSimRecoverFull(t *testing.T) {
	c := newSimCluster(t, 3, "")
	c.initCluster(1)
	p, m := simPair(t, c.state(), 0)
	w := c.startWriter(0)
	w.waitAckedAfter(time.Now(), "writes before the kill")
	c.world.Crash(p.Address, p.Port)
	c.waitPromoted(p, m)
	c.recoverAll(true)
	w.check()
	// Counted by the agent of the recovered instance once its copy is done.
	c.waitUntil("a full recovery counted", func() (bool, string) {
		var copies uint64
		for _, h := range c.running() {
			copies += c.agent(h).counts.copies.Load()
		}
		return copies == 1, fmt.Sprint(copies)
	})
}

// TestSimRestartEveryAgent stops every agent at once and starts them
// again: the instances ran on meanwhile; the agents adopt them, the
// cluster keeps its topology, and a failover still works. The restart
// fits in the lease, as an upgrade's must: a longer one is a host whose
// lease ran out, and its fence watchdog kills its primaries. The
// harness stops the agents one after the other, each with a graceful
// leave, which on a loaded machine takes longer than the sim's 1.5 s.
func TestSimRestartEveryAgent(t *testing.T) {
	c := newSimCluster(t, 3, "lease: 15s\n")
	c.initCluster(1)
	v := c.state().ConfigVersion
	for _, h := range c.hosts {
		c.stop(h)
	}
	for _, h := range c.hosts {
		c.start(h)
	}
	c.waitLeader()
	if got := c.state().ConfigVersion; got < v {
		t.Fatalf("after the restart the cluster answers config version %d, below %d", got, v)
	}
	c.waitInSync("after every agent restarted")
	p, m := simPair(t, c.state(), 1)
	w := c.startWriter(1)
	w.waitAckedAfter(time.Now(), "writes after the restart")
	c.world.Crash(p.Address, p.Port)
	c.waitPromoted(p, m)
	w.check()
}

// TestSimRestartedAgentSeesCrashAtOnce: an agent restarted while its
// instances ran on adopts every postmaster it finds, so the crash of one
// wakes it at once, not at its next probe round. The probe interval is
// long here, so that only the exit notice can explain a prompt failover.
func TestSimRestartedAgentSeesCrashAtOnce(t *testing.T) {
	const interval = 60 * time.Second
	c := newSimCluster(t, 3, "probe_interval: 60s\nlease: 180s\n")
	c.initCluster(1)
	host, p, m := c.primaryOffLeader()
	c.stop(host)
	restarted := time.Now()
	c.start(host)
	c.waitUntil("the restarted agent reported its primary", func() (bool, string) {
		for _, r := range c.state().Instances {
			if r.DBID == p.DBID {
				return r.Seen.After(restarted) && r.Up, fmt.Sprintf("%+v", r)
			}
		}
		return false, "no report"
	})
	t0 := time.Now()
	c.world.Crash(p.Address, p.Port)
	c.waitPromoted(p, m)
	if took := time.Since(t0); took > interval/3 {
		t.Errorf("the failover took %s after the crash: the restarted agent waited for a probe round (%s) instead of hearing the exit", took.Round(time.Millisecond), interval)
	}
}

// TestSimJoinBecomesVoter: the leader adds an agent to the Raft
// configuration when gossip sees it join, not at its next periodic voter
// round, which this test sets to an hour.
func TestSimJoinBecomesVoter(t *testing.T) {
	c := newSimWorld(t)
	c.voterRound = time.Hour
	for range 3 {
		c.addHost("")
	}
	roles := c.waitRaftMembers(3)
	for name, role := range roles {
		if role != "voter" && role != "leader" {
			t.Errorf("%s is a Raft %s, want voter (voters: 3)", name, role)
		}
	}
}
