package e2e

// Issue 4, host tier: partitions between hosts, each agent in its own
// network namespace (see netns_harness_test.go). Run as root:
//
//	go test -race -count=1 -v -run TestNetns ./e2e/

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gpagent/gpagent/agent"
	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

// The agents run on the defaults: lease 3 s, and the leader promotes on a
// lost host only lease + lease/3 after it last heard from it.
const (
	netnsLease       = agent.DefaultLease
	netnsLeaseMargin = agent.DefaultLease / 3
)

// TestNetns_PartitionSegmentHost cuts sdw1, which holds content 0's
// primary and content 1's mirror, off from the other hosts while clients
// write to both contents. A transaction left open on the old primary
// never commits; content 0's mirror on sdw2 is promoted; content 1 drops
// its lost mirror and goes on. After the heal, the old primary stays a
// stopped mirror (rule 7) until recoverseg resyncs it. No acknowledged
// row is lost and no content ever has two writable primaries.
func TestNetns_PartitionSegmentHost(t *testing.T) {
	c := startNetnsCluster(t)
	d := c.view("mdw")
	s := d.state()
	p0, m0, p1, m1 := netnsPairs(t, s)
	if s.Leader == "sdw1" {
		t.Fatalf("the Raft leader is sdw1, the host this test cuts off; want it elsewhere (mdw bootstraps the cluster)")
	}
	watch := c.watchWrites(s, 0, 1)
	w0, w1 := d.startWriter(0), d.startWriter(1)

	// A transaction open on the primary before the cut.
	execSQL(t, netnsSuperUser, c.superPW, p0, "CREATE TABLE netns_open_txn (id int)")
	octx, ocancel := context.WithTimeout(context.Background(), 5*time.Second)
	old, err := pgx.Connect(octx, c.segDSN(p0, ""))
	ocancel()
	if err != nil {
		t.Fatalf("connect to content 0's primary %s: %v", p0, err)
	}
	defer old.Close(context.Background())
	for _, q := range []string{"BEGIN", "INSERT INTO netns_open_txn VALUES (1)"} {
		if _, err := old.Exec(context.Background(), q); err != nil {
			t.Fatalf("%s on %s: %v", q, p0, err)
		}
	}
	t1 := time.Now()
	w0.waitAckedAfter(t1, 30*time.Second, "writes on content 0 before the cut")
	w1.waitAckedAfter(t1, 30*time.Second, "writes on content 1 before the cut")

	cut := c.partition("sdw1")
	t.Logf("sdw1 cut off from mdw and sdw2")
	// The COMMIT is sent once sdw1's lease (and the leader's margin) has
	// run out: by then its agent must have fenced the primary.
	type commitResult struct {
		err     error
		sentAt  time.Time
		elapsed time.Duration
	}
	commitDone := make(chan commitResult, 1)
	go func() {
		<-time.After(time.Until(cut.Add(netnsLease + netnsLeaseMargin))) // the lease wait
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		_, err := old.Exec(ctx, "COMMIT")
		commitDone <- commitResult{err: err, sentAt: start, elapsed: time.Since(start)}
	}()

	waitFailedOver(t, d, p0, m0)
	failedOver := time.Now()
	t.Logf("content 0: mirror dbid %d on sdw2 promoted %s after the cut", m0.DBID, failedOver.Sub(cut).Round(time.Millisecond))
	checkFencedBeforePromotion(t, c, "sdw1", p0, d)

	waitSegment(t, d, m1.DBID, "content 1's mirror on the cut-off host recorded down", func(x topology.Segment) bool {
		return x.Role == topology.RoleMirror && x.Status == topology.StatusDown
	})
	w1.waitAckedAfter(time.Now(), 30*time.Second, "writes on content 1 once its mirror on sdw1 is recorded down")

	// A client that asks for routing now (connstr lists the acting
	// primary first) writes to the promoted mirror.
	w0b := c.startWriterTable(d, 0, "netns_writes_0_after_failover")
	w0b.waitAckedAfter(failedOver, 30*time.Second, "writes on content 0 through a connstr fetched after the failover")
	// A client that kept the string from before the cut lists the old
	// primary first; it must reach the promoted mirror too, while the cut
	// lasts: a fenced old primary must not hold its sessions.
	softWaitUntil(t, 20*time.Second, "writes on content 0 through the connstr fetched before the cut, while sdw1 is still cut off", func() (bool, string) {
		w0.mu.Lock()
		defer w0.mu.Unlock()
		return w0.lastAck.After(failedOver), fmt.Sprintf("last ack at cut%+v, last error: %v", w0.lastAck.Sub(cut).Round(time.Millisecond), w0.lastErr)
	})

	// The cut-off side: its agent cannot vouch for anything.
	// Refusing (no leader to forward to) is fine; answering unmarked is not.
	if st, err := c.stateOf("sdw1", 15*time.Second); err != nil {
		t.Logf("sdw1's API during the partition refuses state: %v", err)
	} else if !st.Stale {
		t.Errorf("sdw1's API answers state without the stale mark while cut off from the quorum")
	}
	if code, body := httpGet(c.host("sdw1").api(), "/v1/health/primary/0"); code != http.StatusServiceUnavailable {
		t.Errorf("sdw1's health endpoint for content 0 during the partition: %d %s, want 503", code, body)
	}

	res := <-commitDone
	if res.err == nil {
		t.Errorf("COMMIT of a transaction opened on the cut-off primary dbid %d SUCCEEDED %s after the cut (sent %s after it): fencing failed",
			p0.DBID, res.sentAt.Add(res.elapsed).Sub(cut).Round(time.Millisecond), res.sentAt.Sub(cut).Round(time.Millisecond))
	} else {
		t.Logf("COMMIT on the cut-off primary, sent %s after the cut, did not succeed (%s): %v",
			res.sentAt.Sub(cut).Round(time.Millisecond), res.elapsed.Round(time.Millisecond), res.err)
	}

	healed := time.Now()
	c.heal("sdw1")
	t.Logf("healed %s after the cut", healed.Sub(cut).Round(time.Millisecond))
	waitUntil(t, 60*time.Second, "sdw1 reports to the leader again", func() (bool, string) {
		r, ok := report(d.state(), p0.DBID)
		return ok && r.Seen.After(healed), fmt.Sprintf("report %+v", r)
	})
	checkGossipRejoins(t, c, "sdw1", healed)
	waitUntil(t, 60*time.Second, "sdw1's agent stops the demoted old primary", func() (bool, string) {
		pid := postmasterPID(p0.DataDir)
		return !alive(pid), fmt.Sprintf("postmaster %d", pid)
	})
	if seg, _ := d.state().Segment(p0.DBID); seg.Role != topology.RoleMirror || seg.Status != topology.StatusDown {
		t.Errorf("old primary after the heal: %+v, want role m status d", seg)
	}
	if ok := probeWritable(c, p0); ok {
		t.Errorf("old primary dbid %d acknowledged a commit after the heal", p0.DBID)
	}
	w0.waitAckedAfter(healed, 60*time.Second, "writes on content 0 through the connstr from before the cut, after the heal")

	t.Run("recoverseg brings the old primary back as a mirror in sync", func(t *testing.T) {
		d := d.in(t)
		d.mustGpagent("recoverseg", "-a")
		checkPair(t, d, 0, m0.DBID, p0.DBID)
		checkPair(t, d, 1, p1.DBID, m1.DBID)
	})

	watch.check()
	w0.checkNoLoss()
	w0b.checkNoLoss()
	w1.checkNoLoss()
	if h := d.mustGpagent("history"); strings.Count(h, "mirror promoted") != 1 {
		t.Errorf("history has %d promotions, want 1:\n%s", strings.Count(h, "mirror promoted"), h)
	}
}

// TestNetns_PartitionLeader cuts the Raft leader's host (mdw, which holds
// only the coordinator) off. The two others elect a new leader, which
// still fails a killed primary over; the isolated old leader commits
// nothing while cut off, so it cannot have promoted anything.
func TestNetns_PartitionLeader(t *testing.T) {
	c := startNetnsCluster(t)
	s := c.view("mdw").state()
	oldLeader := s.Leader
	if oldLeader != "mdw" {
		t.Fatalf("the Raft leader is %q; this test cuts off the leader's host and wants it to be mdw, which holds no segment (mdw bootstraps the cluster)", oldLeader)
	}
	majority := []string{"sdw1", "sdw2"}
	d := c.view(majority[0])
	p0, m0 := pair(t, s, 0)
	p1, m1 := pair(t, s, 1)
	if p1.Hostname == oldLeader || m1.Hostname == oldLeader {
		t.Fatalf("content 1 has an instance on %s", oldLeader)
	}
	watch := c.watchWrites(s, 0, 1)
	w0, w1, wc := d.startWriter(0), d.startWriter(1), d.startWriter(-1)
	t1 := time.Now()
	for _, w := range []*writer{w0, w1, wc} {
		w.waitAckedAfter(t1, 30*time.Second, w.table+" writes before the cut")
	}
	before, err := c.stateOf(oldLeader, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}

	cut := c.partition(oldLeader)
	t.Logf("%s (leader, config version %d) cut off from %v", oldLeader, before.ConfigVersion, majority)
	var newLeader string
	waitUntil(t, 60*time.Second, "a new leader among "+strings.Join(majority, ", "), func() (bool, string) {
		var seen []string
		// members is answered by each agent itself, with its Raft view.
		leaders := map[string]bool{}
		for _, h := range majority {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			m, err := c.client(h).Members(ctx)
			cancel()
			if err != nil {
				seen = append(seen, h+": "+err.Error())
				continue
			}
			seen = append(seen, fmt.Sprintf("%s follows %q", h, m.Leader))
			leaders[m.Leader] = true
		}
		if len(leaders) != 1 || leaders[""] || leaders[oldLeader] {
			return false, strings.Join(seen, "; ")
		}
		for l := range leaders {
			newLeader = l
		}
		return true, ""
	})
	t.Logf("new leader %s elected %s after the cut", newLeader, time.Since(cut).Round(time.Millisecond))
	waitUntil(t, 30*time.Second, "the majority's state is not stale", func() (bool, string) {
		st, err := c.stateOf(majority[0], 10*time.Second)
		if err != nil {
			return false, err.Error()
		}
		return !st.Stale && st.Leader == newLeader, fmt.Sprintf("leader %q stale %v", st.Leader, st.Stale)
	})
	for _, h := range majority {
		if st, err := c.stateOf(h, 10*time.Second); err != nil || st.Leader != newLeader {
			t.Errorf("%s does not follow the new leader %s: %+v %v", h, newLeader, st, err)
		}
	}
	checkIsolated := func(when string) {
		t.Helper()
		// A read falls back to the agent's own copy once no leader is
		// known; until the isolated agent gives up on the old term it may
		// refuse instead.
		var st *api.State
		if !softWaitUntil(t, 20*time.Second, when+": the isolated "+oldLeader+" answers state", func() (bool, string) {
			var err error
			st, err = c.stateOf(oldLeader, 10*time.Second)
			return err == nil, fmt.Sprint(err)
		}) {
			return
		}
		if !st.Stale {
			t.Errorf("%s: the isolated %s answers state without the stale mark", when, oldLeader)
		}
		if st.ConfigVersion != before.ConfigVersion {
			t.Errorf("%s: the isolated %s's config version moved from %d to %d: it committed without a quorum",
				when, oldLeader, before.ConfigVersion, st.ConfigVersion)
		}
		if seg, _ := st.Segment(m1.DBID); seg.Role != topology.RoleMirror {
			t.Errorf("%s: the isolated %s shows dbid %d promoted: %+v", when, oldLeader, m1.DBID, seg)
		}
	}
	checkIsolated("after the election")

	// The isolated agent fences its primary (the coordinator) once its
	// lease runs out: its log says so.
	mdwLog := filepath.Join(c.host(oldLeader).dir, "agent.log")
	waitUntil(t, 30*time.Second, oldLeader+"'s agent fences its primaries", func() (bool, string) {
		b, _ := os.ReadFile(mdwLog)
		return strings.Contains(string(b), "fencing local primaries"), lastLines(string(b), 3)
	})

	killed := time.Now()
	killPostmaster(t, p1)
	t.Logf("killed content 1's primary dbid %d on %s", p1.DBID, p1.Hostname)
	waitFailedOver(t, d, p1, m1)
	t.Logf("content 1: mirror dbid %d promoted by %s, %s after the kill", m1.DBID, newLeader, time.Since(killed).Round(time.Millisecond))
	w1.waitAckedAfter(killed, 30*time.Second, "writes on content 1 after its failover")
	w0.waitAckedAfter(killed, 30*time.Second, "writes on content 0 during the partition")
	checkIsolated("after the failover")

	// The coordinator, alone on the isolated host, acknowledges nothing
	// once fenced.
	wc.mu.Lock()
	lastCoordAck := wc.lastAck
	wc.mu.Unlock()
	t.Logf("coordinator: last commit acknowledged %s after the cut", lastCoordAck.Sub(cut).Round(time.Millisecond))
	if lastCoordAck.After(cut.Add(netnsLease + netnsLeaseMargin + 2*agent.DefaultProbeInterval)) {
		t.Errorf("the coordinator on the isolated %s acknowledged a commit %s after the cut, past its lease",
			oldLeader, lastCoordAck.Sub(cut).Round(time.Millisecond))
	}
	checkIsolated("before the heal")
	majorityState := d.state()

	healed := time.Now()
	c.heal(oldLeader)
	t.Logf("healed %s after the cut", healed.Sub(cut).Round(time.Millisecond))
	waitUntil(t, 60*time.Second, oldLeader+" back in Raft: not stale, at the majority's config version", func() (bool, string) {
		st, err := c.stateOf(oldLeader, 10*time.Second)
		if err != nil {
			return false, err.Error()
		}
		return !st.Stale && st.ConfigVersion >= majorityState.ConfigVersion,
			fmt.Sprintf("stale %v, version %d (majority had %d), leader %q", st.Stale, st.ConfigVersion, majorityState.ConfigVersion, st.Leader)
	})
	checkGossipRejoins(t, c, oldLeader, healed)

	// Every promotion in the history was decided while the majority
	// held the quorum: the one failover of content 1.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := c.client(majority[1]).History(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var promotions []string
	for _, e := range h {
		if strings.Contains(e.Desc, "mirror promoted") {
			promotions = append(promotions, fmt.Sprintf("%s dbid %d: %s", e.Time.Format(time.TimeOnly+".000"), e.DBID, e.Desc))
		}
	}
	if len(promotions) != 1 || !strings.Contains(promotions[0], fmt.Sprintf("content %d:", p1.Content)) {
		t.Errorf("history has promotions %q, want only content %d's", promotions, p1.Content)
	}
	if seg, _ := d.state().Segment(m0.DBID); seg.Role != topology.RoleMirror || seg.Status != topology.StatusUp {
		t.Errorf("content 0's mirror changed though its pair was never touched: %+v (primary %s)", seg, p0)
	}
	waitUntil(t, 60*time.Second, "the coordinator takes writes again after the heal", func() (bool, string) {
		wc.mu.Lock()
		defer wc.mu.Unlock()
		coord, _ := d.state().Segment(1)
		return wc.lastAck.After(healed), fmt.Sprintf("coordinator %+v; last error %v", coord, wc.lastErr)
	})

	watch.check()
	w0.checkNoLoss()
	w1.checkNoLoss()
	wc.checkNoLoss()
}

// slogTimeRE reads the time= field slog's text handler starts each line with.
var slogTimeRE = regexp.MustCompile(`^time=(\S+)`)

func firstLogTime(path string, match func(line string) bool) (time.Time, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if !match(line) {
			continue
		}
		m := slogTimeRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if at, err := time.Parse(time.RFC3339Nano, m[1]); err == nil {
			return at, true
		}
	}
	return time.Time{}, false
}

// checkFencedBeforePromotion checks safety rule 5 from the record: the
// cut-off agent's log says it fenced the old primary before the history
// says its mirror was promoted.
func checkFencedBeforePromotion(t *testing.T, c *netnsCluster, host string, oldPrimary topology.Segment, d *demo) {
	t.Helper()
	var promoted time.Time
	var hist api.History
	if err := jsonUnmarshal(d.mustGpagent("history", "--json"), &hist); err != nil {
		t.Fatal(err)
	}
	for _, e := range hist {
		if strings.Contains(e.Desc, fmt.Sprintf("primary dbid %d lost; mirror promoted", oldPrimary.DBID)) {
			promoted = e.Time
		}
	}
	if promoted.IsZero() {
		t.Fatalf("history has no promotion for the loss of dbid %d", oldPrimary.DBID)
	}
	logPath := filepath.Join(c.host(host).dir, "agent.log")
	dbid := fmt.Sprintf("dbid=%d ", oldPrimary.DBID)
	fenced, ok := firstLogTime(logPath, func(l string) bool {
		return strings.Contains(l, "primary fenced") && strings.Contains(l+" ", dbid)
	})
	if !ok {
		t.Errorf("RULE 5: %s's agent never logged fencing dbid %d, yet its mirror was promoted at %s",
			host, oldPrimary.DBID, promoted.Format(time.TimeOnly+".000"))
		return
	}
	if !fenced.Before(promoted) {
		t.Errorf("RULE 5: %s fenced dbid %d at %s, after its mirror was promoted at %s",
			host, oldPrimary.DBID, fenced.Format(time.TimeOnly+".000"), promoted.Format(time.TimeOnly+".000"))
		return
	}
	t.Logf("%s fenced dbid %d %s before the promotion was committed", host, oldPrimary.DBID, promoted.Sub(fenced).Round(time.Millisecond))
}

// probeWritable reports whether one INSERT on seg is acknowledged within
// a second.
func probeWritable(c *netnsCluster, seg topology.Segment) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.segDSN(seg, ""))
	if err != nil {
		return false
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "INSERT INTO "+watchTable+" VALUES (now())")
	return err == nil
}

// httpGet returns the status and body of GET http://addr/path.
func httpGet(addr, path string) (int, string) {
	cl := &http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 512)
	n, _ := resp.Body.Read(buf)
	b.Write(buf[:n])
	return resp.StatusCode, strings.TrimSpace(b.String())
}

// softWaitUntil is waitUntil that reports a timeout as an error and lets
// the test go on, for a check the rest of the test does not depend on.
func softWaitUntil(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, seen := cond()
		if ok {
			return true
		}
		if time.Now().After(deadline) {
			t.Errorf("timed out after %s waiting until %s; last seen: %s", timeout, what, seen)
			return false
		}
		<-time.After(100 * time.Millisecond) // poll interval
	}
}

// checkGossipRejoins checks, without stopping the test, that every agent
// sees every other alive in gossip again after a cut is healed.
func checkGossipRejoins(t *testing.T, c *netnsCluster, host string, healed time.Time) {
	t.Helper()
	ok := softWaitUntil(t, time.Until(healed.Add(30*time.Second)), "every agent sees every other alive in gossip after healing "+host+"'s cut", func() (bool, string) {
		var bad []string
		for _, h := range c.hosts {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			m, err := c.client(h.name).Members(ctx)
			cancel()
			if err != nil {
				bad = append(bad, h.name+": "+err.Error())
				continue
			}
			for _, o := range c.hosts {
				if st := memberStatus(*m, o.name); !strings.HasPrefix(st, "alive") {
					bad = append(bad, fmt.Sprintf("%s sees %s %s", h.name, o.name, st))
				}
			}
		}
		return len(bad) == 0, strings.Join(bad, "; ")
	})
	if ok {
		t.Logf("gossip: every agent sees every other alive %s after the heal", time.Since(healed).Round(time.Millisecond))
	}
}

// killHost kills a host as a power loss would: its agent and every
// postmaster of the instances the topology places there, with SIGKILL.
// The namespace stays: c.restartAgent brings the host back.
func (c *netnsCluster) killHost(d *demo, name string) {
	c.t.Helper()
	h := c.host(name)
	c.killAgent(name)
	for _, seg := range d.state().Segments {
		if seg.Hostname == name {
			if pid := postmasterPID(seg.DataDir); alive(pid) {
				if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
					c.t.Fatalf("kill postmaster %d of dbid %d on %s: %v", pid, seg.DBID, name, err)
				}
			}
		}
	}
	c.t.Logf("killed host %s (%s): its agent and its postmasters", name, h.addr)
}

// killAgent kills a host's agent alone (SIGKILL); its postmasters run on.
func (c *netnsCluster) killAgent(name string) {
	c.t.Helper()
	h := c.host(name)
	h.mu.Lock()
	a := h.agent
	h.mu.Unlock()
	if a == nil || a.Exited() {
		c.t.Fatalf("agent %s is not running", name)
	}
	if err := syscall.Kill(a.Pid(), syscall.SIGKILL); err != nil {
		c.t.Fatalf("kill agent %s: %v", name, err)
	}
	waitUntil(c.t, 10*time.Second, "agent "+name+" gone", func() (bool, string) { return a.Exited(), "still running" })
}

// TestNetns_KillHostLeaderAndAll: with clients writing and every pair
// watched for two writable primaries, in namespaces: a segment host is
// killed (agent and postmasters) and its primary fails over; it comes
// back and recoverseg makes its old primary a mirror; the Raft leader's
// agent is killed and the others elect a leader that still fails a
// primary over; then every agent is killed and restarted at once, and
// the topology is kept, the postmasters adopted, nothing promoted.
func TestNetns_KillHostLeaderAndAll(t *testing.T) {
	c := startNetnsCluster(t)
	d := c.view("mdw")
	s := d.state()
	p0, m0, p1, m1 := netnsPairs(t, s)
	if s.Leader != "mdw" {
		t.Fatalf("the Raft leader is %q; want mdw (it bootstraps the cluster)", s.Leader)
	}
	watch := c.watchWrites(s, 0, 1)
	w0, w1 := d.startWriter(0), d.startWriter(1)
	t1 := time.Now()
	w0.waitAckedAfter(t1, 30*time.Second, "writes on content 0 at the start")
	w1.waitAckedAfter(t1, 30*time.Second, "writes on content 1 at the start")

	t.Run("kill a segment host", func(t *testing.T) {
		d := d.in(t)
		t0 := time.Now()
		c.killHost(d, "sdw1")
		waitFailedOver(t, d, p0, m0)
		t.Logf("content 0 seen failed over %s after sdw1 was killed (the agents' logs have the exact times)", time.Since(t0).Round(time.Millisecond))
		waitSegment(t, d, m1.DBID, "content 1's mirror on the killed host recorded down", func(x topology.Segment) bool {
			return x.Role == topology.RoleMirror && x.Status == topology.StatusDown
		})
		w0.waitAckedAfter(t0, 30*time.Second, "writes on content 0 after its host was killed")
		w1.waitAckedAfter(t0, 30*time.Second, "writes on content 1 after its mirror's host was killed")

		back := time.Now()
		c.startAgent(c.host("sdw1"))
		waitUntil(t, 60*time.Second, "sdw1 reports again", func() (bool, string) {
			r, ok := report(d.state(), p0.DBID)
			return ok && r.Seen.After(back), fmt.Sprintf("report %+v", r)
		})
		if seg, _ := d.state().Segment(p0.DBID); seg.Role != topology.RoleMirror || seg.Status != topology.StatusDown {
			t.Errorf("old primary after its host came back: %+v, want role m status d", seg)
		}
		if pid := postmasterPID(p0.DataDir); alive(pid) {
			t.Errorf("old primary dbid %d started again (pid %d) by its returning agent", p0.DBID, pid)
		}
		d.mustGpagent("recoverseg", "-a")
		checkPair(t, d, 0, m0.DBID, p0.DBID)
		checkPair(t, d, 1, p1.DBID, m1.DBID)
	})

	t.Run("kill the leader", func(t *testing.T) {
		survivors := c.view("sdw2")
		d := survivors.in(t)
		c.killAgent("mdw")
		var newLeader string
		waitUntil(t, 60*time.Second, "a new leader among sdw1 and sdw2", func() (bool, string) {
			st, err := c.stateOf("sdw2", 5*time.Second)
			if err != nil {
				return false, err.Error()
			}
			newLeader = st.Leader
			return !st.Stale && st.Leader != "" && st.Leader != "mdw", fmt.Sprintf("leader %q stale %v", st.Leader, st.Stale)
		})
		t.Logf("new leader %s after mdw's agent was killed", newLeader)
		t0 := time.Now()
		killPostmaster(t, p1)
		waitFailedOver(t, d, p1, m1)
		t.Logf("content 1 seen failed over %s after its primary was killed, mdw's agent down", time.Since(t0).Round(time.Millisecond))
		w1.waitAckedAfter(t0, 30*time.Second, "writes on content 1 after its failover under the new leader")
		c.startAgent(c.host("mdw"))
		c.waitMesh(60 * time.Second)
		d.mustGpagent("recoverseg", "-a")
		checkPair(t, d, 1, m1.DBID, p1.DBID)
	})

	t.Run("kill and restart every agent at once", func(t *testing.T) {
		d := d.in(t)
		before := d.state()
		pids := postmasterPIDs(before)
		for _, h := range c.hosts {
			c.killAgent(h.name)
		}
		restarted := time.Now()
		for _, h := range c.hosts {
			c.startAgent(h)
		}
		waitUntil(t, 90*time.Second, "a leader, every instance freshly reported", func() (bool, string) {
			c.checkAgentsRunning()
			st, err := c.stateOf("mdw", 10*time.Second)
			if err != nil {
				return false, err.Error()
			}
			n := 0
			for _, r := range st.Instances {
				if r.Seen.After(restarted) {
					n++
				}
			}
			return !st.Stale && st.Leader != "" && n == len(st.Segments), fmt.Sprintf("leader %q, %d fresh reports", st.Leader, n)
		})
		after := d.state()
		if after.ConfigVersion < before.ConfigVersion {
			t.Errorf("config version went back from %d to %d", before.ConfigVersion, after.ConfigVersion)
		}
		checkKeptAcrossRestart(t, before, after, pids, func(x topology.Segment) string {
			return string(x.Role) + string(x.Status) + string(x.Mode)
		})
		if h := d.mustGpagent("history"); strings.Count(h, "mirror promoted") != 2 {
			t.Errorf("history has %d promotions, want 2 (content 0's host kill, content 1's primary kill):\n%s", strings.Count(h, "mirror promoted"), h)
		}
	})

	t2 := time.Now()
	w0.waitAckedAfter(t2, 30*time.Second, "writes on content 0 at the end")
	w1.waitAckedAfter(t2, 30*time.Second, "writes on content 1 at the end")
	watch.check()
	w0.checkNoLoss()
	w1.checkNoLoss()
}

// netnsPairs returns the two contents' primaries and mirrors, failing
// unless they sit as startNetnsCluster places them: primaries on sdw1 and
// sdw2, each group mirror on the other.
func netnsPairs(t *testing.T, s api.State) (p0, m0, p1, m1 topology.Segment) {
	t.Helper()
	p0, m0 = pair(t, s, 0)
	p1, m1 = pair(t, s, 1)
	if p0.Hostname != "sdw1" || m0.Hostname != "sdw2" || p1.Hostname != "sdw2" || m1.Hostname != "sdw1" {
		t.Fatalf("layout: content 0 %s/%s, content 1 %s/%s; want primaries on sdw1/sdw2, group mirrors on the other",
			p0.Hostname, m0.Hostname, p1.Hostname, m1.Hostname)
	}
	return p0, m0, p1, m1
}
