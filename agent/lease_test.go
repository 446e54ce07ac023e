package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gpagent/gpagent/watchdog"
)

// A restarted agent resumes the lease its previous run held: it must not
// grant itself a fresh one (during a partition that would unfence its
// primaries after the leader has promoted their mirrors).
func TestLease_ResumedAcrossRestarts(t *testing.T) {
	const d = 3 * time.Second
	record := func(t *testing.T, content string) string {
		t.Helper()
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, leaseFile), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	now, err := watchdog.BootNanos()
	if err != nil {
		t.Fatal(err)
	}
	if watchdog.BootID() == "" {
		t.Fatal("no boot id in /proc/sys/kernel/random/boot_id")
	}

	// No record: a first start, or a data dir that was wiped (issue 12,
	// hole 2). Either way no lease until the leader is heard from: a
	// wiped agent may have been cut off for longer than its lease.
	t.Run("no record: no lease", func(t *testing.T) {
		if !newLease(t.TempDir(), time.Now(), nil).expired(time.Now(), d) {
			t.Fatal("a missing lease file granted a lease")
		}
	})
	t.Run("renewed 2 s before the restart: 1 s left", func(t *testing.T) {
		l := newLease(record(t, fmt.Sprintf("%s %d\n", watchdog.BootID(), now-int64(2*time.Second))), time.Now(), nil)
		if l.expired(time.Now(), d) {
			t.Fatal("expired at once")
		}
		if !l.expired(time.Now(), d-2*time.Second+100*time.Millisecond) {
			t.Fatalf("the lease restarted from zero: renewed %s ago", time.Since(l.renewed))
		}
	})
	t.Run("renewed 5 s before the restart: expired", func(t *testing.T) {
		if !newLease(record(t, fmt.Sprintf("%s %d\n", watchdog.BootID(), now-int64(5*time.Second))), time.Now(), nil).expired(time.Now(), d) {
			t.Fatal("a lease run out before the restart is valid after it")
		}
	})
	t.Run("another boot: expired", func(t *testing.T) {
		if !newLease(record(t, fmt.Sprintf("00000000-0000-0000-0000-000000000000 %d\n", now)), time.Now(), nil).expired(time.Now(), d) {
			t.Fatal("a lease recorded in an earlier boot is valid")
		}
	})
	t.Run("unreadable record: expired", func(t *testing.T) {
		if !newLease(record(t, "garbage"), time.Now(), nil).expired(time.Now(), d) {
			t.Fatal("a torn lease record counts as valid")
		}
	})
	t.Run("renew records it for the next run", func(t *testing.T) {
		dir := record(t, fmt.Sprintf("%s %d\n", watchdog.BootID(), now-int64(5*time.Second)))
		l := newLease(dir, time.Now(), nil)
		l.renew(time.Now().Add(-time.Second), time.Now())
		again := newLease(dir, time.Now(), nil)
		if again.expired(time.Now(), d) || !again.expired(time.Now(), time.Second-100*time.Millisecond) {
			t.Fatalf("resumed lease renewed %s ago, want about 1 s", time.Since(again.renewed))
		}
	})
}

// The lease runs on the agent's clock (Agent.clock), handed in as now: a
// clock that jumps ahead expires it, and a renewal stamped on that clock
// extends it.
func TestLease_OnTheAgentClock(t *testing.T) {
	const d = 3 * time.Second
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		renewed time.Duration // after start; <0: not renewed
		now     time.Duration
		want    bool
	}{
		{"no record, never renewed: no lease", -1, 0, true},
		{"renewed, within the lease", 2 * time.Second, d + 2*time.Second, false},
		{"renewed, run out since", 2 * time.Second, d + 2*time.Second + time.Nanosecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLease(t.TempDir(), start, nil)
			if tc.renewed >= 0 {
				l.renew(start.Add(tc.renewed), start.Add(tc.renewed))
			}
			if got := l.expired(start.Add(tc.now), d); got != tc.want {
				t.Fatalf("expired = %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("an older renewal does not shorten it", func(t *testing.T) {
		l := newLease(t.TempDir(), start, nil)
		l.renew(start.Add(2*time.Second), start.Add(2*time.Second))
		l.renew(start.Add(time.Second), start.Add(3*time.Second))
		if l.expired(start.Add(d+2*time.Second), d) {
			t.Fatal("a late-arriving older renewal moved the lease back")
		}
	})
}

// An acknowledgement renews the lease only once the topology the agent
// acts on has reached the leader's version at the acknowledgement (a
// fence must not be lifted on a stale topology), and then from when the
// report was sent, not when it was applied.
func TestLease_AckedRenewsOnceTheLeadersVersionIsApplied(t *testing.T) {
	const d = 3 * time.Second
	start := time.Now()
	l := &lease{renewed: start.Add(-time.Hour)}
	sent := start.Add(-2 * time.Second)
	l.acked(sent, 7)
	l.applyAcked(6, start)
	if !l.expired(start, d) {
		t.Fatal("renewed by an acknowledgement of version 7 while acting on version 6")
	}
	l.applyAcked(7, start)
	if l.expired(start, d) {
		t.Fatal("not renewed once version 7 is applied")
	}
	if !l.expired(sent.Add(d+1), d) {
		t.Fatal("the renewal runs from when it was applied, not from when the report was sent")
	}
}

// A report waits for the leader's answer longer than a probe (a late
// answer still renews from its send time) but well within the lease, so
// an agent reports more than once a lease even when every answer is
// late.
func TestReportTimeout(t *testing.T) {
	for _, tc := range []struct{ probe, lease, want time.Duration }{
		{500 * time.Millisecond, 3 * time.Second, 1500 * time.Millisecond},
		{2 * time.Second, 3 * time.Second, 2 * time.Second},
	} {
		if got := reportTimeout(tc.probe, tc.lease); got != tc.want {
			t.Errorf("reportTimeout(%s, %s) = %s, want %s", tc.probe, tc.lease, got, tc.want)
		}
	}
}

// Renewals closer together than the record gap write the lease record
// once: the record then trails the lease by at most the gap, never leads
// it (a restarted agent, and the watchdog, see a lease no longer than the
// one held), and a renewal past the gap is written.
func TestLease_RecordWrittenAtMostOncePerGap(t *testing.T) {
	const d = 3 * time.Second
	gap := recordGap(d)
	if gap <= 0 || gap > watchdogGraceOf(d)/4 {
		t.Fatalf("record gap %s for a %s lease: want positive and well inside the watchdog's grace %s", gap, d, watchdogGraceOf(d))
	}
	dir := t.TempDir()
	l := newLease(dir, time.Now(), nil)
	l.recordGap = gap
	recorded := func() int64 {
		t.Helper()
		st, ok := watchdog.ReadStamp(dir)
		if !ok {
			t.Fatal("no lease record")
		}
		return st.Renewed
	}
	start := time.Now()
	l.renew(start, start)
	first := recorded()
	l.renew(start.Add(gap/2), start.Add(gap/2))
	if got := recorded(); got != first {
		t.Fatalf("a renewal %s after the last write rewrote the record", gap/2)
	}
	if l.expired(start.Add(d+gap/4), d) {
		t.Fatal("a renewal not written to the record did not renew the lease")
	}
	l.renew(start.Add(gap+time.Millisecond), start.Add(gap+time.Millisecond))
	if got := recorded(); got <= first {
		t.Fatalf("a renewal past the gap was not written: record %d, first %d", got, first)
	}
}

// watchdogGraceOf is the watchdog's grace for a lease of d, as the
// agent's config derives it.
func watchdogGraceOf(d time.Duration) time.Duration {
	c := Config{Lease: d, LeaseMargin: d / 3}
	return c.WatchdogGrace()
}
