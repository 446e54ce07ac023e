package agent

import (
	"fmt"
	"testing"
	"time"

	"github.com/gpagent/gpagent/simpg"
	"github.com/gpagent/gpagent/topology"
)

// TestSimMirrorCrashesBeforePromote: the primary is lost, the leader
// promotes its in-sync mirror, and the mirror's postmaster crashes as
// pg_promote is called. The topology then has a primary recorded down
// that its agent restarts in place, where it comes back a standby (it was
// never promoted): it holds every acknowledged commit, and the agent must
// promote it, not leave the content stranded with no primary.
func TestSimMirrorCrashesBeforePromote(t *testing.T) {
	c := newSimCluster(t, 3, "")
	c.initCluster(1)
	p, m := simPair(t, c.state(), 0)
	w := c.startWriter(0)
	w.waitAckedAfter(time.Now(), "writes before the kill")
	c.world.FailNext(m.Address, m.Port, simpg.ToolPromoteCrash)
	t0 := time.Now()
	c.world.Crash(p.Address, p.Port)
	c.waitUntil(fmt.Sprintf("dbid %d the content's primary, up, out of recovery", m.DBID), func() (bool, string) {
		np, _ := simPair(t, c.state(), 0)
		st := c.world.State(m.Address, m.Port)
		return np.DBID == m.DBID && np.Status == topology.StatusUp && st.Running && !st.InRecovery,
			fmt.Sprintf("%s status %s; running %v in recovery %v", np, np.Status, st.Running, st.InRecovery)
	})
	w.waitAckedAfter(t0, "writes on the promoted mirror")
	w.check()
}
