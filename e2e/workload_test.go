package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// writer inserts one row every few milliseconds into one content through
// the multi-host connection string gpagent connstr prints, as a client
// would, and remembers every id whose commit was acknowledged.
type writer struct {
	t       testing.TB
	connstr string
	table   string

	mu      sync.Mutex
	acked   []int64
	lastAck time.Time
	lastErr error

	stop chan struct{}
	done chan struct{}
}

func (d *demo) startWriter(content int) *writer {
	d.t.Helper()
	connstr := strings.TrimSpace(d.mustGpagent("connstr", "--content", fmt.Sprint(content)))
	return d.startWriterVia(connstr, strings.ReplaceAll(fmt.Sprintf("e2e_writes_%d", content), "-", "m"))
}

// startWriterVia is startWriter through any libpq connection string (a
// load balancer's address, say), writing into table.
func (d *demo) startWriterVia(connstr, table string) *writer {
	d.t.Helper()
	w := &writer{t: d.t, connstr: connstr + " passfile=" + filepath.Join(d.dir, "pgpass"),
		table: table, stop: make(chan struct{}), done: make(chan struct{})}
	conn := w.connect()
	if conn == nil {
		d.t.Fatalf("writer on %s: cannot connect: %v", connstr, w.lastErr)
	}
	if _, err := conn.Exec(context.Background(), "CREATE TABLE IF NOT EXISTS "+w.table+" (id bigint primary key)"); err != nil {
		d.t.Fatalf("create %s: %v", w.table, err)
	}
	go w.run(conn)
	d.t.Cleanup(w.halt)
	return w
}

func (w *writer) connect() *pgx.Conn {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, w.connstr)
	if err != nil {
		w.mu.Lock()
		w.lastErr = err
		w.mu.Unlock()
		return nil
	}
	return conn
}

func (w *writer) run(conn *pgx.Conn) {
	defer close(w.done)
	var id int64
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-w.stop:
			if conn != nil {
				conn.Close(context.Background())
			}
			return
		case <-tick.C:
		}
		if conn == nil {
			if conn = w.connect(); conn == nil {
				continue
			}
		}
		id++
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := conn.Exec(ctx, "INSERT INTO "+w.table+" VALUES ($1)", id)
		cancel()
		w.mu.Lock()
		if err == nil {
			w.acked = append(w.acked, id)
			w.lastAck = time.Now()
		} else {
			w.lastErr = err
		}
		w.mu.Unlock()
		if err != nil {
			conn.Close(context.Background())
			conn = nil
		}
	}
}

func (w *writer) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// waitAckedAfter waits until a commit is acknowledged after t0.
func (w *writer) waitAckedAfter(t0 time.Time, timeout time.Duration, what string) {
	w.t.Helper()
	waitUntil(w.t, timeout, what, func() (bool, string) {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.lastAck.After(t0), fmt.Sprintf("last ack %s, last error %v", w.lastAck.Format(time.TimeOnly+".000"), w.lastErr)
	})
}

// checkNoLoss stops the writer and checks every acknowledged id is on the
// content's acting primary.
func (w *writer) checkNoLoss() {
	w.t.Helper()
	w.halt()
	var conn *pgx.Conn
	waitUntil(w.t, 30*time.Second, "connect to the acting primary for the loss check", func() (bool, string) {
		conn = w.connect()
		return conn != nil, fmt.Sprint(w.lastErr)
	})
	defer conn.Close(context.Background())
	w.mu.Lock()
	acked := append([]int64(nil), w.acked...)
	w.mu.Unlock()
	var found int
	err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+w.table+" WHERE id = ANY($1)", acked).Scan(&found)
	if err != nil {
		w.t.Fatalf("loss check: %v", err)
	}
	if found != len(acked) {
		w.t.Errorf("%s: %d acknowledged commits, %d found on the acting primary: %d LOST", w.table, len(acked), found, len(acked)-found)
	} else {
		w.t.Logf("%s: all %d acknowledged commits present", w.table, len(acked))
	}
}

// walReceiverPID finds the walreceiver process of a standby's postmaster.
func walReceiverPID(postmaster int) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(fields) < 2 || fields[1] != fmt.Sprint(postmaster) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if strings.Contains(string(cmdline), "walreceiver") {
			return pid
		}
	}
	return 0
}
