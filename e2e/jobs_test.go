package e2e

import (
	"context"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpagent/gpagent/api"
)

// TestJobs_SurviveLeaderLoss: a recovery and a rebalance are Raft-recorded
// jobs. The leader's agent is killed while each runs; a new leader (or
// the restarted one) finishes it, a re-run of the command attaches to it,
// and the cluster ends consistent: every pair in sync, no row lost.
func TestJobs_SurviveLeaderLoss(t *testing.T) {
	d := startDemo(t) // three hosts; the demo restarts killed agents
	w0 := d.startWriter(0)
	// Some data, so a full copy takes a moment.
	p0, m0 := pair(t, d.state(), 0)
	cfg := d.config()
	execSQL(t, cfg.SuperUser, cfg.SuperPassword, p0,
		"CREATE TABLE bulk AS SELECT g AS id, repeat('x', 500) AS pad FROM generate_series(1, 1000000) g")

	killLeaderWhen := func(t *testing.T, what string, cond func(api.State) bool) {
		t.Helper()
		var leader string
		c := d.client(d.addr)
		deadline := time.Now().Add(30 * time.Second)
		for {
			s, err := c.State(context.Background())
			if err == nil && cond(*s) {
				leader = s.Leader
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting until %s: %+v %v", what, s, err)
			}
			<-time.After(20 * time.Millisecond)
		}
		if err := syscall.Kill(d.hostAgentPID(leader), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		t.Logf("killed the leader %s's agent while %s", leader, what)
	}

	// The commands run in the background are bounded: a job that never
	// ends must fail the test, not hang it.
	bg, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	t.Run("recovery", func(t *testing.T) {
		d := d.in(t)
		killPostmaster(t, p0)
		waitFailedOver(t, d, p0, m0)
		cmd := exec.CommandContext(bg, binary, "recoverseg", "-F", "-a")
		cmd.Env = append(d.environ(), "GPAGENT_ADDR="+d.apiOf(t, d.hostNames()[1]))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killLeaderWhen(t, "a full recovery runs", func(s api.State) bool { return len(s.Recoveries) > 0 })
		_ = cmd.Wait() // it may fail with its agent's leader gone
		// Run again through a surviving agent: it attaches to the job.
		out := d.gpagentVia(t, d.hostNames()[1], "recoverseg", "-a")
		if !strings.Contains(out, "in progress") && !strings.Contains(out, "no instance needs recovery") {
			t.Logf("re-run output:\n%s", out)
		}
		checkPair(t, d, 0, m0.DBID, p0.DBID)
	})

	t.Run("rebalance", func(t *testing.T) {
		d := d.in(t)
		cmd := exec.CommandContext(bg, binary, "recoverseg", "-r", "-a")
		cmd.Env = append(d.environ(), "GPAGENT_ADDR="+d.apiOf(t, d.hostNames()[1]))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killLeaderWhen(t, "a rebalance switchover runs", func(s api.State) bool { return len(s.Switchovers) > 0 })
		_ = cmd.Wait()
		checkPair(t, d, 0, p0.DBID, m0.DBID)
	})
	w0.waitAckedAfter(time.Now(), 30*time.Second, "writes at the end")
	w0.checkNoLoss()
}

// gpagentVia runs a CLI command against one host's agent.
func (d *demo) gpagentVia(t *testing.T, host string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(d.environ(), "GPAGENT_ADDR="+d.apiOf(t, host))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("gpagent %s via %s: %v\n%s\nagent logs:\n%s", strings.Join(args, " "), host, err, out, d.agentLog())
	}
	return string(out)
}
