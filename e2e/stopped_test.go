package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gpagent/gpagent/topology"
)

// TestFailover_StoppedPostmaster is issue 12's split brain on real
// PostgreSQL: a primary's postmaster is SIGSTOPped (its backends, in
// sessions of their own, keep running and serving their clients), its
// agent's probes fail and the mirror is promoted. By then the old primary
// must be unable to write: every process of it gone, so that neither a
// session opened before the stop (with synchronous_commit = local, for
// which synchronous_standby_names is no guard) nor the thawed postmaster
// commits beside the promoted mirror.
func TestFailover_StoppedPostmaster(t *testing.T) {
	d := startDemo(t, "--hosts", "1")
	p0, m0 := pair(t, d.state(), 0)

	// A session pinned to the primary, opened before the fault.
	sess := localCommitSession(t, d, p0, "e2e_stopped")

	pm := postmasterPID(p0.DataDir)
	children := childPIDs(pm)
	if !alive(pm) || len(children) == 0 {
		t.Fatalf("%s: postmaster %d with children %v", p0, pm, children)
	}
	if err := syscall.Kill(pm, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP %d: %v", pm, err)
	}
	// Whatever happens, nothing is left stopped.
	t.Cleanup(func() { _ = syscall.Kill(pm, syscall.SIGCONT) })

	waitFailedOver(t, d, p0, m0)
	// The promotion is committed: the old primary must already be unable
	// to write, not merely on its way down.
	var left []string
	for _, pid := range append([]int{pm}, children...) {
		if alive(pid) && !zombie(pid) {
			left = append(left, fmt.Sprint(pid))
		}
	}
	if len(left) > 0 {
		t.Errorf("mirror %s promoted while processes of the old primary %s still run: %s", m0, p0, strings.Join(left, " "))
	}
	if err := syscall.Kill(pm, syscall.SIGCONT); err != nil && err != syscall.ESRCH {
		t.Fatalf("SIGCONT %d: %v", pm, err)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if _, err := sess.Exec(wctx, "INSERT INTO e2e_stopped VALUES (2)"); err == nil {
		t.Errorf("a session opened on the old primary %s before the stop committed after its mirror %s was promoted", p0, m0)
	}
}

// TestFailover_StoppedAgent is the hole `gpbench chaos --seed 3` found
// (issue 12): the *agent* of a primary's host is SIGSTOPped. It cannot
// fence anything; the leader, no longer hearing it, promotes the mirror
// after lease plus margin. The fence watchdog, a process of its own, must
// have killed the old primary by then: no session opened on it before
// (with synchronous_commit = local) commits beside the promoted mirror.
// Before the watchdog, the old primary stayed writable until the agent
// was continued.
func TestFailover_StoppedAgent(t *testing.T) {
	d := startDemo(t)
	p0, m0 := pair(t, d.state(), 0)
	sess := localCommitSession(t, d, p0, "e2e_stopped_agent")
	pm := postmasterPID(p0.DataDir)
	apid := d.hostAgentPID(p0.Hostname)
	if !alive(pm) || !alive(apid) {
		t.Fatalf("%s: postmaster %d, agent %d: want both running", p0, pm, apid)
	}
	if err := syscall.Kill(apid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP agent %d: %v", apid, err)
	}
	t.Cleanup(func() { _ = syscall.Kill(apid, syscall.SIGCONT) })
	t0 := time.Now()

	waitFailedOver(t, d, p0, m0)
	t.Logf("content 0 failed over %s after its agent was stopped", time.Since(t0).Round(time.Millisecond))
	// The promotion is committed: the old primary must be gone already
	// (a zombie: its parent, the agent, is stopped and cannot reap it).
	if alive(pm) && !zombie(pm) {
		t.Errorf("mirror %s promoted while the old primary %s (postmaster %d) still runs under its stopped agent", m0, p0, pm)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if _, err := sess.Exec(wctx, "INSERT INTO e2e_stopped_agent VALUES (2)"); err == nil {
		t.Errorf("a session opened on the old primary %s committed after its agent stopped and its mirror %s was promoted", p0, m0)
	}
	if b, _ := os.ReadFile(filepath.Join(d.dir, p0.Hostname, "agent.log")); !strings.Contains(string(b), "component=watchdog") || !strings.Contains(string(b), "killing it") {
		t.Errorf("no watchdog kill in %s's agent log", p0.Hostname)
	}
	if err := syscall.Kill(apid, syscall.SIGCONT); err != nil {
		t.Fatalf("SIGCONT agent %d: %v", apid, err)
	}
	// Continued, the agent finds its primary demoted: recoverseg makes it
	// the mirror again.
	d.mustGpagent("recoverseg", "-a")
	checkPair(t, d, 0, m0.DBID, p0.DBID)
}

// localCommitSession opens a session pinned to the primary p, with
// synchronous_commit = local (for which synchronous_standby_names is no
// guard), creates table and commits one row in it; closed at the end of
// the test.
func localCommitSession(t *testing.T, d *demo, p topology.Segment, table string) *pgx.Conn {
	t.Helper()
	connstr := strings.TrimSpace(d.mustGpagent("connstr", "--content", fmt.Sprint(p.Content))) +
		fmt.Sprintf(" host=%s port=%d target_session_attrs=any passfile=%s", p.Address, p.Port, filepath.Join(d.dir, "pgpass"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := pgx.Connect(ctx, connstr)
	if err != nil {
		t.Fatalf("connect to the primary %s: %v", p, err)
	}
	t.Cleanup(func() { sess.Close(context.Background()) })
	for _, q := range []string{
		"SET synchronous_commit = local",
		"CREATE TABLE IF NOT EXISTS " + table + " (id int)",
		"INSERT INTO " + table + " VALUES (1)",
	} {
		if _, err := sess.Exec(ctx, q); err != nil {
			t.Fatalf("%s on the primary %s before the fault: %v", q, p, err)
		}
	}
	return sess
}

// childPIDs lists the live children of pid.
func childPIDs(pid int) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var c int
		if _, err := fmt.Sscan(e.Name(), &c); err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) >= 2 && f[1] == fmt.Sprint(pid) {
			pids = append(pids, c)
		}
	}
	return pids
}

// zombie reports whether pid has exited and awaits its parent's wait.
func zombie(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}
