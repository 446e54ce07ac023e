package simpg

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/gpagent/gpagent/supervisor"
)

// TestSimIdleCostsNothing: a world of 500 primary/mirror pairs runs one
// goroutine per standby, and none of them turns while nothing changes.
func TestSimIdleCostsNothing(t *testing.T) {
	w := NewWorld(Options{})
	t.Cleanup(w.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := runtime.NumGoroutine()
	const pairs = 500
	for i := range pairs {
		h := w.Host(fmt.Sprintf("h%d", i))
		p := supervisor.Instance{DBID: 2*i + 1, Content: i, Address: "127.0.1.1", Port: 10000 + i, DataDir: fmt.Sprintf("/d/p%d", i)}
		m := supervisor.Instance{DBID: 2*i + 2, Content: i, Address: "127.0.1.2", Port: 10000 + i, DataDir: fmt.Sprintf("/d/m%d", i)}
		if err := h.InitPrimary(ctx, "c", p); err != nil {
			t.Fatal(err)
		}
		if err := h.CreateMirror(ctx, "c", m, supervisor.Upstream{Address: p.Address, Port: p.Port}, nil); err != nil {
			t.Fatal(err)
		}
		if _, _, err := w.Commit(ctx, p.Address, p.Port); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		streaming := 0
		w.insts.Range(func(_, v any) bool {
			in := v.(*instance)
			ls := w.lock(in)
			if up := w.lookup(in.connected); up != nil && in.caughtUp && in.flushN == len(up.wal) {
				streaming++
			}
			ls.unlock()
			return true
		})
		if streaming == pairs {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d mirrors caught up", streaming, pairs)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := runtime.NumGoroutine() - base; n > pairs+10 {
		t.Errorf("%d goroutines for %d standbys", n, pairs)
	}
	before := w.wakeups.Load()
	time.Sleep(200 * time.Millisecond) // the window in which nothing may turn
	if d := w.wakeups.Load() - before; d != 0 {
		t.Errorf("%d walreceiver turns in an idle world", d)
	}
}
