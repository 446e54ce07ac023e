package simnet_test

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/gpagent/gpagent/agent"
	"github.com/gpagent/gpagent/internal/simnet"
)

var _ agent.Network = (*simnet.HostNet)(nil)

// waitFor polls cond until it holds, and fails with the last thing it saw
// when within has passed.
func waitFor(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, seen := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v still waiting for %s; last saw: %s", within, what, seen)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lockedBuffer collects the logs of goroutines that may outlive the test.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// testLogger is a logger shown only if the test fails.
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	buf := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			buf.mu.Lock()
			defer buf.mu.Unlock()
			t.Logf("log output:\n%s", buf.buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
