package agent

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestSimPausedHungPrimaryIsLeftAlone: while failover is paused
// (maintenance: an operator may be stopping a postgres on purpose, in a
// debugger or with SIGSTOP), a primary that stops answering probes is
// not killed: nothing would be promoted in its place, so the kill would
// only turn a pause into an outage. Its report says why it was left. On
// resume the usual rule applies: it is killed, then failed over.
func TestSimPausedHungPrimaryIsLeftAlone(t *testing.T) {
	c := newSimCluster(t, 3, "")
	c.initCluster(1)
	_, p, m := c.primaryOffLeader()
	ctx, cancel := context.WithTimeout(context.Background(), simWait)
	defer cancel()
	if _, err := c.client().SetPaused(ctx, true); err != nil {
		t.Fatalf("pause: %v", err)
	}
	c.world.Hang(p.Address, p.Port)
	c.waitUntil("the hung primary's report says failover is paused", func() (bool, string) {
		for _, r := range c.state().Instances {
			if r.DBID == p.DBID {
				return strings.Contains(r.Error, "paused"), r.Error
			}
		}
		return false, "no report"
	})
	// Several more probe rounds: still not killed.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if st := c.world.State(p.Address, p.Port); !st.Running || !st.Hung {
			t.Fatalf("the hung primary %s was stopped while failover was paused: %+v", p, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := c.client().SetPaused(ctx, false); err != nil {
		t.Fatalf("resume: %v", err)
	}
	c.waitPromoted(p, m)
	if st := c.world.State(p.Address, p.Port); st.Running && !st.InRecovery {
		t.Errorf("the old primary %s still runs as a primary after its mirror's promotion: %+v", p, st)
	}
}
