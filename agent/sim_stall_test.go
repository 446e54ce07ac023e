package agent

import (
	"context"
	"testing"
	"time"

	"github.com/gpagent/gpagent/internal/simnet"
)

// TestSimRaftStalledFollowerFailsOver: a follower whose Raft port is cut
// while its API and gossip are open stops applying the log; once the
// leader commits a change it cannot renew its lease (it must act on the
// current topology first) and fences its primary. The leader must not
// count it heard for ever on its reports: it fails the content over, so
// no content is left stranded with a fenced primary (issue 12, hole 4).
func TestSimRaftStalledFollowerFailsOver(t *testing.T) {
	c := newSimCluster(t, 3, "")
	c.initCluster(1)
	host, p, m := c.primaryOffLeader()
	w := c.startWriter(p.Content)
	w.waitAckedAfter(time.Now(), "writes before the cut")
	c.net.Only(simnet.Raft).Isolate(host.ip)
	// Two commits the cut-off follower cannot apply (failover paused and
	// resumed: nothing else changes).
	ctx, cancel := context.WithTimeout(context.Background(), simWait)
	defer cancel()
	for _, paused := range []bool{true, false} {
		if _, err := c.client().SetPaused(ctx, paused); err != nil {
			t.Fatalf("pause %v: %v", paused, err)
		}
	}
	t0 := time.Now()
	c.waitPromoted(p, m)
	w.waitAckedAfter(t0, "writes after the failover")
	c.heal()
	w.check()
}
