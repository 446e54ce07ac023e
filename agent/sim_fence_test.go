package agent

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestSimFenceBeforePromotion cuts a host off: its primary must be
// fenced strictly before the leader commits the promotion of its mirror
// (safety rule 5), on the one wall clock the simulated instances and the
// history share. The promotion's history row is stamped when the leader
// builds the command, before Raft commits it, so a fence earlier than the
// row is earlier than the commit.
//
// The executor's round is long here (a probe interval of 700 ms, plus a
// failed report) and the leader's margin short (200 ms): a fence checked
// once per round lands after the promotion; the fence watch, on its own
// timer at the lease's expiry, lands before.
func TestSimFenceBeforePromotion(t *testing.T) {
	c := newSimCluster(t, 3, "", func(cfg *Config) {
		cfg.ProbeInterval = 700 * time.Millisecond
		cfg.LeaseMargin = 200 * time.Millisecond
	})
	c.initCluster(1)
	host, p, m := c.primaryOffLeader()
	w := c.startWriter(p.Content)
	w.waitAckedAfter(time.Now(), "writes before the cut")
	c.isolate(host)
	c.waitPromoted(p, m)

	ctx, cancel := context.WithTimeout(context.Background(), simWait)
	defer cancel()
	hist, err := c.client().History(ctx)
	if err != nil {
		t.Fatalf("history: %v", err)
	}
	var promoted time.Time
	for _, h := range hist {
		if h.DBID == m.DBID && strings.Contains(h.Desc, "mirror promoted") {
			promoted = h.Time
		}
	}
	if promoted.IsZero() {
		t.Fatalf("no promotion of dbid %d in the history: %v", m.DBID, hist)
	}
	st := c.world.State(p.Address, p.Port)
	switch {
	case st.FencedAt.IsZero() && st.Running:
		t.Fatalf("the cut-off primary %s was promoted away from (at %s) but is not fenced: %+v", p, promoted.Format(time.RFC3339Nano), st)
	case !st.FencedAt.IsZero() && !st.FencedAt.Before(promoted):
		t.Fatalf("the cut-off primary %s was fenced at %s, %s after its mirror's promotion was decided (%s)",
			p, st.FencedAt.Format(time.RFC3339Nano), st.FencedAt.Sub(promoted), promoted.Format(time.RFC3339Nano))
	}
	t.Logf("fenced %s before the promotion", promoted.Sub(st.FencedAt))
	c.heal()
	c.waitUntil("the cut-off agent counted a fence event", func() (bool, string) {
		n := c.agent(host).counts.fences.Load()
		return n >= 1, fmt.Sprint(n)
	})
	c.waitUntil("the old primary fenced or stopped after the heal", func() (bool, string) {
		st := c.world.State(p.Address, p.Port)
		return !st.Running || st.ReadOnly, fmt.Sprintf("%+v", st)
	})
	w.check()
}
