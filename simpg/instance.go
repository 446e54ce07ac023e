package simpg

import (
	"strconv"
	"sync"
	"time"
)

// Record is one WAL record. LSN is the position just past it, the
// position a standby must have flushed for the record to be safe there.
type Record struct {
	ID     uint64 // unique in the World: equal IDs are the same record
	LSN    uint64
	Commit uint64 // the commit id of a transaction's commit record; 0 otherwise
	Kind   RecordKind
}

// RecordKind says what a WAL record is.
type RecordKind uint8

const (
	KindCommit     RecordKind = iota
	KindCheckpoint            // initdb's, or a clean shutdown's
	KindPromotion             // the end of recovery on a new timeline
)

// recordSize is how far each record moves the LSN; walStart is where a new
// instance's WAL begins (0/1000000, as after initdb).
const (
	recordSize = 0x80
	walStart   = 0x1000000
)

// dirState is what an instance's data directory holds.
type dirState uint8

const (
	dirAbsent  dirState = iota
	dirPartial          // an unfinished creation (the copy was cut short)
	dirOurs             // a finished instance of clusterID / dbid
)

// shutdownState is the control file's "Database cluster state".
type shutdownState uint8

const (
	inProduction     shutdownState = iota // running, or crashed
	shutDown                              // a primary's clean shutdown
	shutDownRecovery                      // a standby's clean shutdown
)

// instance is one simulated PostgreSQL server at address:port. Its record
// lives for the whole World (a Destroy empties it), so channels taken from
// it stay valid. Every field but the first three is guarded by mu (see
// locks.go).
type instance struct {
	key     string // address:port
	address string
	port    int

	mu sync.Mutex

	// On disk.
	dir           dirState
	dataDir       string
	clusterID     string
	dbid          int
	host          string // the host that created it
	wal           []Record
	flushN        int // records [0, flushN) are durable
	tli           int
	standby       bool     // standby.signal
	upKey         string   // primary_conninfo: address:port of the upstream
	confSyncNames []string // synchronous_standby_names in gpagent.conf
	confReadOnly  bool     // default_transaction_read_only in gpagent.conf
	ckptLSN       uint64
	shutdown      shutdownState

	// Running.
	running    bool
	pid        int
	runGen     uint64 // raised at every start and stop: waiters of an earlier run give up
	inRecovery bool
	hung       bool
	stuckConf  bool          // a configuration reload never completes (a stuck backend)
	stalled    bool          // its replication link (as a standby) makes no progress
	slowDisk   time.Duration // added to every flush
	connected  string        // key of the upstream it streams from; "" if none
	caughtUp   bool          // has reached the upstream's flush once since connecting (streaming, not catchup)
	replyTime  time.Time
	downstream map[string]*instance // standbys streaming from it
	released   uint64               // commits up to here need no more waiting (sync rep)
	syncNames  []string             // synchronous_standby_names in effect
	readOnly   bool                 // default_transaction_read_only in effect
	fencedAt   time.Time            // when a fence last took effect (zero: unfenced since)

	changed chan struct{} // closed and replaced on every change
}

func instanceKey(address string, port int) string {
	return address + ":" + strconv.Itoa(port)
}

// bump wakes everything waiting on a change of in.
func (in *instance) bump() {
	close(in.changed)
	in.changed = make(chan struct{})
}

func (in *instance) flushLSN() uint64 {
	if in.flushN == 0 {
		return 0
	}
	return in.wal[in.flushN-1].LSN
}

func (in *instance) insertLSN() uint64 {
	if len(in.wal) == 0 {
		return 0
	}
	return in.wal[len(in.wal)-1].LSN
}

// appendRecord adds a record after the last one.
func (w *World) appendRecord(in *instance, kind RecordKind, commit uint64) Record {
	r := Record{ID: w.nextRecord.Add(1), LSN: in.insertLSN() + recordSize, Commit: commit, Kind: kind}
	if len(in.wal) == 0 {
		r.LSN = walStart
	}
	in.wal = append(in.wal, r)
	return r
}

// commonPrefix is how many leading records a and b share.
func commonPrefix(a, b []Record) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i].ID != b[i].ID {
			return i
		}
	}
	return n
}

// lastCheckpoint is the LSN of the last checkpoint record in wal[:n].
func lastCheckpoint(wal []Record, n int) uint64 {
	for i := n - 1; i >= 0; i-- {
		if wal[i].Kind == KindCheckpoint {
			return wal[i].LSN
		}
	}
	return 0
}
