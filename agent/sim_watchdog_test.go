package agent

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gpagent/gpagent/simpg"
)

// TestSimStoppedAgentsPrimaryNeverWritesAfterPromotion is the hole
// `gpbench chaos --seed 3` found: an agent stopped (SIGSTOP; here its
// process gone, the same to its postmasters) fences nothing, so when the
// leader, no longer hearing it, promotes the mirror after lease plus
// margin, the old primary is still writable: a session with
// synchronous_commit = local commits on both. The fence watchdog, outside
// the agent, kills the primary a grace after the lease ends, before the
// leader may promote.
func TestSimStoppedAgentsPrimaryNeverWritesAfterPromotion(t *testing.T) {
	c := newSimCluster(t, 3, "")
	c.initCluster(1)
	host, p, m := c.primaryOffLeader()
	content := map[int]int{}
	for _, s := range c.state().Segments {
		content[s.DBID] = s.Content
	}
	ctx, cancel := context.WithTimeout(context.Background(), simWait)
	defer cancel()
	if _, _, err := c.world.CommitLocal(ctx, p.Address, p.Port); err != nil {
		t.Fatalf("commit on the primary %s before the agent stopped: %v", p, err)
	}
	from := len(c.world.Acks(0))
	c.stop(host)
	// A client of the old primary with synchronous_commit = local, and
	// the content's writer, which follows the primary: both commit
	// throughout, until the old primary is gone.
	w := c.startWriter(p.Content)
	oldGone := make(chan struct{})
	go func() {
		defer close(oldGone)
		for i := 0; i < 5000 && ctx.Err() == nil; i++ {
			cctx, ccancel := context.WithTimeout(ctx, 200*time.Millisecond)
			_, _, err := c.world.CommitLocal(cctx, p.Address, p.Port)
			ccancel()
			if errors.Is(err, simpg.ErrNotRunning) {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	c.waitPromoted(p, m)
	w.waitAckedAfter(time.Now(), "writes on the promoted mirror")
	select {
	case <-oldGone:
	case <-ctx.Done():
		t.Fatalf("the old primary %s still takes commits %s after its agent stopped", p, simWait)
	}
	if bad := splitBrains(c.world.Acks(from), content); len(bad) > 0 {
		t.Errorf("two primaries of content %d acknowledged commits (agent of %s stopped): %d commits, the first: %v", p.Content, host.name, len(bad), bad[0])
	}
	if st := c.world.State(p.Address, p.Port); st.Running {
		t.Errorf("the old primary %s runs on after its mirror's promotion: %+v", p, st)
	}
	w.check()
}
