package simpg_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gpagent/gpagent/simpg"
	"github.com/gpagent/gpagent/supervisor"
)

// TestSimSyncCommitWaitsForStandby: with the sync standby stopped a commit
// waits, however long; it completes once the standby is back and has it.
func TestSimSyncCommitWaitsForStandby(t *testing.T) {
	w := newWorld(t, simpg.Options{BatchDelay: time.Millisecond})
	p := newPair(t, w, true)

	id, _, err := w.Commit(ctxT(t, 5*time.Second), p.prim.Address, p.prim.Port)
	if err != nil || !w.Has(p.mirr.Address, p.mirr.Port, id) {
		t.Fatalf("commit with the standby up: id %d err %v, on mirror %v", id, err, w.Has(p.mirr.Address, p.mirr.Port, id))
	}

	if err := p.h2.Stop(ctxT(t, 5*time.Second), p.mirr); err != nil {
		t.Fatal(err)
	}
	res := commitAsync(context.Background(), w, p.prim)
	notWithin(t, res, 300*time.Millisecond, "standby stopped")
	if err := p.h2.Start(ctxT(t, 5*time.Second), p.mirr); err != nil {
		t.Fatal(err)
	}
	r := within(t, res, 5*time.Second, "standby back")
	if r.err != nil {
		t.Fatalf("commit after the standby came back: %v", r.err)
	}
	if !w.Has(p.mirr.Address, p.mirr.Port, r.id) {
		t.Fatalf("acknowledged commit %d is not on the sync standby", r.id)
	}
}

// TestSimFenceBlocksCommits: a fenced primary takes no new write, and a
// commit that was waiting when the fence came is never acknowledged, even
// once its standby is back; cancelled, it stays in the primary's WAL.
func TestSimFenceBlocksCommits(t *testing.T) {
	w := newWorld(t, simpg.Options{})
	p := newPair(t, w, true)

	if err := p.h2.Stop(ctxT(t, 5*time.Second), p.mirr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waiting := commitAsync(ctx, w, p.prim)
	waitFor(t, 5*time.Second, "commit record written", func() (bool, string) {
		return len(w.Commits(p.prim.Address, p.prim.Port)) == 1, fmt.Sprint(w.Commits(p.prim.Address, p.prim.Port))
	})
	if err := p.h1.Fence(ctxT(t, 5*time.Second), p.prim); err != nil {
		t.Fatalf("Fence: %v", err)
	}
	if _, _, err := w.Commit(ctxT(t, time.Second), p.prim.Address, p.prim.Port); !errors.Is(err, simpg.ErrReadOnly) {
		t.Fatalf("commit on a fenced primary: %v, want ErrReadOnly", err)
	}
	h, err := p.h1.Probe(ctxT(t, time.Second), p.prim)
	if err != nil || h.SyncStandbyNames != supervisor.FencedStandby {
		t.Fatalf("fenced primary's synchronous_standby_names %q (err %v)", h.SyncStandbyNames, err)
	}

	if err := p.h2.Start(ctxT(t, 5*time.Second), p.mirr); err != nil {
		t.Fatal(err)
	}
	waitStreaming(t, p)
	notWithin(t, waiting, 300*time.Millisecond, "fenced, standby streaming")
	cancel()
	r := within(t, waiting, 5*time.Second, "cancelled")
	if !errors.Is(r.err, simpg.ErrCommitIndeterminate) {
		t.Fatalf("cancelled commit: %v, want ErrCommitIndeterminate", r.err)
	}
	ids := w.Commits(p.prim.Address, p.prim.Port)
	if len(ids) != 1 {
		t.Fatalf("primary holds commits %v, want the cancelled one", ids)
	}
	// The hole: the standby got it too, as PostgreSQL would send it.
	waitFor(t, 5*time.Second, "the cancelled commit reaches the standby", func() (bool, string) {
		return w.Has(p.mirr.Address, p.mirr.Port, ids[0]), fmt.Sprint(w.Commits(p.mirr.Address, p.mirr.Port))
	})

	if err := p.h1.Unfence(ctxT(t, 5*time.Second), p.prim); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.Commit(ctxT(t, 100*time.Millisecond), p.prim.Address, p.prim.Port); err == nil {
		t.Fatal("commit after Unfence acknowledged while synchronous_standby_names still names the fence")
	}
	if err := p.h1.SetSyncStandby(ctxT(t, 5*time.Second), p.prim, []string{supervisor.AppName(p.mirr.DBID)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.Commit(ctxT(t, 5*time.Second), p.prim.Address, p.prim.Port); err != nil {
		t.Fatalf("commit after Unfence and sync set again: %v", err)
	}
}

// TestSimPromotionKeepsAcknowledged: writers commit on a synced pair, the
// primary crashes under them, the mirror is promoted: it holds every
// acknowledged commit.
func TestSimPromotionKeepsAcknowledged(t *testing.T) {
	w := newWorld(t, simpg.Options{BatchDelay: 200 * time.Microsecond})
	p := newPair(t, w, true)

	var mu sync.Mutex
	var acked []uint64
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 8 {
		wg.Go(func() {
			for {
				id, _, err := w.Commit(ctx, p.prim.Address, p.prim.Port)
				if err != nil {
					return
				}
				mu.Lock()
				acked = append(acked, id)
				mu.Unlock()
			}
		})
	}
	waitFor(t, 5*time.Second, "100 commits", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 100, fmt.Sprint(len(acked))
	})
	w.Crash(p.prim.Address, p.prim.Port)
	wg.Wait()
	select {
	case dbid := <-p.h1.Exits():
		if dbid != p.prim.DBID {
			t.Fatalf("exit of dbid %d, want %d", dbid, p.prim.DBID)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the crash was not reported on Exits")
	}
	if err := p.h2.Promote(ctxT(t, 5*time.Second), p.mirr); err != nil {
		t.Fatalf("Promote: %v", err)
	}
	if h, err := p.h2.Probe(ctxT(t, time.Second), p.mirr); err != nil || h.InRecovery || h.Receiver != nil {
		t.Fatalf("promoted mirror: %+v %v", h, err)
	}
	for _, id := range acked {
		if !w.Has(p.mirr.Address, p.mirr.Port, id) {
			t.Fatalf("acknowledged commit %d lost by the promotion (%d acknowledged)", id, len(acked))
		}
	}
	if _, _, err := w.Commit(ctxT(t, time.Second), p.mirr.Address, p.mirr.Port); err != nil {
		t.Fatalf("commit on the promoted mirror: %v", err)
	}
}

// diverge leaves the pair with a commit on the primary that the mirror
// never got: the mirror is stopped, the commit's wait cancelled, the
// primary crashed. It returns that commit's id.
func diverge(t *testing.T, p pair) uint64 {
	t.Helper()
	w := p.w
	if err := p.h2.Stop(ctxT(t, 5*time.Second), p.mirr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, _, err := w.Commit(ctx, p.prim.Address, p.prim.Port); !errors.Is(err, simpg.ErrCommitIndeterminate) {
		t.Fatalf("commit without its sync standby: %v, want ErrCommitIndeterminate", err)
	}
	ids := w.Commits(p.prim.Address, p.prim.Port)
	if len(ids) == 0 {
		t.Fatal("the cancelled commit is not in the primary's WAL")
	}
	local := ids[len(ids)-1]
	if w.Has(p.mirr.Address, p.mirr.Port, local) {
		t.Fatal("the stopped mirror has the cancelled commit")
	}
	w.Crash(p.prim.Address, p.prim.Port)
	return local
}

// TestSimRewindDiscardsUnacknowledgedTail: an old primary with a commit
// its promoted mirror never got is rewound: the commit is gone, and it
// streams from the new primary.
func TestSimRewindDiscardsUnacknowledgedTail(t *testing.T) {
	w := newWorld(t, simpg.Options{})
	p := newPair(t, w, true)
	local := diverge(t, p)

	if err := p.h2.Start(ctxT(t, 5*time.Second), p.mirr); err != nil {
		t.Fatal(err)
	}
	if err := p.h2.Promote(ctxT(t, 5*time.Second), p.mirr); err != nil {
		t.Fatal(err)
	}
	newUp := supervisor.Upstream{Address: p.mirr.Address, Port: p.mirr.Port}

	// Started as it is, the old primary never streams: it diverged.
	if err := p.h1.Rejoin(ctxT(t, 5*time.Second), p.prim, newUp); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // give a wrong connection the chance to happen
	if h, err := p.h2.Probe(ctxT(t, time.Second), p.mirr); err != nil || len(h.Replication) != 0 {
		t.Fatalf("a diverged standby streams: %+v %v", h.Replication, err)
	}

	if err := p.h1.Rewind(ctxT(t, 5*time.Second), cluster, p.prim, newUp, nil); err != nil {
		t.Fatalf("Rewind: %v", err)
	}
	if w.Has(p.prim.Address, p.prim.Port, local) {
		t.Fatalf("rewound old primary still holds commit %d, which its new primary lacks", local)
	}
	id, _, err := w.Commit(ctxT(t, 5*time.Second), p.mirr.Address, p.mirr.Port)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "rewound instance streams", func() (bool, string) {
		return w.Has(p.prim.Address, p.prim.Port, id), fmt.Sprintf("%+v", w.State(p.prim.Address, p.prim.Port))
	})
}

// TestSimCrashRestartKeepsLocalCommits: a crashed primary restarted in
// place keeps the commit it never acknowledged (crash recovery replays
// it), and its mirror receives it once back.
func TestSimCrashRestartKeepsLocalCommits(t *testing.T) {
	w := newWorld(t, simpg.Options{})
	p := newPair(t, w, true)
	local := diverge(t, p)

	if err := p.h1.Start(ctxT(t, 5*time.Second), p.prim); err != nil {
		t.Fatal(err)
	}
	if !w.Has(p.prim.Address, p.prim.Port, local) {
		t.Fatalf("restarted primary lost its local commit %d", local)
	}
	if err := p.h2.Start(ctxT(t, 5*time.Second), p.mirr); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "mirror gets the local commit", func() (bool, string) {
		return w.Has(p.mirr.Address, p.mirr.Port, local), fmt.Sprint(w.Commits(p.mirr.Address, p.mirr.Port))
	})
}

// TestSimSwitchover: a clean stop sends everything to the mirror, the
// shutdown checkpoint last; the old primary rejoins without a rewind.
func TestSimSwitchover(t *testing.T) {
	w := newWorld(t, simpg.Options{BatchDelay: time.Millisecond})
	p := newPair(t, w, false)
	for range 20 {
		if _, _, err := w.Commit(ctxT(t, time.Second), p.prim.Address, p.prim.Port); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.h1.Stop(ctxT(t, 5*time.Second), p.prim); err != nil {
		t.Fatal(err)
	}
	lsn, clean, err := p.h1.CheckpointLSN(ctxT(t, time.Second), p.prim)
	if err != nil || !clean {
		t.Fatalf("CheckpointLSN after a clean stop: %X clean=%v err=%v", lsn, clean, err)
	}
	// As in PostgreSQL, the checkpoint location is where its record
	// starts, so a mirror that got the record is strictly past it: the
	// switchover rule promotes on LSN > StoppedLSN.
	if st := w.State(p.mirr.Address, p.mirr.Port); st.FlushLSN <= lsn {
		t.Fatalf("mirror flushed %X, not past the shutdown checkpoint %X", st.FlushLSN, lsn)
	}
	select {
	case dbid := <-p.h1.Exits():
		t.Fatalf("a clean stop reported as an exit of dbid %d", dbid)
	default:
	}
	if err := p.h2.Promote(ctxT(t, 5*time.Second), p.mirr); err != nil {
		t.Fatal(err)
	}
	if err := p.h1.Rejoin(ctxT(t, 5*time.Second), p.prim, supervisor.Upstream{Address: p.mirr.Address, Port: p.mirr.Port}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "old primary streams from the new one", func() (bool, string) {
		h, err := p.h1.Probe(context.Background(), p.prim)
		return err == nil && h.InRecovery && h.Receiver != nil && h.Receiver.SenderPort == p.mirr.Port, fmt.Sprintf("%+v %v", h, err)
	})
}

// TestSimHangAndStall: a hung primary blocks probes and commits until
// resumed; a stalled link keeps its row "streaming" while its flush stops.
func TestSimHangAndStall(t *testing.T) {
	w := newWorld(t, simpg.Options{ProbeTimeout: 100 * time.Millisecond})
	p := newPair(t, w, false)

	w.Hang(p.prim.Address, p.prim.Port)
	if _, err := p.h1.Probe(context.Background(), p.prim); err == nil {
		t.Fatal("probe of a hung primary succeeded")
	}
	res := commitAsync(context.Background(), w, p.prim)
	notWithin(t, res, 200*time.Millisecond, "hung")
	w.Resume(p.prim.Address, p.prim.Port)
	if r := within(t, res, 5*time.Second, "resumed"); r.err != nil {
		t.Fatal(r.err)
	}

	w.StallLink(p.mirr.Address, p.mirr.Port)
	before := w.State(p.mirr.Address, p.mirr.Port).FlushLSN
	if _, _, err := w.Commit(ctxT(t, time.Second), p.prim.Address, p.prim.Port); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // give a stalled link the chance to move
	h, err := p.h1.Probe(context.Background(), p.prim)
	if err != nil || replica(h, p.mirr.DBID) != "streaming/async" || h.Replication[0].FlushLSN != before || h.CurrentLSN <= before {
		t.Fatalf("stalled link: %+v (flush before %X) %v", h, before, err)
	}
	w.ResumeLink(p.mirr.Address, p.mirr.Port)
	waitFor(t, 5*time.Second, "link moves again", func() (bool, string) {
		st := w.State(p.mirr.Address, p.mirr.Port)
		return st.FlushLSN == w.State(p.prim.Address, p.prim.Port).FlushLSN, fmt.Sprintf("%+v", st)
	})
}

// TestSimAgentRestartAndKillHost: a new driver of a host sees the running
// postmasters, adopts them and hears of their death; a killed host's
// instances are down and its driver refuses everything.
func TestSimAgentRestartAndKillHost(t *testing.T) {
	w := newWorld(t, simpg.Options{})
	p := newPair(t, w, false)

	h1b := w.Host("h1")
	if err := p.h1.Start(ctxT(t, time.Second), p.prim); !errors.Is(err, simpg.ErrHostDown) {
		t.Fatalf("the replaced driver: %v, want ErrHostDown", err)
	}
	pid := h1b.PID(p.prim)
	if pid == 0 {
		t.Fatal("restarted driver sees no running primary")
	}
	if got, ok, err := h1b.Adopt(p.prim); got != pid || !ok || err != nil {
		t.Fatalf("Adopt: %d %v %v", got, ok, err)
	}
	w.Crash(p.prim.Address, p.prim.Port)
	select {
	case dbid := <-h1b.Exits():
		if dbid != p.prim.DBID {
			t.Fatalf("exit of %d", dbid)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("adopted postmaster's crash not reported")
	}

	w.KillHost("h2")
	if st := w.State(p.mirr.Address, p.mirr.Port); st.Running {
		t.Fatal("instance of a killed host still runs")
	}
	if _, err := p.h2.Probe(context.Background(), p.mirr); !errors.Is(err, simpg.ErrHostDown) {
		t.Fatalf("probe through a killed host: %v", err)
	}
	h2b := w.Host("h2")
	if !h2b.Ours(cluster, p.mirr) || h2b.PID(p.mirr) != 0 {
		t.Fatal("rebooted host: want its data dir, no postmaster")
	}
}

// TestSimFailNext: an injected failure hits the next call only.
func TestSimFailNext(t *testing.T) {
	w := newWorld(t, simpg.Options{})
	p := newPair(t, w, false)
	if err := p.h2.Stop(ctxT(t, time.Second), p.mirr); err != nil {
		t.Fatal(err)
	}
	w.FailNext(p.mirr.Address, p.mirr.Port, simpg.ToolStart)
	if err := p.h2.Start(ctxT(t, time.Second), p.mirr); !errors.Is(err, simpg.ErrInjected) {
		t.Fatalf("Start: %v, want ErrInjected", err)
	}
	if err := p.h2.Start(ctxT(t, time.Second), p.mirr); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	w.FailNext("", 0, simpg.ToolPromote)
	if err := p.h2.Promote(ctxT(t, time.Second), p.mirr); !errors.Is(err, simpg.ErrInjected) {
		t.Fatalf("Promote: %v, want ErrInjected", err)
	}

	m2 := supervisor.Instance{DBID: 4, Content: 0, Address: "127.0.0.3", Port: 7000, DataDir: "/data/m0b"}
	h3 := w.Host("h3")
	w.FailNext(m2.Address, m2.Port, simpg.ToolCopy)
	if err := h3.CreateMirror(ctxT(t, time.Second), cluster, m2, p.up(), nil); !errors.Is(err, simpg.ErrInjected) {
		t.Fatalf("CreateMirror: %v, want ErrInjected", err)
	}
	if h3.Ours(cluster, m2) {
		t.Fatal("a failed copy left a finished mirror")
	}
	var last [2]int64
	if err := h3.CreateMirror(ctxT(t, time.Second), cluster, m2, p.up(), func(d, tot int64) { last = [2]int64{d, tot} }); err != nil {
		t.Fatal(err)
	}
	if last[0] != last[1] || last[1] <= 0 {
		t.Fatalf("last progress %v, want done == total > 0", last)
	}
	if err := h3.Preflight("other-cluster", m2); err == nil {
		t.Fatal("Preflight of another cluster's data dir passed")
	}
}
