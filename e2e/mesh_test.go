package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

// killHost kills a demo host: its agent and every postmaster it runs.
func (d *demo) killHost(t *testing.T, host string) {
	t.Helper()
	pids := []int{d.hostAgentPID(host)}
	for _, seg := range d.state().Segments {
		if seg.Hostname == host {
			if pid := postmasterPID(seg.DataDir); alive(pid) {
				pids = append(pids, pid)
			}
		}
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %d on %s: %v", pid, host, err)
		}
	}
}

// startAgent starts a host's agent by hand (a host coming back), stopped
// at the end of the test.
func (d *demo) startAgent(t *testing.T, host string) {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(d.dir, host, "agent.log"), os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "agent", "--config", filepath.Join(d.dir, host, "agent.yaml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.dir, host, "agent.pid"), []byte(fmt.Sprintf("%d\n", cmd.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	// Registered before the demo's own cleanup runs (LIFO): stopped last.
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
		}
		logf.Close()
	})
}

func (d *demo) members(t *testing.T) api.Members {
	t.Helper()
	var m api.Members
	if err := jsonUnmarshal(d.mustGpagent("members", "--json"), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func memberStatus(m api.Members, name string) string {
	for _, x := range m.Members {
		if x.Name == name {
			return x.Status + "/" + x.RaftRole
		}
	}
	return "absent"
}

// TestMesh_HostLoss kills a whole segment host (agent and postmasters)
// while clients write: its primaries fail over to mirrors on the other
// host, its mirrors are marked down, writes go on, no acknowledged row
// is lost, and when the host comes back its old primary stays down
// (rule 7) until recoverseg makes it a mirror again.
func TestMesh_HostLoss(t *testing.T) {
	d := startDemo(t, "--restart-agents=false")
	w0, w1 := d.startWriter(0), d.startWriter(1)
	s := d.state()
	p0, m0 := pair(t, s, 0)
	if p0.Hostname == m0.Hostname {
		t.Fatalf("demo placed content 0's mirror on its primary's host %s", p0.Hostname)
	}
	host := p0.Hostname
	t0 := time.Now()
	d.killHost(t, host)
	waitFailedOver(t, d, p0, m0)
	t.Logf("content 0 failed over %s after its host was killed", time.Since(t0).Round(time.Millisecond))
	w0.waitAckedAfter(t0, 30*time.Second, "writes on content 0 after its host was lost")
	w1.waitAckedAfter(t0, 30*time.Second, "writes on content 1 after its mirror's host was lost")
	waitUntil(t, 30*time.Second, host+" dead in gossip", func() (bool, string) {
		st := memberStatus(d.members(t), host)
		return strings.HasPrefix(st, "dead"), st
	})
	for _, seg := range d.state().Segments {
		if seg.Hostname == host && seg.Status != topology.StatusDown {
			t.Errorf("%s on the lost host is recorded %s", seg, seg.Status)
		}
	}

	t.Run("the host comes back: old primary stays down, then recoverseg", func(t *testing.T) {
		d := d.in(t)
		d.startAgent(t, host)
		waitUntil(t, 60*time.Second, host+" alive again and reporting", func() (bool, string) {
			r, ok := report(d.state(), p0.DBID)
			st := memberStatus(d.members(t), host)
			return strings.HasPrefix(st, "alive") && ok && time.Since(r.Seen) < 5*time.Second, st
		})
		if seg, _ := d.state().Segment(p0.DBID); seg.Role != topology.RoleMirror || seg.Status != topology.StatusDown {
			t.Errorf("old primary after its host came back: %+v, want m d", seg)
		}
		if pid := postmasterPID(p0.DataDir); alive(pid) {
			t.Errorf("old primary started again (pid %d) by its returning agent", pid)
		}
		d.mustGpagent("recoverseg", "-a")
		checkPair(t, d, 0, m0.DBID, p0.DBID)
	})
	w0.checkNoLoss()
	w1.checkNoLoss()
}

// TestMesh_LeaderLossAndRestartAll: the Raft leader's agent is killed, a
// new leader is elected among the others and fails a primary over; then
// every agent is killed and restarted at once: the topology is kept, the
// postmasters adopted, and nothing is promoted.
func TestMesh_LeaderLossAndRestartAll(t *testing.T) {
	d := startDemo(t)
	s := d.state()
	old := s.Leader
	oldPID := d.hostAgentPID(old)
	if err := syscall.Kill(oldPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var newLeader string
	// A leader elected after the kill: another agent, or the killed one
	// restarted by the demo (a new process that won a new term; it may
	// time out first, since the others wait 1-2 s of silence).
	waitUntil(t, 60*time.Second, "a new leader", func() (bool, string) {
		for _, h := range d.hostNames() {
			if h == old {
				continue
			}
			c := d.client(d.apiOf(t, h))
			st, err := c.State(context.Background())
			if err != nil || st.Leader == "" {
				continue
			}
			if st.Leader != old {
				newLeader = st.Leader
				return true, ""
			}
			// The restarted process answers as leader only once it
			// leads a term of its own (past its barrier).
			if pid := d.hostAgentPID(old); pid != oldPID && alive(pid) {
				if ost, err := d.client(d.apiOf(t, old)).State(context.Background()); err == nil && ost.Leader == old && !ost.Stale {
					newLeader = old + " (restarted)"
					return true, ""
				}
			}
		}
		return false, "no new leader yet"
	})
	t.Logf("new leader %s after %s was killed", newLeader, old)
	// The demo restarts the killed agent; failover works either way.
	p1, m1 := pair(t, d.state(), 1)
	killPostmaster(t, p1)
	waitFailedOver(t, d, p1, m1)

	t.Run("kill and restart every agent at once", func(t *testing.T) {
		d := d.in(t)
		before := d.state()
		pids := postmasterPIDs(before)
		agents := map[string]int{}
		for _, h := range d.hostNames() {
			agents[h] = d.hostAgentPID(h)
			_ = syscall.Kill(agents[h], syscall.SIGKILL)
		}
		waitUntil(t, 90*time.Second, "every agent back, a leader, every instance reported", func() (bool, string) {
			for h, pid := range agents {
				if np := d.hostAgentPID(h); np == pid || !alive(np) {
					return false, h + " not restarted"
				}
			}
			out, err := d.gpagent("state", "-s", "--json")
			if err != nil {
				return false, err.Error()
			}
			var st api.State
			if err := jsonUnmarshal(out, &st); err != nil {
				return false, err.Error()
			}
			n := 0
			for _, r := range st.Instances {
				if time.Since(r.Seen) < 5*time.Second {
					n++
				}
			}
			return st.Leader != "" && n == len(st.Segments), fmt.Sprintf("leader %q, %d fresh reports", st.Leader, n)
		})
		checkKeptAcrossRestart(t, before, d.state(), pids, func(x topology.Segment) string {
			return string(x.Role) + string(x.Status)
		})
	})
}

// postmasterPIDs maps every instance of s to its running postmaster's pid.
func postmasterPIDs(s api.State) map[int]int {
	pids := map[int]int{}
	for _, seg := range s.Segments {
		pids[seg.DBID] = postmasterPID(seg.DataDir)
	}
	return pids
}

// checkKeptAcrossRestart checks that, after every agent restarted, each
// instance of before reads the same through key in after and runs the
// postmaster pids names (adopted, not restarted).
func checkKeptAcrossRestart(t *testing.T, before, after api.State, pids map[int]int, key func(topology.Segment) string) {
	t.Helper()
	for _, seg := range before.Segments {
		now, _ := after.Segment(seg.DBID)
		if key(now) != key(seg) {
			t.Errorf("%s changed across the restart: %s -> %s", seg, key(seg), key(now))
		}
		if pid := postmasterPID(seg.DataDir); pids[seg.DBID] != 0 && pid != pids[seg.DBID] {
			t.Errorf("%s: postmaster %d, want %d adopted", seg, pid, pids[seg.DBID])
		}
	}
}

// apiOf is a host's API address, from its agent config.
func (d *demo) apiOf(t *testing.T, host string) string {
	b, err := os.ReadFile(filepath.Join(d.dir, host, "agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "api_addr: "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no api_addr for %s", host)
	return ""
}
