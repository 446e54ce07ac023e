package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/supervisor"
	"github.com/gpagent/gpagent/topology"
)

// probeDriver answers PID and Probe from fields a test sets; the other
// Driver methods are not called by executor.probe (the embedded nil
// interface would panic if they were).
type probeDriver struct {
	Driver
	mu     sync.Mutex
	pid    int
	health supervisor.Health
	err    error
	// kills counts Kill calls; killErr is what Kill returns (on success
	// the postmaster is gone: pid 0).
	kills   int
	killErr error
}

func (d *probeDriver) Kill(context.Context, supervisor.Instance) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.kills++
	if d.killErr == nil {
		d.pid = 0
	}
	return d.killErr
}

func (d *probeDriver) killCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.kills
}

func (d *probeDriver) PID(supervisor.Instance) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pid
}

func (d *probeDriver) Adopt(supervisor.Instance) (int, bool, error) { return 0, false, nil }

func (d *probeDriver) Probe(context.Context, supervisor.Instance) (supervisor.Health, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.health, d.err
}

func (d *probeDriver) set(h supervisor.Health, err error) {
	d.mu.Lock()
	d.health, d.err = h, err
	d.mu.Unlock()
}

// probeFixture is an executor on host h1 holding content 0's primary
// (dbid 2), whose mirror (dbid 3) is on another host and recorded up.
func probeFixture(t *testing.T) (*executor, *probeDriver, *jumpClock, *topology.Topology) {
	t.Helper()
	drv := &probeDriver{pid: 100}
	clock := newJumpClock()
	a := &Agent{
		cfg:   &Config{Name: "h1", ProbeRetries: 3, ReplicationStallTimeout: 10 * time.Second},
		log:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		drv:   drv,
		clock: clock,
	}
	topo := &topology.Topology{ConfigVersion: 5, Segments: []topology.Segment{
		{DBID: 2, Content: 0, Role: topology.RolePrimary, PreferredRole: topology.RolePrimary, Mode: topology.ModeSynced, Status: topology.StatusUp, Hostname: "h1"},
		{DBID: 3, Content: 0, Role: topology.RoleMirror, PreferredRole: topology.RoleMirror, Mode: topology.ModeSynced, Status: topology.StatusUp, Hostname: "h2"},
	}}
	return newExecutor(a), drv, clock, topo
}

func primaryHealth(current, flush uint64) supervisor.Health {
	app := supervisor.AppName(3)
	return supervisor.Health{CurrentLSN: current, SyncStandbyNames: app, Replication: []supervisor.Replica{
		{ApplicationName: app, State: "streaming", SyncState: "sync", FlushLSN: flush},
	}}
}

// A running primary that stops answering is reported failed only on its
// probe_retries-th failed probe in a row, and probed again at once
// meanwhile.
func TestProbe_HungAfterRetries(t *testing.T) {
	e, drv, _, topo := probeFixture(t)
	p := topo.Segments[0]
	drv.set(supervisor.Health{}, errors.New("timeout"))
	for i := 1; i <= 3; i++ {
		r := e.probe(context.Background(), topo, p)
		if want := i == 3; r.Failed != want {
			t.Fatalf("probe %d failed in a row: Failed = %v, want %v (%s)", i, r.Failed, want, r.Error)
		}
		if want := i < 3; e.retrying() != want {
			t.Fatalf("after %d failed probes: retrying = %v, want %v", i, e.retrying(), want)
		}
		// Killed with the report that says failed, not before: a primary
		// reported failed must be unable to write (issue 12).
		want := 0
		if i == 3 {
			want = 1
		}
		if drv.killCount() != want {
			t.Fatalf("after %d failed probes: %d kills, want %d", i, drv.killCount(), want)
		}
	}
	if r := e.probe(context.Background(), topo, p); !r.Failed || r.PID != 0 {
		t.Fatalf("the killed primary is reported %+v, want failed and no pid", r)
	}
	drv.mu.Lock()
	drv.pid = 100 // started again
	drv.mu.Unlock()
	drv.set(primaryHealth(100, 100), nil)
	if r := e.probe(context.Background(), topo, p); r.Failed || !r.Up {
		t.Fatalf("an answering primary is reported %+v", r)
	}
	drv.set(supervisor.Health{}, errors.New("timeout"))
	if r := e.probe(context.Background(), topo, p); r.Failed {
		t.Fatal("the failure count survived an answered probe")
	}
}

// A hung primary that cannot be killed is not reported failed: no
// failover beats two writable primaries. A hung mirror is not killed (it
// cannot write).
func TestProbe_HungKillFails(t *testing.T) {
	e, drv, _, topo := probeFixture(t)
	p, m := topo.Segments[0], topo.Segments[1]
	m.Hostname = "h1"
	drv.set(supervisor.Health{}, errors.New("timeout"))
	drv.killErr = errors.New("still exiting")
	var r api.InstanceReport
	for range 3 {
		r = e.probe(context.Background(), topo, p)
	}
	if r.Failed || drv.killCount() != 1 {
		t.Fatalf("a hung primary whose kill failed: %+v after %d kills; want not failed, 1 kill", r, drv.killCount())
	}
	for range 3 {
		r = e.probe(context.Background(), topo, m)
	}
	if !r.Failed || drv.killCount() != 1 {
		t.Fatalf("a hung mirror: %+v after %d kills; want failed, not killed", r, drv.killCount())
	}
}

// The stall watch runs on the agent's clock: a mirror whose flush does
// not move is reported stalled once that clock has passed
// replication_stall_timeout, not before, and no longer once it moves.
func TestProbe_StallOnTheAgentClock(t *testing.T) {
	e, drv, clock, topo := probeFixture(t)
	p, m := topo.Segments[0], topo.Segments[1]
	stalled := func() bool {
		return slices.Contains(e.probe(context.Background(), topo, p).StalledMirrors, m.DBID)
	}
	drv.set(primaryHealth(200, 100), nil)
	if stalled() {
		t.Fatal("stalled at the first look")
	}
	clock.advance(10 * time.Second)
	if stalled() {
		t.Fatal("stalled at exactly the timeout")
	}
	clock.advance(time.Millisecond)
	if !stalled() {
		t.Fatal("no stall reported after the timeout on the agent's clock")
	}
	drv.set(primaryHealth(200, 150), nil)
	if stalled() {
		t.Fatal("still stalled after the flush moved")
	}
}

// The vouch: once sync is switched on at a position, the mirror is
// reported in sync only once it has flushed past it.
func TestProbe_VouchAfterSwitchOn(t *testing.T) {
	e, drv, _, topo := probeFixture(t)
	p, m := topo.Segments[0], topo.Segments[1]
	st := e.state(p.DBID)
	e.mu.Lock()
	st.sync = topology.SyncSwitchedOn(supervisor.AppName(m.DBID), 1000)
	e.mu.Unlock()
	synced := func() bool {
		return slices.Contains(e.probe(context.Background(), topo, p).SyncedMirrors, m.DBID)
	}
	drv.set(primaryHealth(1200, 999), nil)
	if synced() {
		t.Fatal("vouched a mirror short of the switch-on position")
	}
	drv.set(primaryHealth(1200, 1000), nil)
	if !synced() {
		t.Fatal("not vouched once flushed past the switch-on position")
	}
	drv.set(supervisor.Health{CurrentLSN: 1300}, nil) // sync switched off
	if synced() {
		t.Fatal("vouched with sync off")
	}
	drv.set(primaryHealth(1400, 1300), nil) // on again, unseen: from 1400
	if synced() {
		t.Fatal("vouched at the first sight of sync on")
	}
	if synced() {
		t.Fatal("vouched short of the position where sync was seen on again")
	}
	drv.set(primaryHealth(1500, 1400), nil)
	if !synced() {
		t.Fatal("not vouched once flushed past where sync was seen on again")
	}
}
