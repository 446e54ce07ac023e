package topology

import (
	"testing"
	"time"
)

const mirrorApp = "gpagent_dbid_2"

func streamingRow(flush uint64, sync string) ReplicaRow {
	return ReplicaRow{App: mirrorApp, State: "streaming", SyncState: sync, Flush: flush}
}

func health(current uint64, names string, rows ...ReplicaRow) ReplicationHealth {
	return ReplicationHealth{CurrentLSN: current, SyncStandbyNames: names, Replicas: rows}
}

func TestSyncNamesInclude_Forms(t *testing.T) {
	for _, tc := range []struct {
		names string
		want  bool
	}{
		{"", false},
		{mirrorApp, true},
		{`"` + mirrorApp + `"`, true},
		{"FIRST 1 (" + mirrorApp + ", other)", true},
		{"ANY 1 (other)", false},
		{mirrorApp + "0", false},
		{"gpagent_fenced", false},
	} {
		t.Run(tc.names, func(t *testing.T) {
			if got := SyncNamesInclude(tc.names, mirrorApp); got != tc.want {
				t.Fatalf("SyncNamesInclude(%q) = %v, want %v", tc.names, got, tc.want)
			}
		})
	}
}

func TestReplicationHealth_CaughtUp(t *testing.T) {
	const maxLag = 100
	for _, tc := range []struct {
		name string
		h    ReplicationHealth
		want bool
	}{
		{"no row", health(1000, ""), false},
		{"streaming, within maxLag", health(1000, "", streamingRow(900, "async")), true},
		{"streaming, too far behind", health(1000, "", streamingRow(899, "async")), false},
		{"catching up, not streaming", health(1000, "", ReplicaRow{App: mirrorApp, State: "catchup", Flush: 1000}), false},
		{"another mirror's row", health(1000, "", ReplicaRow{App: "x", State: "streaming", Flush: 1000}), false},
		{"flushed ahead of the position read", health(1000, "", streamingRow(1200, "async")), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.h.CaughtUp(mirrorApp, maxLag); got != tc.want {
				t.Fatalf("CaughtUp = %v, want %v", got, tc.want)
			}
		})
	}
	if Lag(10, 20) != 0 || Lag(20, 10) != 10 {
		t.Fatal("Lag is wrong")
	}
}

func TestSyncVouch_Step(t *testing.T) {
	on := SyncSwitchedOn(mirrorApp, 500)
	for _, tc := range []struct {
		name      string
		v         SyncVouch
		h         ReplicationHealth
		want      bool
		wantAfter SyncVouch
	}{
		{"switched on, flushed past the switch position", on, health(800, mirrorApp, streamingRow(500, "sync")), true, on},
		{"switched on, not yet past it", on, health(800, mirrorApp, streamingRow(499, "sync")), false, on},
		{"past it but the server says potential", on, health(800, mirrorApp, streamingRow(600, "potential")), false, on},
		{"past it but catching up", on, health(800, mirrorApp, ReplicaRow{App: mirrorApp, State: "catchup", SyncState: "sync", Flush: 600}), false, on},
		{"no row", on, health(800, mirrorApp), false, on},
		{"sync off: watch dropped", on, health(800, "", streamingRow(800, "sync")), false, SyncVouch{}},
		{"sync fenced: watch dropped", on, health(800, "gpagent_fenced", streamingRow(800, "sync")), false, SyncVouch{}},
		{"on without our switch (agent restarted): from the current position", SyncVouch{}, health(800, mirrorApp, streamingRow(800, "sync")), false, SyncSwitchedOn(mirrorApp, 800)},
		{"watching another mirror: from the current position", SyncSwitchedOn("other", 10), health(800, mirrorApp, streamingRow(800, "sync")), false, SyncSwitchedOn(mirrorApp, 800)},
		{"a stale walsender beside the live one", on, health(800, mirrorApp, ReplicaRow{App: mirrorApp, State: "startup"}, streamingRow(700, "sync")), true, on},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.v
			next, got := tc.v.Step(tc.h, mirrorApp)
			if got != tc.want || next != tc.wantAfter {
				t.Fatalf("Step = (%+v, %v), want (%+v, %v)", next, got, tc.wantAfter, tc.want)
			}
			if tc.v != before {
				t.Fatal("Step changed its receiver")
			}
		})
	}
}

func TestStallWatch_Step(t *testing.T) {
	const timeout = 10 * time.Second
	watching := func(flush uint64, progress time.Duration) StallWatch {
		return StallWatch{app: mirrorApp, flush: flush, progress: ts(progress)}
	}
	for _, tc := range []struct {
		name      string
		w         StallWatch
		h         ReplicationHealth
		now       time.Duration
		want      bool
		wantAfter StallWatch
	}{
		{"first look: starts now", StallWatch{}, health(800, mirrorApp), 0, false, watching(0, 0)},
		{"first look at another mirror: starts afresh", StallWatch{app: "other", progress: ts(-time.Hour)}, health(800, mirrorApp), 0, false, watching(0, 0)},
		{"flush moved", watching(500, 0), health(800, mirrorApp, streamingRow(600, "sync")), 20 * time.Second, false, watching(600, 20*time.Second)},
		{"caught up without moving (idle primary)", watching(800, 0), health(800, mirrorApp, streamingRow(800, "sync")), 20 * time.Second, false, watching(800, 20*time.Second)},
		{"no progress, within the timeout", watching(500, 0), health(800, mirrorApp, streamingRow(500, "sync")), timeout, false, watching(500, 0)},
		{"no progress past the timeout", watching(500, 0), health(800, mirrorApp, streamingRow(500, "sync")), timeout + 1, true, watching(500, 0)},
		{"row gone past the timeout", watching(500, 0), health(800, mirrorApp), timeout + 1, true, watching(500, 0)},
		{"moving but not streaming", watching(500, 0), health(800, mirrorApp, ReplicaRow{App: mirrorApp, State: "catchup", Flush: 700}), timeout + 1, true, watching(500, 0)},
		{"another mirror moves", watching(500, 0), health(800, mirrorApp, ReplicaRow{App: "x", State: "streaming", Flush: 800}), timeout + 1, true, watching(500, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.w
			next, got := tc.w.Step(tc.h, mirrorApp, ts(tc.now), timeout)
			if got != tc.want || next != tc.wantAfter {
				t.Fatalf("Step = (%+v, %v), want (%+v, %v)", next, got, tc.wantAfter, tc.want)
			}
			if tc.w != before {
				t.Fatal("Step changed its receiver")
			}
		})
	}
}
