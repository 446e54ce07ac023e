package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
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
	now, err := bootNanos()
	if err != nil {
		t.Fatal(err)
	}
	if bootID() == "" {
		t.Fatal("no boot id in /proc/sys/kernel/random/boot_id")
	}

	t.Run("first start: valid", func(t *testing.T) {
		if newLease(t.TempDir(), nil).expired(d) {
			t.Fatal("a first start's lease is expired")
		}
	})
	t.Run("renewed 2 s before the restart: 1 s left", func(t *testing.T) {
		l := newLease(record(t, fmt.Sprintf("%s %d\n", bootID(), now-int64(2*time.Second))), nil)
		if l.expired(d) {
			t.Fatal("expired at once")
		}
		if !l.expired(d - 2*time.Second + 100*time.Millisecond) {
			t.Fatalf("the lease restarted from zero: renewed %s ago", time.Since(l.renewed))
		}
	})
	t.Run("renewed 5 s before the restart: expired", func(t *testing.T) {
		if !newLease(record(t, fmt.Sprintf("%s %d\n", bootID(), now-int64(5*time.Second))), nil).expired(d) {
			t.Fatal("a lease run out before the restart is valid after it")
		}
	})
	t.Run("another boot: expired", func(t *testing.T) {
		if !newLease(record(t, fmt.Sprintf("00000000-0000-0000-0000-000000000000 %d\n", now)), nil).expired(d) {
			t.Fatal("a lease recorded in an earlier boot is valid")
		}
	})
	t.Run("unreadable record: expired", func(t *testing.T) {
		if !newLease(record(t, "garbage"), nil).expired(d) {
			t.Fatal("a torn lease record counts as valid")
		}
	})
	t.Run("renew records it for the next run", func(t *testing.T) {
		dir := record(t, fmt.Sprintf("%s %d\n", bootID(), now-int64(5*time.Second)))
		l := newLease(dir, nil)
		l.renew(time.Now().Add(-time.Second))
		again := newLease(dir, nil)
		if again.expired(d) || !again.expired(time.Second-100*time.Millisecond) {
			t.Fatalf("resumed lease renewed %s ago, want about 1 s", time.Since(again.renewed))
		}
	})
}
