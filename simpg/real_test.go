package simpg_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gpagent/gpagent/agent"
	"github.com/gpagent/gpagent/simpg"
	"github.com/gpagent/gpagent/supervisor"
	"github.com/jackc/pgx/v5"
)

// target is one side of TestAgreesWithPostgres: a primary and a mirror
// driven through agent.Driver, and a client of them.
type target struct {
	drv        agent.Driver
	prim, mirr supervisor.Instance
	// prepare runs once the primary exists (the real one makes a table).
	prepare func(ctx context.Context) error
	// commit commits one row on the primary and returns its key.
	commit func(ctx context.Context, key int64) error
	// crash kills the primary's postmaster (kill -9).
	crash func() error
	// missing returns the keys the mirror does not hold.
	missing func(ctx context.Context, keys []int64) ([]int64, error)
}

// outcome is what the scenario observed: it must be the same for real
// PostgreSQL and simpg.
type outcome struct {
	WaitedWhileMirrorStopped bool // the commit had not returned by the deadline
	ReturnedOnceMirrorBack   bool
	Acknowledged             int
	MissingAfterPromotion    []int64
}

// TestAgreesWithPostgres runs one scenario on real PostgreSQL (through
// the supervisor) and on simpg: a commit on a primary whose
// synchronous_standby_names names its stopped mirror does not return
// before a deadline, and returns once the mirror is back; after the
// primary is killed and the mirror promoted, the mirror holds every
// acknowledged row. Both must observe the same.
func TestAgreesWithPostgres(t *testing.T) {
	real := realTarget(t)
	sim := simTarget(t)
	got := map[string]outcome{}
	for name, tg := range map[string]target{"postgres": real, "simpg": sim} {
		got[name] = runScenario(t, name, tg)
		t.Logf("%s: %+v", name, got[name])
	}
	want := outcome{WaitedWhileMirrorStopped: true, ReturnedOnceMirrorBack: true, Acknowledged: 3}
	for name, o := range got {
		if fmt.Sprint(o) != fmt.Sprint(want) {
			t.Errorf("%s: %+v, want %+v", name, o, want)
		}
	}
	if fmt.Sprint(got["postgres"]) != fmt.Sprint(got["simpg"]) {
		t.Errorf("postgres and simpg disagree: %+v vs %+v", got["postgres"], got["simpg"])
	}
}

func runScenario(t *testing.T, name string, tg target) (o outcome) {
	t.Helper()
	ctx := ctxT(t, 60*time.Second)
	d := tg.drv
	up := supervisor.Upstream{Address: tg.prim.Address, Port: tg.prim.Port}
	if err := d.InitPrimary(ctx, cluster, tg.prim); err != nil {
		t.Fatalf("%s: InitPrimary: %v", name, err)
	}
	if err := tg.prepare(ctx); err != nil {
		t.Fatalf("%s: prepare: %v", name, err)
	}
	if err := d.CreateMirror(ctx, cluster, tg.mirr, up, nil); err != nil {
		t.Fatalf("%s: CreateMirror: %v", name, err)
	}
	if err := d.SetSyncStandby(ctx, tg.prim, []string{supervisor.AppName(tg.mirr.DBID)}); err != nil {
		t.Fatalf("%s: SetSyncStandby: %v", name, err)
	}
	waitFor(t, 20*time.Second, name+": mirror is the sync standby", func() (bool, string) {
		h, err := d.Probe(context.Background(), tg.prim)
		return err == nil && replica(h, tg.mirr.DBID) == "streaming/sync", fmt.Sprintf("%+v %v", h.Replication, err)
	})

	var acked []int64
	if err := tg.commit(ctx, 1); err != nil {
		t.Fatalf("%s: commit 1: %v", name, err)
	}
	acked = append(acked, 1)

	if err := d.Stop(ctx, tg.mirr); err != nil {
		t.Fatalf("%s: stop mirror: %v", name, err)
	}
	res := make(chan error, 1)
	go func() { res <- tg.commit(ctx, 2) }()
	select {
	case err := <-res:
		t.Logf("%s: commit 2 returned with the mirror stopped: %v", name, err)
		return o
	case <-time.After(2 * time.Second):
		o.WaitedWhileMirrorStopped = true
	}
	if err := d.Start(ctx, tg.mirr); err != nil {
		t.Fatalf("%s: start mirror: %v", name, err)
	}
	select {
	case err := <-res:
		if err != nil {
			t.Fatalf("%s: commit 2: %v", name, err)
		}
		o.ReturnedOnceMirrorBack = true
		acked = append(acked, 2)
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: commit 2 still waiting 20 s after the mirror came back", name)
	}
	if err := tg.commit(ctx, 3); err != nil {
		t.Fatalf("%s: commit 3: %v", name, err)
	}
	acked = append(acked, 3)
	o.Acknowledged = len(acked)

	if err := tg.crash(); err != nil {
		t.Fatalf("%s: crash primary: %v", name, err)
	}
	if err := d.Promote(ctx, tg.mirr); err != nil {
		t.Fatalf("%s: promote: %v", name, err)
	}
	missing, err := tg.missing(ctx, acked)
	if err != nil {
		t.Fatalf("%s: read the promoted mirror: %v", name, err)
	}
	o.MissingAfterPromotion = missing
	return o
}

func simTarget(t *testing.T) target {
	w := newWorld(t, simpg.Options{BatchDelay: time.Millisecond})
	h := w.Host("h1")
	tg := target{
		drv:     h,
		prim:    supervisor.Instance{DBID: 2, Address: "127.0.0.1", Port: 6000, DataDir: "/data/p0"},
		mirr:    supervisor.Instance{DBID: 3, Address: "127.0.0.1", Port: 7000, DataDir: "/data/m0"},
		prepare: func(context.Context) error { return nil },
	}
	var mu sync.Mutex
	ids := map[int64]uint64{} // the scenario's keys -> simpg's commit ids
	tg.commit = func(ctx context.Context, key int64) error {
		id, _, err := w.Commit(ctx, tg.prim.Address, tg.prim.Port)
		if err == nil {
			mu.Lock()
			ids[key] = id
			mu.Unlock()
		}
		return err
	}
	tg.crash = func() error {
		w.Crash(tg.prim.Address, tg.prim.Port)
		return nil
	}
	tg.missing = func(ctx context.Context, keys []int64) ([]int64, error) {
		mu.Lock()
		defer mu.Unlock()
		var out []int64
		for _, k := range keys {
			id, ok := ids[k]
			if !ok || !w.Has(tg.mirr.Address, tg.mirr.Port, id) {
				out = append(out, k)
			}
		}
		return out, nil
	}
	return tg
}

func realTarget(t *testing.T) target {
	cfg := supervisor.Config{
		SuperUser: "gpadmin", SuperPassword: "sim pw'x",
		ReplUser: "replicator", ReplPassword: "r'epl pw",
		WalKeepSize: "64MB", ProbeTimeout: 5 * time.Second,
		Logger: slog.New(slog.DiscardHandler),
	}
	s, err := supervisor.New(cfg)
	if err != nil {
		t.Fatalf("supervisor.New (real PostgreSQL 15 is needed): %v", err)
	}
	t.Cleanup(s.Close)
	root, err := os.MkdirTemp("", "gpagent-simpg-*")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	inst := func(dbid int) supervisor.Instance {
		return supervisor.Instance{DBID: dbid, Address: "127.0.0.1", Port: freePort(t),
			DataDir: filepath.Join(root, "dbid"+strconv.Itoa(dbid))}
	}
	tg := target{drv: s, prim: inst(2), mirr: inst(3)}
	for tg.mirr.Port == tg.prim.Port {
		tg.mirr = inst(3)
	}
	for _, in := range []supervisor.Instance{tg.prim, tg.mirr} {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := s.Stop(ctx, in); err != nil {
				t.Errorf("cleanup: stop %s: %v", in, err)
			}
		})
	}
	exec := func(ctx context.Context, in supervisor.Instance, sql string, args ...any) error {
		c, err := pgx.Connect(ctx, s.ConnString(in))
		if err != nil {
			return err
		}
		defer c.Close(context.WithoutCancel(ctx))
		_, err = c.Exec(ctx, sql, args...)
		return err
	}
	tg.prepare = func(ctx context.Context) error { return exec(ctx, tg.prim, `CREATE TABLE t (k bigint PRIMARY KEY)`) }
	tg.commit = func(ctx context.Context, key int64) error {
		return exec(ctx, tg.prim, `INSERT INTO t VALUES ($1)`, key)
	}
	tg.crash = func() error {
		pid := s.PID(tg.prim)
		if pid == 0 {
			return errors.New("primary not running")
		}
		return syscall.Kill(pid, syscall.SIGKILL)
	}
	tg.missing = func(ctx context.Context, keys []int64) ([]int64, error) {
		c, err := pgx.Connect(ctx, s.ConnString(tg.mirr))
		if err != nil {
			return nil, err
		}
		defer c.Close(context.WithoutCancel(ctx))
		var out []int64
		err = c.QueryRow(ctx, `SELECT coalesce(array_agg(k ORDER BY k), '{}') FROM unnest($1::bigint[]) k WHERE k NOT IN (SELECT k FROM t)`, keys).Scan(&out)
		if len(out) == 0 {
			out = nil
		}
		return out, err
	}
	return tg
}

// freePort returns a port below the ephemeral range that is free now (a
// port from ":0" could be taken as a client's source port before
// PostgreSQL binds it).
func freePort(t *testing.T) int {
	t.Helper()
	for range 1000 {
		p := 20000 + rand.IntN(10000)
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		ln.Close()
		return p
	}
	t.Fatal("no free port found")
	return 0
}

// stopOutcome is what a clean stop of a primary with a streaming mirror
// looks like through agent.Driver: it must be the same for real
// PostgreSQL and simpg, since the agent's switchover rests on it.
type stopOutcome struct {
	Clean bool // pg_controldata: "shut down"
	// MirrorPastCheckpoint: the mirror's replay position is past the
	// checkpoint location (topology.Decide promotes on to.LSN >
	// from.StoppedLSN).
	MirrorPastCheckpoint bool
	// CheckpointLastRecord: the mirror stopped within one record of the
	// checkpoint location: the shutdown checkpoint is the last record it
	// received, and the location is the record's start, not its end.
	CheckpointLastRecord bool
}

// TestAgreesWithPostgres_CleanStop stops a primary cleanly while its
// mirror streams: the mirror receives everything up to and including the
// shutdown checkpoint, and the checkpoint location the stopped primary
// reports (pg_controldata's "Latest checkpoint location", the start of
// the record) is just before the mirror's position, on real PostgreSQL
// and on simpg alike.
func TestAgreesWithPostgres_CleanStop(t *testing.T) {
	got := map[string]stopOutcome{}
	for name, tg := range map[string]target{"postgres": realTarget(t), "simpg": simTarget(t)} {
		got[name] = runCleanStop(t, name, tg)
		t.Logf("%s: %+v", name, got[name])
	}
	want := stopOutcome{Clean: true, MirrorPastCheckpoint: true, CheckpointLastRecord: true}
	for name, o := range got {
		if o != want {
			t.Errorf("%s: %+v, want %+v", name, o, want)
		}
	}
}

func runCleanStop(t *testing.T, name string, tg target) (o stopOutcome) {
	t.Helper()
	ctx := ctxT(t, 60*time.Second)
	d := tg.drv
	if err := d.InitPrimary(ctx, cluster, tg.prim); err != nil {
		t.Fatalf("%s: InitPrimary: %v", name, err)
	}
	if err := tg.prepare(ctx); err != nil {
		t.Fatalf("%s: prepare: %v", name, err)
	}
	up := supervisor.Upstream{Address: tg.prim.Address, Port: tg.prim.Port}
	if err := d.CreateMirror(ctx, cluster, tg.mirr, up, nil); err != nil {
		t.Fatalf("%s: CreateMirror: %v", name, err)
	}
	waitFor(t, 20*time.Second, name+": mirror streaming", func() (bool, string) {
		h, err := d.Probe(context.Background(), tg.prim)
		r := replica(h, tg.mirr.DBID)
		return err == nil && (r == "streaming/async" || r == "streaming/sync"), fmt.Sprintf("%+v %v", h.Replication, err)
	})
	for k := range int64(5) {
		if err := tg.commit(ctx, k); err != nil {
			t.Fatalf("%s: commit %d: %v", name, k, err)
		}
	}
	if err := d.Stop(ctx, tg.prim); err != nil {
		t.Fatalf("%s: stop primary: %v", name, err)
	}
	ckpt, clean, err := d.CheckpointLSN(ctx, tg.prim)
	if err != nil {
		t.Fatalf("%s: CheckpointLSN: %v", name, err)
	}
	o.Clean = clean
	// The mirror replays what it received; wait for the replay to settle
	// past the checkpoint, as the agent's leader waits for it.
	var mirror uint64
	deadline := time.Now().Add(10 * time.Second)
	for {
		h, err := d.Probe(ctx, tg.mirr)
		if err == nil {
			mirror = h.CurrentLSN
		}
		if mirror > ckpt || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%s: checkpoint location %X, mirror replayed to %X", name, ckpt, mirror)
	o.MirrorPastCheckpoint = mirror > ckpt
	// A shutdown checkpoint record is some hundred bytes; the next
	// commit's would be further on.
	o.CheckpointLastRecord = mirror > ckpt && mirror-ckpt < 512
	return o
}
