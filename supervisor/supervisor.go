// Package supervisor manages the PostgreSQL instances on the local host:
// it creates them (initdb; a parallel copy of a primary's files, or
// pg_basebackup), owns their configuration, starts, adopts and stops their
// postmasters as an unprivileged OS user, sees a postmaster exit the moment
// it happens, and probes their health with pgx.
//
// It holds no cluster state of its own. Everything it needs to find an
// instance again after an agent restart is on disk, in the instance's data
// directory: the marker file (gpagent.id), the managed configuration
// (gpagent.conf) and PostgreSQL's own postmaster.pid.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/gpagent/gpagent/topology"
)

// DefaultBinDir is where Debian's postgresql-15 package puts the server.
const DefaultBinDir = "/usr/lib/postgresql/15/bin"

// Config says how to run PostgreSQL on this host.
type Config struct {
	BinDir        string // dir with initdb, postgres, pg_basebackup, pg_rewind; "" = DefaultBinDir
	OSUser        string // OS user that runs postgres; "" = current user, or "postgres" when running as root
	SuperUser     string // database superuser created by initdb
	SuperPassword string
	ReplUser      string // replication role (LOGIN REPLICATION)
	ReplPassword  string
	ProbeTimeout  time.Duration // default 2s
	WalKeepSize   string        // default "1GB"
	Logger        *slog.Logger  // nil discards
}

// Instance is one local PostgreSQL server, as the topology places it.
type Instance struct {
	DBID, Content int
	Address       string // listen address and the address others connect to
	Port          int
	DataDir       string
}

func (i Instance) String() string {
	return fmt.Sprintf("dbid %d (%s:%d %s)", i.DBID, i.Address, i.Port, i.DataDir)
}

// Upstream names the primary a mirror streams from.
type Upstream struct {
	Address string
	Port    int
	// Files, if set, reads the primary's data directory through its
	// agent: a new mirror is then copied file by file in parallel, and
	// pg_basebackup is used only where that cannot be done.
	Files FileSource
}

// Supervisor manages the local instances. Its methods are safe for
// concurrent use; operations on the same instance (same dbid) are
// serialized so that, say, a Start racing a Stop cannot leave a second
// postmaster behind.
type Supervisor struct {
	cfg  Config
	bins map[string]string // tool name -> absolute path
	user osUser
	log  *slog.Logger

	// noSync skips the fsync of a new data directory by initdb and
	// after pg_basebackup. Only tests set it, to keep their run time off the
	// disk's flush latency; a crash could corrupt an unsynced instance.
	noSync bool
	// extraBackupArgs are added to pg_basebackup's arguments; tests slow
	// it down with them to cancel a backup midway.
	extraBackupArgs []string

	exits  chan int
	closed chan struct{}
	once   sync.Once

	probes probeConns

	mu    sync.Mutex
	procs map[int]*proc         // tracked postmasters by dbid
	locks map[int]chan struct{} // per-dbid operation locks
}

// tools are the binaries the supervisor runs; New checks them all, so a
// broken installation is reported at agent start, not at the first
// failover.
var tools = []string{"initdb", "postgres", "pg_basebackup", "pg_rewind", "pg_controldata"}

// roleName is what the supervisor accepts as a role name: it is written
// into pg_hba.conf and connection strings, so it is kept to plain
// identifiers rather than quoted everywhere.
var roleName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

var walSize = regexp.MustCompile(`^[0-9]+ ?(kB|MB|GB|TB)?$`)

// New checks the installation and the OS user and returns a Supervisor.
// It starts nothing.
func New(cfg Config) (*Supervisor, error) {
	if cfg.BinDir == "" {
		cfg.BinDir = DefaultBinDir
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = 2 * time.Second
	}
	if cfg.WalKeepSize == "" {
		cfg.WalKeepSize = "1GB"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if !walSize.MatchString(cfg.WalKeepSize) {
		return nil, fmt.Errorf("wal_keep_size %q: want a size such as 1GB", cfg.WalKeepSize)
	}
	for _, r := range []struct{ what, name, pw string }{
		{"superuser", cfg.SuperUser, cfg.SuperPassword},
		{"replication user", cfg.ReplUser, cfg.ReplPassword},
	} {
		if !roleName.MatchString(r.name) {
			return nil, fmt.Errorf("%s name %q: want letters, digits and underscores", r.what, r.name)
		}
		// A password must fit on one line of the files it is written to.
		if r.pw == "" || strings.ContainsAny(r.pw, "\n\r\x00") {
			return nil, fmt.Errorf("%s %s: password must be set and be one line", r.what, r.name)
		}
	}
	if cfg.SuperUser == cfg.ReplUser {
		return nil, fmt.Errorf("superuser and replication user must differ (both %q)", cfg.SuperUser)
	}

	bins := map[string]string{}
	for _, t := range tools {
		p := filepath.Join(cfg.BinDir, t)
		fi, err := os.Stat(p)
		switch {
		case err != nil:
			return nil, fmt.Errorf("PostgreSQL binaries not found: %s: %w", p, errors.Unwrap(err))
		case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
			return nil, fmt.Errorf("PostgreSQL binaries not found: %s is not an executable file", p)
		}
		bins[t] = p
	}
	u, err := resolveUser(cfg.OSUser)
	if err != nil {
		return nil, err
	}
	return &Supervisor{
		cfg:    cfg,
		bins:   bins,
		user:   u,
		log:    cfg.Logger,
		exits:  make(chan int, 64),
		closed: make(chan struct{}),
		procs:  map[int]*proc{},
		locks:  map[int]chan struct{}{},
	}, nil
}

// Close stops the supervisor's background watchers. The postmasters keep
// running: they outlive the agent by design.
func (s *Supervisor) Close() {
	s.once.Do(func() { close(s.closed) })
}

// OSUser names the OS user the instances run as.
func (s *Supervisor) OSUser() string { return s.user.name }

// Exits delivers the dbid of a tracked postmaster the moment it exits,
// except for exits the supervisor caused itself through Stop: those are
// not news to the caller, and reporting them would look like a crash.
// The channel is buffered; when it is full an exit is dropped rather than
// blocking the watcher (the next probe sees the instance down anyway).
func (s *Supervisor) Exits() <-chan int { return s.exits }

// AppName is the application_name a mirror streams under, the name its
// primary's synchronous_standby_names refers to (topology.AppName, which
// callers outside the supervisor use).
func AppName(dbid int) string { return topology.AppName(dbid) }

// SlotName is the physical replication slot a mirror streams from.
func SlotName(dbid int) string { return fmt.Sprintf("gpagent_dbid%d", dbid) }

// ConnString is the DSN the agent uses to reach inst: TCP only (the
// instances have no Unix sockets), as the superuser. TLS is off because the
// supervisor never configures it; SCRAM keeps the password off the wire.
func (s *Supervisor) ConnString(inst Instance) string {
	return connString(inst.Address, inst.Port, s.cfg.SuperUser, s.cfg.SuperPassword,
		"dbname", "postgres", "sslmode", "disable", "application_name", "gpagent")
}

// connString builds a libpq keyword/value string with every value quoted,
// so passwords with spaces or quotes survive.
func connString(host string, port int, user, password string, kv ...string) string {
	parts := []string{
		"host=" + connQuote(host),
		fmt.Sprintf("port=%d", port),
		"user=" + connQuote(user),
	}
	if password != "" {
		parts = append(parts, "password="+connQuote(password))
	}
	for i := 0; i+1 < len(kv); i += 2 {
		parts = append(parts, kv[i]+"="+connQuote(kv[i+1]))
	}
	return strings.Join(parts, " ")
}

func connQuote(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// validate rejects an Instance the supervisor could not manage safely.
func (i Instance) validate() error {
	switch {
	case i.DBID <= 0:
		return fmt.Errorf("instance dbid %d: must be positive", i.DBID)
	case i.Address == "":
		return fmt.Errorf("%s: address is empty", i)
	case i.Port <= 0 || i.Port > 65535:
		return fmt.Errorf("%s: port out of range", i)
	case !filepath.IsAbs(i.DataDir) || filepath.Clean(i.DataDir) != i.DataDir || i.DataDir == "/":
		return fmt.Errorf("%s: datadir must be a clean absolute path", i)
	}
	return nil
}

// lockInstance is the prologue of every operation on one instance:
// check inst, then take its lock. The caller defers unlock.
func (s *Supervisor) lockInstance(ctx context.Context, inst Instance) (unlock func(), err error) {
	if err := inst.validate(); err != nil {
		return nil, err
	}
	return s.lock(ctx, inst.DBID)
}

// lockConf is lockInstance followed by reading inst's managed
// configuration, the prologue of every change to it; op names the
// operation in the error ("fence" gives "fence dbid 2 (...): ..."). The
// caller defers unlock, and holds the lock until it has written c back.
func (s *Supervisor) lockConf(ctx context.Context, inst Instance, op string) (c managedConf, unlock func(), err error) {
	unlock, err = s.lockInstance(ctx, inst)
	if err != nil {
		return managedConf{}, nil, err
	}
	c, err = s.readManagedConf(inst.DataDir)
	if err != nil {
		unlock()
		return managedConf{}, nil, fmt.Errorf("%s %s: %w", op, inst, err)
	}
	return c, unlock, nil
}

// lock serializes operations on one instance. Waiting for it honours ctx:
// a Stop must not hang behind a base backup its caller has given up on.
func (s *Supervisor) lock(ctx context.Context, dbid int) (unlock func(), err error) {
	s.mu.Lock()
	ch, ok := s.locks[dbid]
	if !ok {
		ch = make(chan struct{}, 1)
		s.locks[dbid] = ch
	}
	s.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("dbid %d: waiting for another operation on it: %w", dbid, ctx.Err())
	}
}
