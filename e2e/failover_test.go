package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

// TestFailover_EachPrimaryInTurn kills each segment primary with -9 while
// clients write to both contents: each mirror is promoted, and no
// acknowledged commit is lost. The first kill happens while failover is
// paused, which must hold the promotion back until resume.
func TestFailover_EachPrimaryInTurn(t *testing.T) {
	d := startDemo(t, "--hosts", "1")
	writers := []*writer{d.startWriter(0), d.startWriter(1)}
	s := d.state()
	p0, m0 := pair(t, s, 0)

	t.Run("paused: no promotion until resume", func(t *testing.T) {
		d := d.in(t)
		d.mustGpagent("pause")
		killPostmaster(t, p0)
		// The agent has seen the failure and the leader has had several
		// reconcile rounds with it once a later report still says failed.
		var firstFailed time.Time
		waitUntil(t, 30*time.Second, "the lost primary is reported failed for 3 s", func() (bool, string) {
			r, ok := report(d.state(), p0.DBID)
			if !ok || !r.Failed {
				return false, fmt.Sprintf("report %+v", r)
			}
			if firstFailed.IsZero() {
				firstFailed = r.Seen
			}
			return r.Seen.Sub(firstFailed) > 3*time.Second, fmt.Sprintf("failed since %s, seen %s", firstFailed, r.Seen)
		})
		now := d.state()
		if seg, _ := now.Segment(m0.DBID); seg.Role != topology.RoleMirror {
			t.Fatalf("paused, yet dbid %d was promoted: %+v", m0.DBID, seg)
		}
		if out := d.mustGpagent("state"); !strings.Contains(out, "paused") {
			t.Errorf("state does not say failover is paused:\n%s", out)
		}
		d.mustGpagent("resume")
		waitFailedOver(t, d, p0, m0)
	})

	t.Run("content 1", func(t *testing.T) {
		d := d.in(t)
		p1, m1 := pair(t, s, 1)
		killPostmaster(t, p1)
		waitFailedOver(t, d, p1, m1)
	})

	t.Run("a restarted agent does not start a demoted primary", func(t *testing.T) {
		d := d.in(t)
		old := d.agentPID()
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 60*time.Second, "a new agent reports every instance", func() (bool, string) {
			if pid := d.agentPID(); pid == old || !alive(pid) {
				return false, "agent not restarted yet"
			}
			out, err := d.gpagent("state", "-s", "--json")
			if err != nil {
				return false, err.Error()
			}
			var st api.State
			if err := jsonUnmarshal(out, &st); err != nil {
				return false, err.Error()
			}
			return len(st.Instances) == len(st.Segments), fmt.Sprintf("%d reports", len(st.Instances))
		})
		for _, c := range []int{0, 1} {
			old, _ := pair(t, s, c) // the primaries at the start, both demoted since
			seg, _ := d.state().Segment(old.DBID)
			if seg.Role != topology.RoleMirror || seg.Status != topology.StatusDown {
				t.Errorf("dbid %d: %+v, want role m status d", old.DBID, seg)
			}
			if pid := postmasterPID(old.DataDir); alive(pid) {
				t.Errorf("dbid %d: demoted primary running again (pid %d) after the agent restart", old.DBID, pid)
			}
		}
	})

	for _, w := range writers {
		w.waitAckedAfter(time.Now(), 30*time.Second, w.table+" writes on the promoted primary")
		w.checkNoLoss()
	}
	h := d.mustGpagent("history")
	if n := strings.Count(h, "mirror promoted"); n != 2 {
		t.Errorf("history has %d promotion rows, want 2:\n%s", n, h)
	}
}

// TestFailover_MirrorLossStallAndDoubleFault: a killed mirror and a
// stalled replication link must not stop writes on their primaries, and a
// content that loses its primary with no in-sync mirror is not promoted.
func TestFailover_MirrorLossStallAndDoubleFault(t *testing.T) {
	d := startDemo(t, "--hosts", "1")
	w0, w1 := d.startWriter(0), d.startWriter(1)
	s := d.state()
	p0, m0 := pair(t, s, 0)
	_, m1 := pair(t, s, 1)

	t.Run("kill -9 of a mirror: writes go on, pair not in sync", func(t *testing.T) {
		d := d.in(t)
		t0 := time.Now()
		killPostmaster(t, m0)
		waitSegment(t, d, m0.DBID, "mirror recorded down, not in sync", func(x topology.Segment) bool {
			return x.Status == topology.StatusDown && x.Mode == topology.ModeNotSynced && x.Role == topology.RoleMirror
		})
		waitSegment(t, d, p0.DBID, "primary not in sync", func(x topology.Segment) bool {
			return x.Status == topology.StatusUp && x.Mode == topology.ModeNotSynced && x.Role == topology.RolePrimary
		})
		w0.waitAckedAfter(t0, 20*time.Second, "writes on content 0 after its mirror died")
	})

	t.Run("stalled replication: detected, writes resume", func(t *testing.T) {
		d := d.in(t)
		recv := walReceiverPID(postmasterPID(m1.DataDir))
		if recv == 0 {
			t.Fatalf("no walreceiver found under the mirror's postmaster")
		}
		if err := syscall.Kill(recv, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Kill(recv, syscall.SIGCONT) })
		t0 := time.Now()
		waitSegment(t, d, m1.DBID, "stalled mirror recorded down", func(x topology.Segment) bool {
			return x.Status == topology.StatusDown && x.Role == topology.RoleMirror
		})
		w1.waitAckedAfter(t0, 30*time.Second, "writes on content 1 after the stall was detected")
		if h := d.mustGpagent("history"); !strings.Contains(h, "replication stalled") {
			t.Errorf("history does not name the stall:\n%s", h)
		}
		_ = syscall.Kill(recv, syscall.SIGCONT)
	})

	t.Run("primary lost with no in-sync mirror: no promotion", func(t *testing.T) {
		d := d.in(t)
		t0 := time.Now()
		killPostmaster(t, p0)
		waitUntil(t, 30*time.Second, "history records the double fault of content 0", func() (bool, string) {
			h := d.mustGpagent("history")
			return strings.Contains(h, "content 0 DOWN") && strings.Contains(h, "double fault"), lastLines(h, 3)
		})
		st := d.state()
		if seg, _ := st.Segment(m0.DBID); seg.Role != topology.RoleMirror {
			t.Errorf("a mirror that was not in sync was promoted: %+v", seg)
		}
		// The other content is unaffected: its writes never stopped.
		w1.waitAckedAfter(t0, 10*time.Second, "writes on content 1 during content 0's double fault")
		// Its agent restarts the only complete copy in place.
		waitSegment(t, d, p0.DBID, "content 0's primary restarted in place", func(x topology.Segment) bool {
			return x.Status == topology.StatusUp && x.Role == topology.RolePrimary
		})
		w0.waitAckedAfter(time.Now(), 30*time.Second, "writes on content 0 after the restart in place")
	})
	w0.checkNoLoss()
	w1.checkNoLoss()
}

func killPostmaster(t *testing.T, seg topology.Segment) {
	t.Helper()
	pid := postmasterPID(seg.DataDir)
	if !alive(pid) {
		t.Fatalf("%s: no running postmaster to kill", seg)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", pid, err)
	}
}

// waitFailedOver waits for the picture the issue names after a failover.
func waitFailedOver(t *testing.T, d *demo, oldPrimary, mirror topology.Segment) {
	t.Helper()
	waitSegment(t, d, mirror.DBID, "mirror promoted: role p, preferred m, status u", func(x topology.Segment) bool {
		return x.Role == topology.RolePrimary && x.PreferredRole == topology.RoleMirror && x.Status == topology.StatusUp
	})
	waitSegment(t, d, oldPrimary.DBID, "old primary: role m, status d", func(x topology.Segment) bool {
		return x.Role == topology.RoleMirror && x.Status == topology.StatusDown
	})
	waitUntil(t, 30*time.Second, fmt.Sprintf("dbid %d answers as a primary", mirror.DBID), func() (bool, string) {
		r, ok := report(d.state(), mirror.DBID)
		return ok && r.Up && !r.Recovery, fmt.Sprintf("%+v", r)
	})
}

func waitSegment(t *testing.T, d *demo, dbid int, what string, cond func(topology.Segment) bool) {
	t.Helper()
	waitUntil(t, 30*time.Second, fmt.Sprintf("dbid %d: %s", dbid, what), func() (bool, string) {
		seg, ok := d.state().Segment(dbid)
		return ok && cond(seg), fmt.Sprintf("%+v", seg)
	})
}

func report(s api.State, dbid int) (api.InstanceReport, bool) {
	for _, r := range s.Instances {
		if r.DBID == dbid {
			return r, true
		}
	}
	return api.InstanceReport{}, false
}

// TestSwitchover_Lossless swaps the roles of content 0 twice while a
// client writes to it: each time the old primary follows the new one in
// sync, and no acknowledged commit is lost.
func TestSwitchover_Lossless(t *testing.T) {
	d := startDemo(t, "--hosts", "1")
	w := d.startWriter(0)
	p, m := pair(t, d.state(), 0)
	for i, want := range []topology.Segment{m, p} {
		d.mustGpagent("switchover", "--content", "0", "-a")
		s := d.state()
		np, nm := pair(t, s, 0)
		if np.DBID != want.DBID || nm.Mode != topology.ModeSynced || nm.Status != topology.StatusUp {
			t.Fatalf("switchover %d: primary dbid %d (want %d), mirror %+v", i+1, np.DBID, want.DBID, nm)
		}
		w.waitAckedAfter(time.Now(), 30*time.Second, fmt.Sprintf("writes after switchover %d", i+1))
	}
	if s := d.state(); len(s.Switchovers) != 0 || len(s.Rejoin) != 0 {
		t.Errorf("switchover bookkeeping left behind: %+v %+v", s.Switchovers, s.Rejoin)
	}
	w.checkNoLoss()
	if h := d.mustGpagent("history"); strings.Count(h, "switchover started") != 2 {
		t.Errorf("history does not show two switchovers:\n%s", h)
	}

	t.Run("initstandby, then kill -9 of the coordinator", func(t *testing.T) {
		d := d.in(t)
		coord, _ := d.state().Segment(1)
		// The demo keeps the port after the instances' free for this.
		d.mustGpagent("initstandby", "-P", fmt.Sprint(coord.Port+5), "-a")
		s := d.state()
		c, sb := pair(t, s, -1)
		if sb.Mode != topology.ModeSynced || sb.Status != topology.StatusUp {
			t.Fatalf("standby after initstandby: %+v", sb)
		}
		if out := d.mustGpagent("state"); !regexp.MustCompile(fmt.Sprintf(`Standby\s+sdw1:%d\s.*up`, sb.Port)).MatchString(out) {
			t.Errorf("state summary does not show the standby:\n%s", out)
		}
		wc := d.startWriter(-1)
		killPostmaster(t, c)
		waitFailedOver(t, d, c, sb)
		wc.waitAckedAfter(time.Now(), 30*time.Second, "writes on the promoted standby coordinator")
		wc.checkNoLoss()
	})
}
