package agent

import (
	"fmt"
	"testing"
	"time"

	"github.com/gpagent/gpagent/topology"
)

// TestSimHangDuringSyncSwitch: a primary whose configuration reload hangs
// (one stuck backend) while its agent switches synchronous replication
// off for its lost mirror must not freeze the rest of its host: the other
// primary there goes on being probed and reported, its lease renewed, its
// writes acknowledged, and it is not failed over. Once the backend comes
// unstuck, the switch goes through.
func TestSimHangDuringSyncSwitch(t *testing.T) {
	c := newSimCluster(t, 3, "")
	c.initCluster(2)
	host, p1, m1 := c.primaryOffLeader()
	s := c.state()
	var p2 topology.Segment
	for _, seg := range s.Segments {
		if seg.Content >= 0 && seg.Role == topology.RolePrimary && seg.Hostname == host.name && seg.DBID != p1.DBID {
			p2 = seg
		}
	}
	if p2.DBID == 0 {
		t.Fatalf("no second primary on %s: %v", host.name, s.Segments)
	}
	w := c.startWriter(p2.Content)
	w.waitAckedAfter(time.Now(), "writes before the fault")

	fences := c.agent(host).counts.fences.Load()
	c.world.StickConfig(p1.Address, p1.Port)
	c.world.Crash(m1.Address, m1.Port)
	c.waitUntil("the lost mirror recorded down", func() (bool, string) {
		_, nm := simPair(t, c.state(), p1.Content)
		return nm.Status == topology.StatusDown, nm.String()
	})
	// The switch is stuck now. For three leases (the leader fails a host
	// over after one lease plus a margin without its reports), the rest
	// of the host must carry on.
	window := 3 * c.agent(host).cfg.Lease
	t0 := time.Now()
	for time.Since(t0) < window {
		np2, _ := simPair(t, c.state(), p2.Content)
		if np2.DBID != p2.DBID || np2.Status != topology.StatusUp {
			t.Fatalf("content %d failed over while another instance on %s had a stuck backend: %s", p2.Content, host.name, np2)
		}
		if n := c.agent(host).counts.fences.Load(); n != fences {
			t.Fatalf("%s fenced its primaries (%d fence events) while one backend was stuck", host.name, n-fences)
		}
		<-time.After(50 * time.Millisecond)
	}
	w.waitAckedAfter(t0.Add(window), "writes on the other primary of the host after the window")
	if st := c.world.State(p1.Address, p1.Port); len(st.SyncStandbyNames) == 0 {
		t.Fatalf("synchronous_standby_names of %s cleared while its reload was stuck: %+v", p1, st)
	}

	c.world.UnstickConfig(p1.Address, p1.Port)
	c.waitUntil("synchronous replication switched off once the backend came unstuck", func() (bool, string) {
		st := c.world.State(p1.Address, p1.Port)
		return len(st.SyncStandbyNames) == 0, fmt.Sprint(st.SyncStandbyNames)
	})
	w.check()
}
