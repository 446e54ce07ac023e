package topology

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestSyncVouch_Property runs a primary's synchronous replication through
// random events and probes, and checks DESIGN rule 3's vouch against a
// model of which commits were acknowledged without a mirror: the vouch
// never names a mirror that has not flushed past every commit the primary
// acknowledged without waiting for it, whatever the sequence.
//
// The world: synchronous_standby_names is switched on for a mirror by the
// agent (which then reads the position, SyncSwitchedOn), switched off or
// to another standby (which releases every waiting commit, acknowledged
// without the mirror), or fenced (a standby that does not exist: nothing
// is acknowledged). The agent may restart and forget its vouch; sync may
// be on already when it starts. Probes show any rows at all.
func TestSyncVouch_Property(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		apps := []string{"gpagent_dbid_2", "gpagent_dbid_5"}
		const fenced = "gpagent_fenced"
		cur := uint64(rapid.IntRange(0, 1000).Draw(rt, "startLSN"))
		names := rapid.SampledFrom([]string{"", apps[0], apps[1], fenced}).Draw(rt, "startNames")
		// unprotected[app]: the highest position of a commit acknowledged
		// without waiting for app. Before the agent started, anything.
		unprotected := map[string]uint64{apps[0]: cur, apps[1]: cur}
		setNames := func(n string) {
			names = n
			if n == fenced {
				return
			}
			for _, app := range apps {
				if !SyncNamesInclude(n, app) {
					unprotected[app] = cur
				}
			}
		}
		var v SyncVouch
		for i := range rapid.IntRange(1, 80).Draw(rt, "steps") {
			// Probes are the most frequent event (the default case).
			switch rapid.IntRange(0, 9).Draw(rt, fmt.Sprintf("event%d", i)) {
			case 0: // commits
				cur += uint64(rapid.IntRange(1, 1000).Draw(rt, fmt.Sprintf("wal%d", i)))
				setNames(names)
			case 1: // the agent switches sync on, then reads the position
				app := rapid.SampledFrom(apps).Draw(rt, fmt.Sprintf("on%d", i))
				setNames(rapid.SampledFrom([]string{app, "FIRST 1 (" + app + ")"}).Draw(rt, fmt.Sprintf("form%d", i)))
				v = SyncSwitchedOn(app, cur)
			case 2: // off, or another standby
				setNames(rapid.SampledFrom([]string{"", "other"}).Draw(rt, fmt.Sprintf("off%d", i)))
			case 3:
				setNames(fenced)
			case 4: // the agent restarts
				v = SyncVouch{}
			default: // a probe
				app := rapid.SampledFrom(apps).Draw(rt, fmt.Sprintf("mirror%d", i))
				var rows []ReplicaRow
				for j := range rapid.IntRange(0, 3).Draw(rt, fmt.Sprintf("rows%d", i)) {
					rows = append(rows, ReplicaRow{
						App:       rapid.SampledFrom(apps).Draw(rt, fmt.Sprintf("app%d.%d", i, j)),
						State:     rapid.SampledFrom([]string{"streaming", "catchup", "startup"}).Draw(rt, fmt.Sprintf("state%d.%d", i, j)),
						SyncState: rapid.SampledFrom([]string{"sync", "async", "potential"}).Draw(rt, fmt.Sprintf("sync%d.%d", i, j)),
						Flush:     uint64(rapid.IntRange(0, int(cur)).Draw(rt, fmt.Sprintf("flush%d.%d", i, j))),
					})
				}
				h := ReplicationHealth{CurrentLSN: cur, SyncStandbyNames: names, Replicas: rows}
				rowsBefore := slices.Clone(rows)
				prev := v
				next, vouched := v.Step(h, app)
				if v != prev || !slices.Equal(rows, rowsBefore) {
					rt.Fatalf("step %d changed its receiver or input", i)
				}
				v = next
				if !vouched {
					continue
				}
				if !SyncNamesInclude(names, app) {
					rt.Fatalf("step %d: vouched %s with synchronous_standby_names %q", i, app, names)
				}
				ok := slices.ContainsFunc(rows, func(r ReplicaRow) bool {
					return r.App == app && r.State == "streaming" && r.SyncState == "sync" && r.Flush >= unprotected[app]
				})
				if !ok {
					rt.Fatalf("step %d: vouched %s, which has not flushed past %d, a commit acknowledged without it (rows %+v)", i, app, unprotected[app], rows)
				}
			}
		}
	})
}

// TestStallWatch_Property runs a mirror's replication through random
// probes and checks the stall watch both ways: it never reports a stall
// while the mirror's flush advances (or is caught up) within the timeout,
// and it reports one once the mirror has not streamed for longer than the
// timeout. Stepping never changes its receiver or input.
func TestStallWatch_Property(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		const app, other = "gpagent_dbid_2", "gpagent_dbid_5"
		timeout := time.Duration(rapid.IntRange(1, 5000).Draw(rt, "timeoutMs")) * time.Millisecond
		now := t0
		cur := uint64(rapid.IntRange(0, 1000).Draw(rt, "startLSN"))
		var w StallWatch
		// The model, since the watch of app started (started is zero when
		// it is not watching app): the highest flush a streaming row
		// showed, when the flush last went above it or caught up, and when
		// a streaming row of app was last seen at all.
		var started, advanced, streamed time.Time
		var maxFlush uint64
		for i := range rapid.IntRange(1, 80).Draw(rt, "steps") {
			now = now.Add(time.Duration(rapid.IntRange(0, int(2*timeout/time.Millisecond)).Draw(rt, fmt.Sprintf("advanceMs%d", i))) * time.Millisecond)
			if rapid.Bool().Draw(rt, fmt.Sprintf("writes%d", i)) {
				cur += uint64(rapid.IntRange(1, 1000).Draw(rt, fmt.Sprintf("wal%d", i)))
			}
			if rapid.IntRange(0, 9).Draw(rt, fmt.Sprintf("reset%d", i)) == 0 {
				// The mirror was recorded down: the agent drops the watch.
				w, started = StallWatch{}, time.Time{}
				continue
			}
			watched := app
			if rapid.IntRange(0, 9).Draw(rt, fmt.Sprintf("other%d", i)) == 0 {
				watched = other // the topology names a new mirror
			}
			var rows []ReplicaRow
			for j := range rapid.IntRange(0, 2).Draw(rt, fmt.Sprintf("rows%d", i)) {
				rows = append(rows, ReplicaRow{
					App:       rapid.SampledFrom([]string{app, other}).Draw(rt, fmt.Sprintf("app%d.%d", i, j)),
					State:     rapid.SampledFrom([]string{"streaming", "catchup"}).Draw(rt, fmt.Sprintf("state%d.%d", i, j)),
					SyncState: "sync",
					Flush:     cur,
				})
				if !rapid.Bool().Draw(rt, fmt.Sprintf("caughtUp%d.%d", i, j)) {
					rows[j].Flush = uint64(rapid.IntRange(0, int(cur)).Draw(rt, fmt.Sprintf("flush%d.%d", i, j)))
				}
			}
			h := ReplicationHealth{CurrentLSN: cur, Replicas: rows}
			rowsBefore := slices.Clone(rows)
			prev := w
			next, stalled := w.Step(h, watched, now, timeout)
			if w != prev || !slices.Equal(rows, rowsBefore) {
				rt.Fatalf("step %d changed its receiver or input", i)
			}
			w = next
			if watched != app {
				started = time.Time{}
				continue
			}
			if started.IsZero() {
				started, advanced, streamed, maxFlush = now, now, now, 0
			}
			for _, r := range rows {
				if r.App != app || r.State != "streaming" {
					continue
				}
				streamed = now
				if r.Flush > maxFlush || r.Flush >= cur {
					advanced = now
				}
				maxFlush = max(maxFlush, r.Flush)
			}
			if stalled && now.Sub(advanced) <= timeout {
				rt.Fatalf("step %d: stall reported %s after the flush last advanced (timeout %s)", i, now.Sub(advanced), timeout)
			}
			if !stalled && now.Sub(streamed) > timeout {
				rt.Fatalf("step %d: no stall reported though the mirror has not streamed for %s (timeout %s)", i, now.Sub(streamed), timeout)
			}
		}
	})
}
