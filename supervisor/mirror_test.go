package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMirror builds a real primary/mirror pair: base backup with progress,
// streaming, synchronous replication, a row travelling from the primary
// to the mirror, idempotent re-creation, and recovery of an unfinished
// mirror whose slot was left on the primary.
func TestMirror(t *testing.T) {
	t.Parallel()
	s := newSup(t)
	root := testRoot(t)
	prim := testInstance(t, root, 2, 0)
	mirr := testInstance(t, root, 3, 0)
	stopOnCleanup(t, s, prim)
	stopOnCleanup(t, s, mirr)
	up := Upstream{Address: prim.Address, Port: prim.Port}

	if err := s.InitPrimary(ctxT(t, 60*time.Second), testCluster, prim); err != nil {
		t.Fatalf("InitPrimary: %v", err)
	}

	var mu sync.Mutex
	var calls [][2]int64
	err := s.CreateMirror(ctxT(t, 60*time.Second), testCluster, mirr, up, func(done, total int64) {
		mu.Lock()
		calls = append(calls, [2]int64{done, total})
		mu.Unlock()
	})
	if err != nil {
		t.Fatalf("CreateMirror: %v", err)
	}
	mu.Lock()
	if len(calls) == 0 || calls[len(calls)-1][0] != calls[len(calls)-1][1] || calls[len(calls)-1][1] <= 0 {
		t.Errorf("progress calls %v: want a last call with done == total > 0", calls)
	}
	mu.Unlock()
	if !s.Ours(testCluster, mirr) {
		t.Fatal("mirror datadir does not carry its own marker")
	}
	checkOwnership(t, mirr, true)

	waitFor(t, 20*time.Second, "mirror streaming", func() (bool, string) {
		h, err := s.Probe(context.Background(), mirr)
		if err != nil {
			return false, err.Error()
		}
		ok := h.InRecovery && h.Receiver != nil && h.Receiver.Status == "streaming" &&
			h.Receiver.SenderPort == prim.Port && h.Receiver.FlushedLSN > 0 && h.Receiver.LatestEndLSN > 0
		return ok, fmt.Sprintf("%+v receiver=%+v", h, h.Receiver)
	})

	// Synchronous replication to the mirror's application name.
	if err := s.SetSyncStandby(ctxT(t, 20*time.Second), prim, []string{AppName(mirr.DBID)}); err != nil {
		t.Fatalf("SetSyncStandby: %v", err)
	}
	waitFor(t, 20*time.Second, "mirror is the sync standby", func() (bool, string) {
		h, err := s.Probe(context.Background(), prim)
		if err != nil {
			return false, err.Error()
		}
		if h.SyncStandbyNames != `"gpdbid3"` {
			return false, "synchronous_standby_names " + h.SyncStandbyNames
		}
		return replicaState(h, AppName(mirr.DBID)) == "streaming/sync", fmt.Sprintf("%+v", h.Replication)
	})

	// A row committed on the primary (a synchronous commit now) is read
	// on the mirror.
	pc, err := s.connect(ctxT(t, 10*time.Second), prim.Address, prim.Port)
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn(pc)
	if _, err := pc.Exec(ctxT(t, 10*time.Second), `CREATE TABLE t (v text); INSERT INTO t VALUES ('hello mirror')`); err != nil {
		t.Fatalf("insert on primary: %v", err)
	}
	waitFor(t, 20*time.Second, "row visible on the mirror", func() (bool, string) {
		mc, err := s.connect(context.Background(), mirr.Address, mirr.Port)
		if err != nil {
			return false, err.Error()
		}
		defer closeConn(mc)
		var v string
		if err := mc.QueryRow(context.Background(), `SELECT v FROM t`).Scan(&v); err != nil {
			return false, err.Error()
		}
		return v == "hello mirror", v
	})

	// Idempotent: CreateMirror of a finished mirror only ensures it runs.
	pid := s.PID(mirr)
	if err := s.CreateMirror(ctxT(t, 30*time.Second), testCluster, mirr, up, nil); err != nil || s.PID(mirr) != pid {
		t.Fatalf("second CreateMirror: err=%v pid %d -> %d", err, pid, s.PID(mirr))
	}

	// A base backup cancelled midway leaves nothing behind: no datadir,
	// no intent file, no slot on the primary, no pg_basebackup process.
	// The backup is throttled so the cancel surely lands before its end.
	m5 := testInstance(t, root, 5, 0)
	stopOnCleanup(t, s, m5)
	s.extraBackupArgs = []string{"--max-rate=32k"}
	cctx, cancel := context.WithCancel(context.Background())
	err = s.CreateMirror(cctx, testCluster, m5, up, func(done, total int64) { cancel() })
	cancel()
	s.extraBackupArgs = nil
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled CreateMirror: %v", err)
	}
	t.Logf("cancelled CreateMirror: %v", err)
	for _, p := range []string{m5.DataDir, m5.DataDir + intentSuffix} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left behind after a cancelled CreateMirror (%v)", p, err)
		}
	}
	var slots int
	if err := pc.QueryRow(ctxT(t, 10*time.Second), `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, SlotName(m5.DBID)).Scan(&slots); err != nil || slots != 0 {
		t.Errorf("slot %s left on the primary: count=%d err=%v", SlotName(m5.DBID), slots, err)
	}
	if pids := processesMentioning(m5.DataDir); len(pids) > 0 {
		t.Errorf("processes left running for %s: %v", m5.DataDir, pids)
	}

	// Back to asynchronous.
	if err := s.SetSyncStandby(ctxT(t, 20*time.Second), prim, nil); err != nil {
		t.Fatalf("SetSyncStandby(nil): %v", err)
	}
	waitFor(t, 20*time.Second, "mirror async", func() (bool, string) {
		h, err := s.Probe(context.Background(), prim)
		if err != nil {
			return false, err.Error()
		}
		return h.SyncStandbyNames == "" && replicaState(h, AppName(mirr.DBID)) == "streaming/async", fmt.Sprintf("%+v", h.Replication)
	})

	// An unfinished second mirror: intent file, junk in its datadir and
	// an inactive slot of its name on the primary, as a crash during the
	// base backup would leave them. CreateMirror clears and redoes it.
	m2 := testInstance(t, root, 4, 0)
	stopOnCleanup(t, s, m2)
	if err := os.Mkdir(m2.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(m2.DataDir, "backup_label"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.writeMarker(m2.DataDir+intentSuffix, testCluster, m2); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Exec(ctxT(t, 10*time.Second), `SELECT pg_create_physical_replication_slot($1)`, SlotName(m2.DBID)); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateMirror(ctxT(t, 60*time.Second), testCluster, m2, up, nil); err != nil {
		t.Fatalf("CreateMirror over unfinished remains: %v", err)
	}
	waitFor(t, 20*time.Second, "second mirror streams through its slot", func() (bool, string) {
		var active bool
		err := pc.QueryRow(context.Background(), `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, SlotName(m2.DBID)).Scan(&active)
		return err == nil && active, fmt.Sprintf("active=%v err=%v", active, err)
	})

	// Promotion: out of recovery; a second call is a no-op; the promoted
	// instance is no standby to CreateMirror any more.
	if err := s.Promote(ctxT(t, 30*time.Second), m2); err != nil {
		t.Fatalf("Promote: %v", err)
	}
	if h, err := s.Probe(ctxT(t, 10*time.Second), m2); err != nil || h.InRecovery {
		t.Fatalf("Probe after Promote: in recovery=%v err=%v", h.InRecovery, err)
	}
	if err := s.Promote(ctxT(t, 30*time.Second), m2); err != nil {
		t.Fatalf("second Promote: %v", err)
	}
	wantErr(t, s.CreateMirror(ctxT(t, 10*time.Second), testCluster, m2, up, nil), "not a standby")

	// A postmaster killed with -9 is reported.
	drain(s.Exits())
	if err := s.Stop(ctxT(t, 30*time.Second), m2); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctxT(t, 30*time.Second), m2); err != nil {
		t.Fatal(err)
	}
	if err := killPID(s.PID(m2)); err != nil {
		t.Fatal(err)
	}
	waitExit(t, s.Exits(), m2.DBID, 10*time.Second)
}

func replicaState(h Health, app string) string {
	for _, r := range h.Replication {
		if r.ApplicationName == app {
			return r.State + "/" + r.SyncState
		}
	}
	return "absent"
}

func killPID(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}

// processesMentioning lists the pids whose command line contains s.
func processesMentioning(s string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && strings.Contains(string(cmd), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}
