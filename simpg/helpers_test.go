package simpg_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gpagent/gpagent/agent"
	"github.com/gpagent/gpagent/simpg"
	"github.com/gpagent/gpagent/supervisor"
)

var _ agent.Driver = (*simpg.Host)(nil)

const cluster = "sim-cluster"

// pair is a primary on host h1 and its mirror on host h2.
type pair struct {
	w          *simpg.World
	h1, h2     *simpg.Host
	prim, mirr supervisor.Instance
}

func (p pair) up() supervisor.Upstream {
	return supervisor.Upstream{Address: p.prim.Address, Port: p.prim.Port}
}

func newWorld(t *testing.T, opts simpg.Options) *simpg.World {
	w := simpg.NewWorld(opts)
	t.Cleanup(w.Close)
	return w
}

// newPair builds a primary and a streaming mirror; sync makes the mirror
// the primary's synchronous standby.
func newPair(t *testing.T, w *simpg.World, sync bool) pair {
	t.Helper()
	p := pair{
		w: w, h1: w.Host("h1"), h2: w.Host("h2"),
		prim: supervisor.Instance{DBID: 2, Content: 0, Address: "127.0.0.1", Port: 6000, DataDir: "/data/p0"},
		mirr: supervisor.Instance{DBID: 3, Content: 0, Address: "127.0.0.2", Port: 7000, DataDir: "/data/m0"},
	}
	if err := p.h1.InitPrimary(ctxT(t, 5*time.Second), cluster, p.prim); err != nil {
		t.Fatalf("InitPrimary: %v", err)
	}
	if err := p.h2.CreateMirror(ctxT(t, 5*time.Second), cluster, p.mirr, p.up(), nil); err != nil {
		t.Fatalf("CreateMirror: %v", err)
	}
	waitStreaming(t, p)
	if sync {
		if err := p.h1.SetSyncStandby(ctxT(t, 5*time.Second), p.prim, []string{supervisor.AppName(p.mirr.DBID)}); err != nil {
			t.Fatalf("SetSyncStandby: %v", err)
		}
		waitFor(t, 5*time.Second, "mirror is the sync standby", func() (bool, string) {
			h, err := p.h1.Probe(context.Background(), p.prim)
			return err == nil && replica(h, p.mirr.DBID) == "streaming/sync", fmt.Sprintf("%+v %v", h, err)
		})
	}
	return p
}

// waitStreaming waits until the primary lists the mirror as streaming.
func waitStreaming(t *testing.T, p pair) {
	t.Helper()
	waitFor(t, 5*time.Second, "mirror streaming", func() (bool, string) {
		h, err := p.h1.Probe(context.Background(), p.prim)
		if err != nil {
			return false, err.Error()
		}
		r := replica(h, p.mirr.DBID)
		return r == "streaming/sync" || r == "streaming/async", fmt.Sprintf("%+v", h.Replication)
	})
}

// replica is the state/sync_state of dbid's row in h's
// pg_stat_replication, "" if there is none.
func replica(h supervisor.Health, dbid int) string {
	for _, r := range h.Replication {
		if r.ApplicationName == supervisor.AppName(dbid) {
			return r.State + "/" + r.SyncState
		}
	}
	return ""
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it holds or d passes, then fails with what
// cond last reported.
func waitFor(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	var seen string
	for {
		var ok bool
		if ok, seen = cond(); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %v; last seen: %s", what, d, seen)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// commitResult is what an asynchronous commit returned.
type commitResult struct {
	id  uint64
	err error
}

// commitAsync starts a commit on inst and returns where its result comes.
func commitAsync(ctx context.Context, w *simpg.World, inst supervisor.Instance) <-chan commitResult {
	ch := make(chan commitResult, 1)
	go func() {
		id, _, err := w.Commit(ctx, inst.Address, inst.Port)
		ch <- commitResult{id, err}
	}()
	return ch
}

// notWithin fails if ch delivers before d has passed: the commit must
// still be waiting.
func notWithin(t *testing.T, ch <-chan commitResult, d time.Duration, what string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s: commit returned (id %d, err %v), want it still waiting", what, r.id, r.err)
	case <-time.After(d):
	}
}

// within waits up to d for ch.
func within(t *testing.T, ch <-chan commitResult, d time.Duration, what string) commitResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(d):
		t.Fatalf("%s: commit did not return within %v", what, d)
		return commitResult{}
	}
}
