package simpg

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Options shape a World. The zero value is a fast world: no replication
// delay, copies that take no time.
type Options struct {
	// ProbeTimeout bounds a Probe of a hung server, as
	// supervisor.Config.ProbeTimeout does; default 2s.
	ProbeTimeout time.Duration
	// BatchDelay is added to every batch a standby receives, the network
	// and disk time of a real walreceiver.
	BatchDelay time.Duration
	// CopyTime is how long CreateMirror's copy takes, spread over its
	// progress reports.
	CopyTime time.Duration
	// DataSize is the size of an instance's data files, as CreateMirror
	// reports it in progress (with the WAL); default 32 MiB.
	DataSize int64
}

// World is every simulated instance of a cluster, shared by the hosts'
// drivers, the client load and the test that injects faults. Its methods
// are safe for concurrent use.
type World struct {
	opts Options

	// Every instance ever named, by address:port and by address and
	// port (found without making the key string: every probe's lookup
	// made it, 8 % of a thousand simulated hosts' CPU). Records are
	// never removed, so a lookup needs no lock.
	insts  sync.Map // string -> *instance
	byAddr sync.Map // addrPort -> *instance

	nextPID    atomic.Int64
	nextRecord atomic.Uint64
	nextCommit atomic.Uint64
	nextTLI    atomic.Int64 // the highest timeline yet
	probeDelay atomic.Int64 // SlowProbes, a time.Duration

	// mu guards the rest; it is taken after instance locks (locks.go).
	mu       sync.Mutex
	hosts    map[string]*Host // the current driver of each host
	failNext map[string]map[Tool]int
	acks     []Ack

	closed    chan struct{}
	closeOnce sync.Once

	wakeups atomic.Int64 // walreceiver loop turns, to check that idle costs nothing
}

// NewWorld returns an empty World. Close ends its replication goroutines.
func NewWorld(opts Options) *World {
	if opts.ProbeTimeout <= 0 {
		opts.ProbeTimeout = 2 * time.Second
	}
	if opts.DataSize <= 0 {
		opts.DataSize = 32 << 20
	}
	w := &World{
		opts:     opts,
		hosts:    map[string]*Host{},
		failNext: map[string]map[Tool]int{},
		closed:   make(chan struct{}),
	}
	w.nextPID.Store(1000)
	// Timeline 1 is every initdb's; a promotion takes the next.
	w.nextTLI.Store(1)
	return w
}

// Close stops every replication goroutine; the World is unusable after.
func (w *World) Close() { w.closeOnce.Do(func() { close(w.closed) }) }

// Host returns the driver of the host name: a fresh one on every call,
// which sees the instances left running by the previous one (an agent
// restart; Adopt takes them over). The previous driver of the host stops
// working, as the process that held it would have.
func (w *World) Host(name string) *Host {
	w.mu.Lock()
	defer w.mu.Unlock()
	if old := w.hosts[name]; old != nil {
		old.dead.Store(true)
	}
	h := &Host{w: w, name: name, exits: make(chan int, 64), tracked: map[string]int{}, locks: map[int]chan struct{}{}}
	w.hosts[name] = h
	return h
}

// host is the current driver of the host name, nil if none.
func (w *World) host(name string) *Host {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hosts[name]
}

// get returns the record of address:port, making an empty one if there is
// none yet, so that a standby can wait on an upstream not yet created.
func (w *World) get(address string, port int) *instance {
	if in, ok := w.byAddr.Load(addrPort{address, port}); ok {
		return in.(*instance)
	}
	key := instanceKey(address, port)
	in, _ := w.insts.LoadOrStore(key, &instance{key: key, address: address, port: port, changed: make(chan struct{}), downstream: map[string]*instance{}})
	w.byAddr.Store(addrPort{address, port}, in)
	return in.(*instance)
}

// lookup returns the record of address:port by its key, nil if none.
func (w *World) lookup(key string) *instance {
	if in, ok := w.insts.Load(key); ok {
		return in.(*instance)
	}
	return nil
}

// addrPort keys byAddr.
type addrPort struct {
	address string
	port    int
}

// State is a snapshot of one instance, for tests and checkers.
type State struct {
	Exists           bool // a finished data directory
	ClusterID        string
	DBID             int
	Host             string
	Running          bool
	PID              int
	InRecovery       bool
	Hung             bool
	Timeline         int
	InsertLSN        uint64
	FlushLSN         uint64
	Upstream         string   // configured upstream address:port
	Streaming        bool     // connected to its upstream
	SyncStandbyNames []string // in effect if running, else as configured
	ReadOnly         bool
	CheckpointLSN    uint64
	CleanShutdown    bool
	// FencedAt: when the running server last took a fence (commits wait,
	// new transactions read-only), on the wall clock; zero if none since
	// its last unfence.
	FencedAt time.Time
}

// State reads the instance at address:port.
func (w *World) State(address string, port int) State {
	in := w.get(address, port)
	defer w.lockOne(in).unlock()
	names, ro := in.confSyncNames, in.confReadOnly
	if in.running {
		names, ro = in.syncNames, in.readOnly
	}
	return State{
		Exists: in.dir == dirOurs, ClusterID: in.clusterID, DBID: in.dbid, Host: in.host,
		Running: in.running, PID: in.pid, InRecovery: in.running && in.inRecovery, Hung: in.hung,
		Timeline: in.tli, InsertLSN: in.insertLSN(), FlushLSN: in.flushLSN(),
		Upstream: in.upKey, Streaming: in.connected != "",
		SyncStandbyNames: slices.Clone(names), ReadOnly: ro,
		CheckpointLSN: in.ckptLSN, CleanShutdown: in.shutdown == shutDown,
		FencedAt: in.fencedAt,
	}
}

// WAL returns a copy of the instance's WAL records, flushed or not.
func (w *World) WAL(address string, port int) []Record {
	in := w.get(address, port)
	defer w.lockOne(in).unlock()
	return slices.Clone(in.wal)
}

// start runs in's postmaster: a standby (standby.signal) in recovery,
// streaming from its upstream; a primary after crash recovery, which
// keeps every flushed record, commits never acknowledged included.
func (w *World) start(in *instance) {
	in.running, in.pid, in.hung = true, int(w.nextPID.Add(1)), false
	in.runGen++
	in.inRecovery = in.standby
	in.shutdown = inProduction
	in.released = in.insertLSN() // nothing waits across a restart
	in.bump()
	if in.inRecovery {
		go w.receive(in, in.runGen)
	}
}

// stop is a clean (fast) shutdown. A primary writes its shutdown
// checkpoint and its walsenders send every record to the standbys
// streaming from it before it exits; waiting commits end undecided.
func (w *World) stop(in *instance) {
	if !in.running {
		return
	}
	if in.inRecovery {
		in.shutdown = shutDownRecovery
		in.ckptLSN = lastCheckpoint(in.wal, in.flushN)
	} else {
		r := w.appendRecord(in, KindCheckpoint, 0)
		in.flushN = len(in.wal)
		for _, d := range in.downstream {
			if d.hung || d.stalled || !d.running {
				continue
			}
			d.wal = append(d.wal, in.wal[len(d.wal):]...)
			d.flushN, d.caughtUp, d.tli = len(d.wal), true, in.tli
			d.replyTime = time.Now()
		}
		w.recomputeSync(in)
		in.shutdown, in.ckptLSN = shutDown, r.LSN
	}
	w.down(in)
}

// crash kills in's postmaster: what was not flushed is lost, and the host's
// driver hears of it if it tracks the instance.
func (w *World) crash(in *instance) {
	if !in.running {
		return
	}
	in.wal = in.wal[:in.flushN]
	in.shutdown = inProduction
	if h := w.host(in.host); h != nil {
		h.exited(in)
	}
	w.down(in)
}

// down ends in's run, and every replication connection from and to it.
func (w *World) down(in *instance) {
	in.running, in.hung, in.pid = false, false, 0
	in.runGen++
	w.disconnect(in)
	for _, d := range in.downstream {
		d.connected = ""
		d.bump()
	}
	clear(in.downstream)
	in.bump()
}

// Tool names a step FailNext can make fail.
type Tool string

const (
	ToolRewind  Tool = "pg_rewind"
	ToolCopy    Tool = "copy" // CreateMirror's copy
	ToolStart   Tool = "start"
	ToolPromote Tool = "promote"
	// ToolPromoteCrash: the postmaster crashes as pg_promote is called,
	// before the promotion: it stays a standby.
	ToolPromoteCrash Tool = "promote-crash"
)

// ErrInjected is the error of a step made to fail by FailNext.
var ErrInjected = errors.New("simpg: injected failure")

// ErrHostDown is returned by every call of a killed (or replaced) host
// driver.
var ErrHostDown = errors.New("simpg: host is down")

// FailNext makes the next use of tool on the instance at address:port
// fail with ErrInjected ("" and 0: on any instance).
func (w *World) FailNext(address string, port int, tool Tool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	k := ""
	if address != "" || port != 0 {
		k = instanceKey(address, port)
	}
	if w.failNext[k] == nil {
		w.failNext[k] = map[Tool]int{}
	}
	w.failNext[k][tool]++
}

// injected consumes a FailNext for tool on in, if one is set.
func (w *World) injected(in *instance, tool Tool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range []string{in.key, ""} {
		if w.failNext[k][tool] > 0 {
			w.failNext[k][tool]--
			return fmt.Errorf("%s on %s: %w", tool, in.key, ErrInjected)
		}
	}
	return nil
}
