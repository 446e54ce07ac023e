package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// localFiles serves a local instance's files as the primary's agent
// does: the listing, and framed ranges through a pipe.
type localFiles struct {
	s         *Supervisor
	inst      Instance
	afterList func() // runs once the listing is taken
	reads     atomic.Int64
	failReads bool
}

func (l *localFiles) List(ctx context.Context) ([]DataFile, error) {
	files, err := l.s.DataFiles(l.inst)
	if err == nil && l.afterList != nil {
		l.afterList()
	}
	return files, err
}

func (l *localFiles) Read(ctx context.Context, ranges []FileRange) (io.ReadCloser, error) {
	l.reads.Add(1)
	if l.failReads {
		return nil, errors.New("connection refused (test)")
	}
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(l.s.ServeDataFiles(l.inst, ranges, pw, func(int64) {}))
	}()
	return pr, nil
}

type failingList struct{ localFiles }

func (f *failingList) List(ctx context.Context) ([]DataFile, error) {
	return nil, errors.New("agent at sdw9:7070: connection refused (test)")
}

// TestMirrorByFileCopy builds a mirror by the parallel file copy from a
// primary that keeps taking writes, drops one table and rewrites another
// (so that listed files are gone by the time they are read), and checks
// that the mirror streams and holds exactly the primary's rows. Then: a
// copy whose reads fail leaves nothing behind, and a primary whose agent
// gives no listing is copied by pg_basebackup instead.
func TestMirrorByFileCopy(t *testing.T) {
	t.Parallel()
	s := newSup(t)
	root := testRoot(t)
	prim := testInstance(t, root, 2, 0)
	mirr := testInstance(t, root, 3, 0)
	stopOnCleanup(t, s, prim)
	stopOnCleanup(t, s, mirr)
	if err := s.InitPrimary(ctxT(t, 60*time.Second), testCluster, prim); err != nil {
		t.Fatalf("InitPrimary: %v", err)
	}
	pc, err := s.connect(ctxT(t, 10*time.Second), prim.Address, prim.Port)
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn(pc)
	// Tens of MB in a few hundred files: more than one batch of each kind.
	setup := `CREATE TABLE big (id int, pad text);
		INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 150000) g;
		CREATE TABLE dropped (v int); INSERT INTO dropped SELECT generate_series(1, 1000);
		CREATE TABLE rewritten (v int); INSERT INTO rewritten SELECT generate_series(1, 1000);
		CREATE TABLE w (id int);`
	for i := range 300 {
		setup += fmt.Sprintf("CREATE TABLE small%d (v int); INSERT INTO small%d VALUES (%d);", i, i, i)
	}
	if _, err := pc.Exec(ctxT(t, 60*time.Second), setup); err != nil {
		t.Fatalf("load: %v", err)
	}

	// Writes go on through the whole copy.
	wctx, stopWrites := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var written atomic.Int64
	wg.Go(func() {
		wc, err := s.connect(wctx, prim.Address, prim.Port)
		if err != nil {
			t.Errorf("writer: %v", err)
			return
		}
		defer closeConn(wc)
		for i := 1; i <= 100000 && wctx.Err() == nil; i++ {
			if _, err := wc.Exec(wctx, `INSERT INTO w VALUES ($1)`, i); err != nil {
				if wctx.Err() == nil {
					t.Errorf("writer: %v", err)
				}
				return
			}
			written.Store(int64(i))
		}
	})
	src := &localFiles{s: s, inst: prim, afterList: func() {
		for _, q := range []string{`DROP TABLE dropped`, `VACUUM FULL rewritten`, `CHECKPOINT`} {
			if _, err := pc.Exec(context.Background(), q); err != nil {
				t.Errorf("%s during the copy: %v", q, err)
			}
		}
	}}
	up := Upstream{Address: prim.Address, Port: prim.Port, Files: src}
	var last [2]int64
	var mu sync.Mutex
	err = s.CreateMirror(ctxT(t, 120*time.Second), testCluster, mirr, up, func(done, total int64) {
		mu.Lock()
		last = [2]int64{done, total}
		mu.Unlock()
	})
	stopWrites()
	wg.Wait()
	if err != nil {
		t.Fatalf("CreateMirror by file copy: %v", err)
	}
	if src.reads.Load() < 2 {
		t.Fatalf("%d reads of the primary's files: the copy was not made file by file", src.reads.Load())
	}
	if mu.Lock(); last[0] != last[1] || last[1] < 30<<20 {
		t.Errorf("last progress %d of %d bytes: want done == total, tens of MB", last[0], last[1])
	}
	mu.Unlock()
	checkOwnership(t, mirr, true)
	if written.Load() == 0 {
		t.Fatal("no write went in during the copy")
	}

	// The mirror catches up with the primary and holds what it holds.
	var want string
	if err := pc.QueryRow(ctxT(t, 10*time.Second), `SELECT pg_current_wal_lsn()::text`).Scan(&want); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "mirror streams and replays to the primary's position", func() (bool, string) {
		h, err := s.Probe(context.Background(), mirr)
		if err != nil {
			return false, err.Error()
		}
		w := parseLSN(&want)
		return h.InRecovery && h.Receiver != nil && h.Receiver.Status == "streaming" && h.CurrentLSN >= w,
			fmt.Sprintf("in recovery %v, replayed %X, want %s, receiver %+v", h.InRecovery, h.CurrentLSN, want, h.Receiver)
	})
	const summary = `SELECT (SELECT count(*) FROM big) || '/' || (SELECT sum(id) FROM w) || '/' ||
		(SELECT count(*) FROM rewritten) || '/' || (SELECT sum(v) FROM small7) || '/' || (SELECT sum(v) FROM small299) || '/' ||
		(SELECT count(*) FROM pg_class WHERE relname = 'dropped')`
	var onPrimary, onMirror string
	if err := pc.QueryRow(ctxT(t, 10*time.Second), summary).Scan(&onPrimary); err != nil {
		t.Fatal(err)
	}
	mc, err := s.connect(ctxT(t, 10*time.Second), mirr.Address, mirr.Port)
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn(mc)
	if err := mc.QueryRow(ctxT(t, 10*time.Second), summary).Scan(&onMirror); err != nil {
		t.Fatalf("read the mirror: %v", err)
	}
	if onMirror != onPrimary {
		t.Fatalf("mirror holds %s, primary %s", onMirror, onPrimary)
	}
	t.Logf("primary and mirror both hold %s (%d rows written during the copy)", onPrimary, written.Load())

	// Reads that fail: the copy fails, and leaves no datadir, intent or
	// slot behind.
	m4 := testInstance(t, root, 4, 0)
	stopOnCleanup(t, s, m4)
	bad := &localFiles{s: s, inst: prim, failReads: true}
	err = s.CreateMirror(ctxT(t, 60*time.Second), testCluster, m4, Upstream{Address: prim.Address, Port: prim.Port, Files: bad}, nil)
	wantErr(t, err, "connection refused (test)")
	for _, p := range []string{m4.DataDir, m4.DataDir + intentSuffix} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left behind after a failed copy (%v)", p, err)
		}
	}
	var slots int
	if err := pc.QueryRow(ctxT(t, 10*time.Second), `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, SlotName(m4.DBID)).Scan(&slots); err != nil || slots != 0 {
		t.Errorf("slot %s left on the primary: count=%d err=%v", SlotName(m4.DBID), slots, err)
	}

	// No listing (the primary's agent is down): pg_basebackup instead.
	nolist := &failingList{localFiles{s: s, inst: prim}}
	if err := s.CreateMirror(ctxT(t, 60*time.Second), testCluster, m4, Upstream{Address: prim.Address, Port: prim.Port, Files: nolist}, nil); err != nil {
		t.Fatalf("CreateMirror without a listing: %v", err)
	}
	if nolist.reads.Load() != 0 {
		t.Fatalf("%d reads without a listing", nolist.reads.Load())
	}
	waitFor(t, 30*time.Second, "mirror made by pg_basebackup streams", func() (bool, string) {
		h, err := s.Probe(context.Background(), m4)
		if err != nil {
			return false, err.Error()
		}
		return h.InRecovery && h.Receiver != nil && h.Receiver.Status == "streaming", fmt.Sprintf("%+v", h.Receiver)
	})
}

// TestDataFiles checks what a listing leaves out, as pg_basebackup does,
// and that it refuses a data directory with a symbolic link (tablespace).
func TestDataFiles(t *testing.T) {
	s := newSup(t)
	dd := filepath.Join(t.TempDir(), "dd")
	mk := func(p string, size int) {
		t.Helper()
		full := filepath.Join(dd, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for p, size := range map[string]int{
		"PG_VERSION": 3, "global/pg_control": 8192, "base/5/1259": 16384, "base/5/pg_internal.init": 10,
		"base/pgsql_tmp/pgsql_tmp1.0": 5, "pg_wal/000000010000000000000001": 100, "pg_wal/00000002.history": 42,
		"pg_wal/archive_status/x.done": 0, "pg_replslot/s/state": 8, "pg_stat_tmp/x": 1,
		"postmaster.pid": 10, "postmaster.opts": 10, "backup_label": 10, markerFile: 10, startupLogFile: 10,
		"log/postgresql.log": 10, "pg_stat/pgstat.stat": 7,
	} {
		mk(p, size)
	}
	inst := Instance{DBID: 2, Address: "127.0.0.1", Port: 5432, DataDir: dd}
	files, err := s.DataFiles(inst)
	if err != nil {
		t.Fatalf("DataFiles: %v", err)
	}
	var got []string
	for _, f := range files {
		if f.Dir {
			got = append(got, f.Path+"/")
		} else {
			got = append(got, fmt.Sprintf("%s:%d", f.Path, f.Size))
		}
	}
	slices.Sort(got)
	want := []string{"PG_VERSION:3", "base/", "base/5/", "base/5/1259:16384", "global/", "global/pg_control:8192",
		"log/", "pg_replslot/", "pg_stat/", "pg_stat/pgstat.stat:7", "pg_stat_tmp/",
		"pg_wal/", "pg_wal/00000002.history:42", "pg_wal/archive_status/"}
	if !slices.Equal(got, want) {
		t.Errorf("listing\n got %q\nwant %q", got, want)
	}

	// Ranges outside the directory are refused; a gone file is a frame.
	var sink countingWriter
	err = s.ServeDataFiles(inst, []FileRange{{Path: "../etc/passwd", N: 10}}, &sink, func(int64) {})
	wantErr(t, err, "not a path inside the data directory")
	var length int64
	if err := s.ServeDataFiles(inst, []FileRange{{Path: "PG_VERSION", N: 100}, {Path: "base/5/nope", N: 8}}, &sink, func(n int64) { length = n }); err != nil {
		t.Fatalf("ServeDataFiles: %v", err)
	}
	if length != 2*frameHeader+3 || sink.n != length {
		t.Errorf("answer of %d bytes announced as %d: want %d", sink.n, length, 2*frameHeader+3)
	}

	if err := os.MkdirAll(filepath.Join(dd, "pg_tblspc"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(t.TempDir(), filepath.Join(dd, "pg_tblspc", "16400")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DataFiles(inst); !errors.Is(err, ErrNotCopyable) {
		t.Fatalf("DataFiles with a tablespace: %v, want ErrNotCopyable", err)
	}
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// TestServeDataFiles_OpensFilesOneAtATime: an answer of many ranges holds
// at most a few files open at once, not one per range (a request may name
// thousands, and every agent copying from this host sends several).
func TestServeDataFiles_OpensFilesOneAtATime(t *testing.T) {
	s := newSup(t)
	dd := t.TempDir()
	const files = 200
	var ranges []FileRange
	for i := range files {
		name := fmt.Sprintf("base/5/%d", 16384+i)
		full := filepath.Join(dd, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(full), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte("page"), 0o600); err != nil {
			t.Fatal(err)
		}
		ranges = append(ranges, FileRange{Path: name, N: 8192})
	}
	ranges = append(ranges, FileRange{Path: "base/5/gone", N: 8192})
	before := openFDs(t)
	w := &fdWatchingWriter{t: t}
	var length int64
	if err := s.ServeDataFiles(Instance{DBID: 2, Address: "127.0.0.1", Port: 5432, DataDir: dd}, ranges, w, func(n int64) { length = n }); err != nil {
		t.Fatalf("ServeDataFiles: %v", err)
	}
	if want := int64(len(ranges)*frameHeader + files*4); length != want || w.n != want {
		t.Fatalf("answer of %d bytes announced as %d, want %d", w.n, length, want)
	}
	if extra := w.maxFDs - before; extra > 5 {
		t.Fatalf("%d files open at once while sending %d ranges (%d fds before, %d at most during); want a few", extra, len(ranges), before, w.maxFDs)
	}
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// fdWatchingWriter counts bytes and the most open descriptors seen at a
// write.
type fdWatchingWriter struct {
	t      *testing.T
	n      int64
	maxFDs int
}

func (w *fdWatchingWriter) Write(p []byte) (int, error) {
	w.maxFDs = max(w.maxFDs, openFDs(w.t))
	w.n += int64(len(p))
	return len(p), nil
}
