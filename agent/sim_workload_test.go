package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/gpagent/gpagent/topology"
)

// simWriter commits on one content without pause, as a client with a
// libpq multi-host string and target_session_attrs=read-write does: it
// tries the content's instances in turn and commits on the first that
// takes writes. It remembers every acknowledged commit, to check that none
// is lost.
type simWriter struct {
	c       *simCluster
	content int
	insts   []topology.Segment

	mu     sync.Mutex
	acked  map[uint64]string // commit id -> the instance that acknowledged it
	lastAt time.Time         // when the last commit was acknowledged
	// split: a commit acknowledged by an instance after another had
	// taken over (the writer's view of two writable primaries).
	split   []string
	current string
	retired map[string]bool

	cancel context.CancelFunc
	done   chan struct{}
}

func (c *simCluster) startWriter(content int) *simWriter {
	c.t.Helper()
	var insts []topology.Segment
	for _, s := range c.state().Segments {
		if s.Content == content {
			insts = append(insts, s)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &simWriter{c: c, content: content, insts: insts, acked: map[uint64]string{}, retired: map[string]bool{}, cancel: cancel, done: make(chan struct{})}
	go w.run(ctx)
	c.t.Cleanup(w.stop)
	return w
}

func (w *simWriter) run(ctx context.Context) {
	defer close(w.done)
	for ctx.Err() == nil {
		committed := false
		for _, s := range w.insts {
			cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			id, _, err := w.c.world.Commit(cctx, s.Address, s.Port)
			cancel()
			if err == nil {
				w.ack(id, addrOf(s))
				committed = true
				break
			}
		}
		if !committed {
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
}

func (w *simWriter) ack(id uint64, addr string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.acked[id] = addr
	w.lastAt = time.Now()
	if addr != w.current {
		if w.retired[addr] {
			w.split = append(w.split, fmt.Sprintf("commit %d acknowledged by %s after it had been replaced", id, addr))
		}
		if w.current != "" {
			w.retired[w.current] = true
		}
		w.current = addr
	}
}

func (w *simWriter) stop() {
	w.cancel()
	<-w.done
}

// waitAckedAfter waits until a commit is acknowledged after t0.
func (w *simWriter) waitAckedAfter(t0 time.Time, what string) {
	w.c.t.Helper()
	w.c.waitUntil(what, func() (bool, string) {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.lastAt.After(t0), fmt.Sprintf("last commit at %s", w.lastAt.Format(time.TimeOnly))
	})
}

// check stops the writer and checks that it saw one writable primary at
// a time and that every acknowledged commit is on the content's acting
// primary, as the topology names it now.
func (w *simWriter) check() {
	w.c.t.Helper()
	w.stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.split {
		w.c.t.Errorf("content %d: two writable primaries: %s", w.content, s)
	}
	if len(w.acked) == 0 {
		w.c.t.Errorf("content %d: no commit was acknowledged", w.content)
		return
	}
	p, _ := simPair(w.c.t, w.c.state(), w.content)
	// One pass over the primary's WAL: World.Has per commit scans the
	// WAL each time, quadratic in the commits (minutes for the 100 000
	// or more a writer makes in some seconds).
	held := map[uint64]bool{}
	for _, id := range w.c.world.Commits(p.Address, p.Port) {
		held[id] = true
	}
	lost := 0
	for id := range w.acked {
		if !held[id] {
			lost++
		}
	}
	if lost > 0 {
		w.c.t.Errorf("content %d: %d of %d acknowledged commits are not on the acting primary %s", w.content, lost, len(w.acked), p)
	}
}
