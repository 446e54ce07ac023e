package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const (
	createTable = `CREATE TABLE IF NOT EXISTS gpbench_failover(id bigint primary key, at timestamptz default now())`
	insertRow   = `INSERT INTO gpbench_failover(id) VALUES ($1)`
)

// op is one INSERT the writer attempted.
type op struct {
	id         int64
	start, end time.Time
	ok         bool
	// connAt is when the attempt that opened the op's connection began.
	connAt time.Time
}

// writer inserts one row every interval through the multi-host connection
// string and remembers which inserts were acknowledged. On any error it
// drops the connection and reconnects at the next tick (at once when the
// failed attempt already took longer than a tick), so it never sleeps
// longer than interval.
type writer struct {
	cfg       *pgx.ConnConfig
	interval  time.Duration
	opTimeout time.Duration
	ids       *atomic.Int64

	mu      sync.Mutex
	ops     []op
	lastErr string
	kick    chan struct{} // a token after every acknowledgement
}

func newWriter(cfg *pgx.ConnConfig, interval, opTimeout time.Duration, ids *atomic.Int64) *writer {
	return &writer{cfg: cfg, interval: interval, opTimeout: opTimeout, ids: ids, kick: make(chan struct{}, 1)}
}

func (w *writer) run(ctx context.Context) {
	var conn *pgx.Conn
	var connAt time.Time
	defer func() { closeConn(conn) }()
	next := time.Now()
	for {
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		}
		if ctx.Err() != nil {
			return
		}
		next = next.Add(w.interval)
		if now := time.Now(); next.Before(now) {
			next = now // no burst to catch up after a slow attempt
		}
		if conn == nil {
			connAt = time.Now()
			c, err := pgx.ConnectConfig(ctx, w.cfg)
			if err != nil {
				w.fail(ctx, err)
				continue
			}
			conn = c
		}
		id := w.ids.Add(1)
		start := time.Now()
		octx, cancel := context.WithTimeout(ctx, w.opTimeout)
		_, err := conn.Exec(octx, insertRow, id)
		cancel()
		end := time.Now()
		if ctx.Err() != nil {
			// Stopped mid-insert: neither acknowledged nor a failure.
			return
		}
		w.mu.Lock()
		w.ops = append(w.ops, op{id: id, start: start, end: end, ok: err == nil, connAt: connAt})
		w.mu.Unlock()
		if err != nil {
			w.fail(ctx, err)
			closeConn(conn)
			conn = nil
			continue
		}
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

func (w *writer) fail(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	w.mu.Lock()
	w.lastErr = oneLine(err.Error())
	w.mu.Unlock()
}

// closeConn closes without waiting on a dead or hung server.
func closeConn(c *pgx.Conn) {
	if c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = c.Close(ctx)
}

// ackedAfter returns the end of the first acknowledged insert that
// started at or after t0 on a connection opened at or after t0. An old
// session may outlive the fault for a moment (the backends of a killed
// postmaster exit only when they notice, and their commits still reach
// the synchronous mirror): its acknowledgements are not writes coming back.
// With anySession, the session open at t0 counts too.
func (w *writer) ackedAfter(t0 time.Time, anySession bool) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, o := range w.ops {
		if o.ok && !o.start.Before(t0) && (anySession || !o.connAt.Before(t0)) {
			return o.end, true
		}
	}
	return time.Time{}, false
}

// oldSessionAcks counts the inserts acknowledged after t0 on a connection
// opened before it.
func (w *writer) oldSessionAcks(t0 time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, o := range w.ops {
		if o.ok && !o.start.Before(t0) && o.connAt.Before(t0) {
			n++
		}
	}
	return n
}

// waitAckAfter waits until ackedAfter holds, or ctx ends.
func (w *writer) waitAckAfter(ctx context.Context, t0 time.Time, anySession bool) (time.Time, bool) {
	for {
		if end, ok := w.ackedAfter(t0, anySession); ok {
			return end, true
		}
		select {
		case <-ctx.Done():
			return time.Time{}, false
		case <-w.kick:
		}
	}
}

// stats: acknowledged ids, failed inserts, the longest time between two
// acknowledgements (or from the first insert to the first one), and the
// last error seen.
func (w *writer) stats() (acked []int64, failed int, maxGap time.Duration, lastErr string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var prev time.Time
	if len(w.ops) > 0 {
		prev = w.ops[0].start
	}
	for _, o := range w.ops {
		if !o.ok {
			failed++
			continue
		}
		acked = append(acked, o.id)
		maxGap = max(maxGap, o.end.Sub(prev))
		prev = o.end
	}
	return acked, failed, maxGap, w.lastErr
}

// instance is one PostgreSQL server the watcher asks directly.
type instance struct {
	host string
	port uint16
}

func (i instance) String() string { return net.JoinHostPort(i.host, strconv.Itoa(int(i.port))) }

// poll is one round of the watcher: which instances said they are not in
// recovery.
type poll struct {
	at       time.Time
	primary  []bool // by instance index
	answered []bool
}

// watcher asks every instance of the content pg_is_in_recovery() every
// interval, all at once with a short timeout, and remembers each poll.
//
// It keeps one session per instance between polls and opens a new one
// only when a question failed on it, off the polls' clock and with a
// generous connect timeout. Opening one costs a connection and a SCRAM
// authentication: tens of milliseconds on an idle machine, seconds on two
// cores loaded by other tests' clusters (the race detector also slows the
// client's PBKDF2). With the connect inside the 300 ms question, a loaded
// run never reached an instance at all (TestRebalanceSmoke: "the watcher
// never reached ...: failed SASL auth: timeout"). The answers are those a
// new session would get: pg_is_in_recovery() is the server's state, and
// the base config's AfterConnect check (the fence, see refuseFenced) is
// run on the session before every question, after the server's reload of
// a new read-only default; a session of a server that restarts or is cut
// off fails its question and is replaced.
type watcher struct {
	base           *pgx.ConnConfig
	instances      []instance
	interval       time.Duration
	timeout        time.Duration
	connectTimeout time.Duration // 0: defaultWatchConnectTimeout

	mu       sync.Mutex
	polls    []poll
	answered []bool   // by instance: answered at least once
	lastErr  []string // by instance: the latest error
	connErr  []string // by instance: the connector's latest error
}

// defaultWatchConnectTimeout bounds one connection and authentication of
// the watcher: generous, as it is off the polls' clock.
const defaultWatchConnectTimeout = 10 * time.Second

// watchSession is one instance's session slot: ready holds the session
// between polls, need asks the connector for a new one.
type watchSession struct {
	ready chan *pgx.Conn
	need  chan struct{}
}

func (w *watcher) run(ctx context.Context) {
	sessions := make([]watchSession, len(w.instances))
	w.mu.Lock()
	w.connErr = make([]string, len(w.instances))
	w.mu.Unlock()
	var conns sync.WaitGroup
	defer func() {
		conns.Wait()
		for _, s := range sessions {
			select {
			case c := <-s.ready:
				closeConn(c)
			default:
			}
		}
	}()
	for i, inst := range w.instances {
		sessions[i] = watchSession{ready: make(chan *pgx.Conn, 1), need: make(chan struct{}, 1)}
		sessions[i].need <- struct{}{}
		conns.Go(func() { w.connect(ctx, i, inst, sessions[i]) })
	}
	for ctx.Err() == nil {
		start := time.Now()
		p := poll{at: start, primary: make([]bool, len(w.instances))}
		var wg sync.WaitGroup
		answered := make([]bool, len(w.instances))
		errs := make([]string, len(w.instances))
		for i := range w.instances {
			wg.Go(func() {
				inRecovery, err := w.ask(ctx, i, sessions[i])
				answered[i] = err == nil
				p.primary[i] = err == nil && !inRecovery
				if err != nil {
					errs[i] = oneLine(err.Error())
				}
			})
		}
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
		w.mu.Lock()
		if w.answered == nil {
			w.answered, w.lastErr = make([]bool, len(w.instances)), make([]string, len(w.instances))
		}
		for i, a := range answered {
			if a {
				w.answered[i] = true
			} else {
				w.lastErr[i] = errs[i]
			}
		}
		p.answered = answered
		w.polls = append(w.polls, p)
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(start.Add(w.interval))):
		}
	}
}

// connect opens a session to inst each time s.need asks, retrying every
// interval after a failure, until ctx ends.
func (w *watcher) connect(ctx context.Context, i int, inst instance, s watchSession) {
	timeout := w.connectTimeout
	if timeout <= 0 {
		timeout = defaultWatchConnectTimeout
	}
	cfg := w.connConfig(inst)
	cfg.ConnectTimeout = timeout
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.need:
		}
		for {
			cctx, cancel := context.WithTimeout(ctx, timeout)
			conn, err := pgx.ConnectConfig(cctx, cfg)
			cancel()
			w.mu.Lock()
			w.connErr[i] = ""
			if err != nil {
				w.connErr[i] = oneLine(err.Error())
			}
			w.mu.Unlock()
			if err == nil {
				s.ready <- conn // the slot is empty: its session was dropped
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(w.interval):
			}
		}
	}
}

// connConfig is the base config narrowed to inst, without the
// AfterConnect check (ask runs it before every question).
func (w *watcher) connConfig(inst instance) *pgx.ConnConfig {
	cfg := w.base.Copy()
	// Keep this instance's entries only: with sslmode=prefer there are
	// two, with and without TLS.
	var mine []*pgconn.FallbackConfig
	for _, fb := range append([]*pgconn.FallbackConfig{{Host: cfg.Host, Port: cfg.Port, TLSConfig: cfg.TLSConfig}}, cfg.Fallbacks...) {
		if fb.Host == inst.host && fb.Port == inst.port {
			mine = append(mine, fb)
		}
	}
	if len(mine) == 0 {
		mine = append(mine, &pgconn.FallbackConfig{Host: inst.host, Port: inst.port})
	}
	cfg.Host, cfg.Port, cfg.TLSConfig, cfg.Fallbacks = mine[0].Host, mine[0].Port, mine[0].TLSConfig, mine[1:]
	cfg.ValidateConnect = nil // any instance, standby or not
	cfg.AfterConnect = nil
	return cfg
}

// ask puts the question to instance i on its session. Without one (the
// connector is still opening it) the instance does not answer this poll.
// A session whose question failed is closed and a new one asked for,
// unless only the AfterConnect check refused an instance that is fine
// otherwise (a fenced primary).
func (w *watcher) ask(ctx context.Context, i int, s watchSession) (bool, error) {
	var conn *pgx.Conn
	select {
	case conn = <-s.ready:
	default:
		w.mu.Lock()
		cerr := w.connErr[i]
		w.mu.Unlock()
		if cerr == "" {
			cerr = "connecting"
		}
		return false, fmt.Errorf("no session: %s", cerr)
	}
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	keep := false
	defer func() {
		if keep {
			s.ready <- conn
			return
		}
		closeConn(conn)
		s.need <- struct{}{} // empty: the connector takes it before it fills the slot
	}()
	if w.base.AfterConnect != nil {
		if err := w.base.AfterConnect(ctx, conn.PgConn()); err != nil {
			keep = ctx.Err() == nil && !conn.IsClosed()
			return false, err
		}
	}
	var inRecovery bool
	err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery)
	keep = err == nil
	return inRecovery, err
}

// check says why the watcher cannot see every instance, if it cannot.
func (w *watcher) check() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.polls) == 0 {
		return fmt.Errorf("the watcher made no poll")
	}
	for i, inst := range w.instances {
		if !w.answered[i] {
			return fmt.Errorf("the watcher never reached %s: %s", inst, w.lastErr[i])
		}
	}
	// The latest poll every instance answered must find one primary.
	for i := len(w.polls) - 1; i >= 0; i-- {
		if p := w.polls[i]; count(p.answered) == len(w.instances) {
			if n := count(p.primary); n != 1 {
				return fmt.Errorf("%d instances answer as primary, want 1", n)
			}
			return nil
		}
	}
	return fmt.Errorf("no poll reached every instance at once")
}

// splitBrain counts the polls at which two or more instances answered
// that they are not in recovery.
func (w *watcher) splitBrain() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, p := range w.polls {
		if count(p.primary) >= 2 {
			n++
		}
	}
	return n
}

// promotedAfter: the time from t0 to the first poll after it at which an
// instance that was not a primary at the last poll before t0 answered as
// one; -1 when none did.
func (w *watcher) promotedAfter(t0 time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	before := make([]bool, len(w.instances))
	for _, p := range w.polls {
		if p.at.Before(t0) {
			copy(before, p.primary)
			continue
		}
		for i, prim := range p.primary {
			if prim && !before[i] {
				return p.at.Sub(t0)
			}
		}
	}
	return -1
}

func count(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// connectRetry connects through the connection string until it succeeds
// or ctx ends, at most every 50 ms.
func connectRetry(ctx context.Context, cfg *pgx.ConnConfig) (*pgx.Conn, error) {
	var last error
	for {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			return conn, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("could not connect: %s", oneLine(last.Error()))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// prepareTable creates the table if needed and moves the id counter past
// every id already in it, so runs against the same database never collide.
func prepareTable(ctx context.Context, cfg *pgx.ConnConfig, ids *atomic.Int64) error {
	conn, err := connectRetry(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	if _, err := conn.Exec(ctx, createTable); err != nil {
		return fmt.Errorf("create table: %w", err)
	}
	var maxID int64
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(id), 0) FROM gpbench_failover").Scan(&maxID); err != nil {
		return fmt.Errorf("read max id: %w", err)
	}
	for {
		cur := ids.Load()
		if cur >= maxID || ids.CompareAndSwap(cur, maxID) {
			return nil
		}
	}
}

// waitWritable waits until a write through the connection string is
// acknowledged: an upsert of row -1, which the workload never uses.
func waitWritable(ctx context.Context, cfg *pgx.ConnConfig) error {
	var last error
	for {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			_, err = conn.Exec(ctx, createTable)
			if err == nil {
				_, err = conn.Exec(ctx, `INSERT INTO gpbench_failover(id) VALUES (-1) ON CONFLICT (id) DO UPDATE SET at = now()`)
			}
			closeConn(conn)
			if err == nil {
				return nil
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("writes do not work: %s", oneLine(last.Error()))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// missingIDs returns the acknowledged ids that are not in the table, read
// through the connection string (i.e. from the acting primary).
func missingIDs(ctx context.Context, cfg *pgx.ConnConfig, acked []int64) ([]int64, error) {
	conn, err := connectRetry(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer closeConn(conn)
	rows, err := conn.Query(ctx, "SELECT id FROM gpbench_failover WHERE id = ANY($1)", acked)
	if err != nil {
		return nil, err
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	present := make(map[int64]bool, len(found))
	for _, id := range found {
		present[id] = true
	}
	var missing []int64
	for _, id := range acked {
		if !present[id] {
			missing = append(missing, id)
		}
	}
	return missing, nil
}

func oneLine(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == '\n' || c == '\r' {
			b[i] = ' '
		}
	}
	return string(b)
}
