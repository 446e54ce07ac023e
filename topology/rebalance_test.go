package topology

import (
	"errors"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// rbCluster is the table cluster with content 0 failed over and since
// recovered and in sync (dbid 5 primary, dbid 2 its mirror: out of
// preferred roles), and content 1 failed over, its old primary dbid 3
// back up but not yet in sync.
func rbCluster(t decFatalfer) *Topology {
	t.Helper()
	topo := decUpdate(t, decFailedOver(t),
		SegmentUpdate{DBID: 2, Status: StatusUp, Mode: ModeSynced, Desc: "test setup: recovered"},
		SegmentUpdate{DBID: 5, Mode: ModeSynced, Desc: "test setup: in sync"})
	return decUpdate(t, topo,
		SegmentUpdate{DBID: 6, Role: RolePrimary, Mode: ModeNotSynced, Desc: "test setup: promoted"},
		SegmentUpdate{DBID: 3, Role: RoleMirror, Mode: ModeNotSynced, Desc: "test setup: demoted, recovered"})
}

func TestPlanRebalance_Cases(t *testing.T) {
	const limit = 1000
	cases := []struct {
		name string
		topo func(t decFatalfer) *Topology
		lags map[int]int64
		want []RebalanceItem
	}{
		{"in preferred roles: nothing to do", func(t decFatalfer) *Topology { return decUp(t, true) }, map[int]int64{4: 0, 5: 0, 6: 0}, nil},
		{"in sync, lag under the limit: switched; not in sync: refused", rbCluster, map[int]int64{2: 10, 3: 0}, []RebalanceItem{
			{Content: 0, Action: RebalanceSwitch},
			{Content: 1, Action: RebalanceRefused, Reason: "invalid topology: switchover: content 1 is not an in-sync pair (primary dbid 6 u/n, mirror dbid 3 u/n)"},
		}},
		{"lag at the limit is still switched", rbCluster, map[int]int64{2: limit}, []RebalanceItem{
			{Content: 0, Action: RebalanceSwitch},
			{Content: 1, Action: RebalanceRefused, Reason: "mirror dbid 3 replay lag unknown (not streaming) over the limit of 1000 bytes"},
		}},
		{"lag over the limit: refused before anything else", rbCluster, map[int]int64{2: limit + 1, 3: limit + 1}, []RebalanceItem{
			{Content: 0, Action: RebalanceRefused, Reason: "mirror dbid 2 replay lag 1001 over the limit of 1000 bytes"},
			{Content: 1, Action: RebalanceRefused, Reason: "mirror dbid 3 replay lag 1001 over the limit of 1000 bytes"},
		}},
		{"a switchover already running is reported started", func(t decFatalfer) *Topology {
			return decApply(t, rbCluster(t), Command{Type: CmdSwitchover, Content: 0})
		}, nil, []RebalanceItem{
			{Content: 0, Action: RebalanceRunning},
			{Content: 1, Action: RebalanceRefused, Reason: "mirror dbid 3 replay lag unknown (not streaming) over the limit of 1000 bytes"},
		}},
		{"a content without its mirror is not rebalanced", func(t decFatalfer) *Topology {
			topo := rbCluster(t).Clone()
			topo.Segments = slices.DeleteFunc(topo.Segments, func(s Segment) bool { return s.DBID == 2 })
			return topo
		}, map[int]int64{3: 0}, []RebalanceItem{
			{Content: 1, Action: RebalanceRefused, Reason: "invalid topology: switchover: content 1 is not an in-sync pair (primary dbid 6 u/n, mirror dbid 3 u/n)"},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			topo := c.topo(t)
			before := snapshot(topo)
			got := PlanRebalance(topo, c.lags, limit)
			if !slices.Equal(got, c.want) {
				t.Fatalf("PlanRebalance:\n got %+v\nwant %+v", got, c.want)
			}
			nsSameTopology(t, before, topo)
			// What the plan switches, Apply accepts.
			for _, it := range got {
				if it.Action == RebalanceSwitch {
					decApply(t, topo, Command{Type: CmdSwitchover, Content: it.Content})
				}
			}
		})
	}
}

// TestPlanRebalance_Property: for any topology and lags, a rebalance
// switches over only a content out of its preferred roles, that can swap
// losslessly (an in-sync pair, rule 4), with a known lag within the limit;
// every such content is switched, and the input is left alone.
func TestPlanRebalance_Property(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		topo := nsRandomTopology(rt)
		lags := map[int]int64{}
		for _, s := range topo.Segments {
			if rapid.Bool().Draw(rt, "streaming") {
				lags[s.DBID] = rapid.Int64Range(0, 2000).Draw(rt, "lag")
			}
		}
		limit := rapid.Int64Range(0, 2000).Draw(rt, "limit")
		before := snapshot(topo)
		plan := PlanRebalance(topo, lags, limit)
		nsSameTopology(rt, before, topo)
		planned := map[int]RebalanceItem{}
		for _, it := range plan {
			planned[it.Content] = it
		}
		for _, c := range topo.Contents() {
			p, okP := topo.Primary(c)
			m, okM := topo.Mirror(c)
			it, listed := planned[c]
			if !okP || !okM || p.PreferredRole == RolePrimary {
				if listed {
					rt.Fatalf("content %d listed %+v though not out of its preferred roles", c, it)
				}
				continue
			}
			lag, known := lags[m.DBID]
			_, running := topo.SwitchoverOf(c)
			can := CanSwitchover(topo, c) == nil
			switch {
			case !listed:
				rt.Fatalf("content %d out of its preferred roles not listed", c)
			case running:
				if it.Action != RebalanceRunning {
					rt.Fatalf("content %d with a switchover running: %+v", c, it)
				}
			case it.Action == RebalanceSwitch && (!can || !known || lag > limit):
				rt.Fatalf("content %d switched: can %v, lag %d known %v, limit %d", c, can, lag, known, limit)
			case it.Action != RebalanceSwitch && can && known && lag <= limit:
				rt.Fatalf("content %d left alone though it can swap: %+v", c, it)
			case it.Action == RebalanceRefused && it.Reason == "":
				rt.Fatalf("content %d refused without a reason", c)
			}
		}
	})
}

func TestCanSwitchover_IsErrInvalid(t *testing.T) {
	err := CanSwitchover(decUp(t, false), 0)
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("CanSwitchover of a pair not in sync: %v, want ErrInvalid", err)
	}
	if err := CanSwitchover(decUp(t, true), 0); err != nil {
		t.Fatalf("CanSwitchover of an in-sync pair: %v", err)
	}
}
