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

// TestSimConcurrentPairsKeepEveryAcknowledgedCommit runs probes, commits,
// mirror crashes and restarts and sync standby switches on several pairs
// at once, each operation locking only the instances it touches, and
// checks what a user of the model relies on: nothing deadlocks, every
// commit acknowledged while the mirror was the sync standby is in the
// mirror's durable WAL, and each mirror streams again once the faults
// stop.
func TestSimConcurrentPairsKeepEveryAcknowledgedCommit(t *testing.T) {
	w := newWorld(t, simpg.Options{})
	ctx := ctxT(t, 60*time.Second)
	const pairs, rounds = 6, 60
	var ps []pair
	for i := range pairs {
		p := pair{
			w: w, h1: w.Host(fmt.Sprintf("a%d", i)), h2: w.Host(fmt.Sprintf("b%d", i)),
			prim: supervisor.Instance{DBID: 2*i + 2, Content: i, Address: "127.0.0.1", Port: 6000 + i, DataDir: fmt.Sprintf("/data/p%d", i)},
			mirr: supervisor.Instance{DBID: 2*i + 3, Content: i, Address: "127.0.0.2", Port: 7000 + i, DataDir: fmt.Sprintf("/data/m%d", i)},
		}
		if err := p.h1.InitPrimary(ctx, cluster, p.prim); err != nil {
			t.Fatal(err)
		}
		if err := p.h2.CreateMirror(ctx, cluster, p.mirr, p.up(), nil); err != nil {
			t.Fatal(err)
		}
		if err := p.h1.SetSyncStandby(ctx, p.prim, []string{supervisor.AppName(p.mirr.DBID)}); err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for _, p := range ps {
		wg.Add(4)
		go func() { // probes of both
			defer wg.Done()
			for range rounds * 4 {
				for _, in := range []struct {
					h    *simpg.Host
					inst supervisor.Instance
				}{{p.h1, p.prim}, {p.h2, p.mirr}} {
					_, _ = in.h.Probe(ctx, in.inst)
				}
			}
		}()
		go func() { // commits, each bounded: the mirror may be down
			defer wg.Done()
			for range rounds {
				cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
				_, _, err := w.Commit(cctx, p.prim.Address, p.prim.Port)
				cancel()
				if err != nil && !errors.Is(err, simpg.ErrCommitIndeterminate) {
					errs <- fmt.Errorf("commit on %s: %w", p.prim, err)
					return
				}
			}
		}()
		go func() { // the mirror crashes and is started again
			defer wg.Done()
			for range rounds / 3 {
				w.Crash(p.mirr.Address, p.mirr.Port)
				if err := p.h2.Start(ctx, p.mirr); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() { // sync names set again and again (same value)
			defer wg.Done()
			for range rounds / 3 {
				if err := p.h1.SetSyncStandby(ctx, p.prim, []string{supervisor.AppName(p.mirr.DBID)}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(45 * time.Second):
		t.Fatal("operations did not finish within 45s: a lock is held for ever")
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	acks := w.Acks(0)
	if len(acks) == 0 {
		t.Fatal("no commit was acknowledged")
	}
	for _, a := range acks {
		p := ps[(a.DBID-2)/2]
		if !w.Has(p.mirr.Address, p.mirr.Port, a.Commit) {
			t.Errorf("commit %d acknowledged by %s is not durable on its sync mirror", a.Commit, a.Instance)
		}
	}
	for _, p := range ps {
		waitStreaming(t, p)
	}
}

// TestSimKilledHostStartsNothing: a start that waits for another
// operation on its instance (here a stop of a hung server) while the
// host dies fails, and leaves nothing running on the dead host. Before
// the driver checked the host with the instance's lock held, the start
// went through once the stop ended.
func TestSimKilledHostStartsNothing(t *testing.T) {
	for i := range 20 {
		ctx := ctxT(t, 10*time.Second)
		w := newWorld(t, simpg.Options{})
		h := w.Host("h")
		inst := supervisor.Instance{DBID: 2, Address: "127.0.0.1", Port: 6000, DataDir: "/data/p"}
		if err := h.InitPrimary(ctx, cluster, inst); err != nil {
			t.Fatal(err)
		}
		w.Hang(inst.Address, inst.Port)
		stopped := make(chan error, 1)
		go func() { stopped <- h.Stop(ctx, inst) }() // waits on the hung server
		waitFor(t, 5*time.Second, "stop waiting", func() (bool, string) {
			s := w.State(inst.Address, inst.Port)
			return s.Running && s.Hung, fmt.Sprintf("%+v", s)
		})
		going := make(chan struct{})
		started := make(chan error, 1)
		go func() {
			close(going)
			started <- h.Start(ctx, inst) // waits for the stop
		}()
		<-going
		w.KillHost("h")
		<-stopped
		err := <-started
		if s := w.State(inst.Address, inst.Port); s.Running {
			t.Fatalf("run %d: instance running on a dead host (Start returned %v)", i, err)
		}
	}
}
