package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/consensus"
	"github.com/gpagent/gpagent/membership"
	"github.com/gpagent/gpagent/supervisor"
	"github.com/gpagent/gpagent/topology"
)

// Agent is one gpagent daemon: the host's member of the Raft cluster, the
// supervisor of its PostgreSQL instances and an HTTP API endpoint.
type Agent struct {
	cfg *Config
	log *slog.Logger
	// node is the Raft member (a server) or the client's view fed by
	// blocking queries (cfg.Client).
	node  clusterNode
	drv   Driver
	clock Clock
	net   Network
	exec  *executor
	lead  *leader
	lease *lease
	// fenceMu orders the fence watch's fencing and the lifting of the
	// fence flag on a renewal (manageSync, which unfences an instance,
	// checks the fence epoch instead of holding it: see there).
	fenceMu sync.Mutex
	mesh    *membership.Membership
	// meshEvents receives gossip membership changes (openMesh).
	meshEvents chan membership.Event
	tls        *tlsConfigs // nil: plain TCP and HTTP
	// reload: the file to re-read and the runtime config (reload.go).
	reload reloadState
	// counts: events counted for /metrics (metrics.go).
	counts eventCounts

	apiListener net.Listener
	server      *http.Server

	// API clients of other agents, by address (peerClient), and the
	// transport of forwarded requests (TLS only).
	peersMu sync.Mutex
	peers   map[string]*api.Client
	fwd     *http.Transport

	// The health report last gossiped (mesh loop only).
	healthSent []byte

	// Dead members to dial again, with backoff (mesh.go's rejoinDead),
	// and whether a dial is under way.
	rejoin     rejoiner
	rejoinBusy atomic.Bool
	// The gossip peers last written to PeersFile (mesh loop only).
	peersSaved []string
	// topoCache: the last answer to the clients' topology query.
	topoCache topologyCache
	// stateCache: the last state answer without reports.
	stateCache stateCache
	// topoIndex: the index of the topology last looked up (indexed).
	topoIndex struct {
		mu sync.Mutex
		x  *topology.Index
	}
}

// APIAddrFile is written into the data dir with the API's bound address,
// so a launcher that asked for port 0 can find the agent.
const APIAddrFile = "api.addr"

// Deps are what an agent is handed rather than builds: the in-process
// tests give several agents in one process a simulated driver, a clock
// that can jump and a network they can cut. A nil field gets the real
// thing: the supervisor of cfg's PostgreSQL, the system clock, TCP.
type Deps struct {
	Logger  *slog.Logger
	Driver  Driver
	Clock   Clock
	Network Network
}

// New builds an agent on the real parts: it checks the PostgreSQL binaries
// and OS user, opens the Raft state and binds the API listener. Nothing
// runs until Run.
func New(cfg *Config, log *slog.Logger) (*Agent, error) {
	return NewWith(cfg, Deps{Logger: log})
}

// NewWith builds an agent on the given parts, the real ones where nil.
func NewWith(cfg *Config, deps Deps) (*Agent, error) {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("agent", cfg.Name)
	if err := checkSecure(cfg, log); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir %s: %w", cfg.DataDir, err)
	}
	drv := deps.Driver
	if drv == nil {
		sup, err := supervisor.New(supervisor.Config{
			BinDir:        cfg.BinDir,
			OSUser:        cfg.OSUser,
			SuperUser:     cfg.SuperUser,
			SuperPassword: cfg.SuperPassword,
			ReplUser:      cfg.ReplUser,
			ReplPassword:  cfg.ReplPassword,
			ProbeTimeout:  cfg.ProbeTimeout,
			WalKeepSize:   cfg.WalKeepSize,
			Logger:        log.With("component", "supervisor"),
		})
		if err != nil {
			return nil, err
		}
		drv = sup
	}
	clock := deps.Clock
	if clock == nil {
		clock = SystemClock{}
	}
	network := deps.Network
	if network == nil {
		network = tcpNetwork{}
	}
	var tlsc *tlsConfigs
	var err error
	if cfg.TLSCAFile != "" {
		if tlsc, err = loadTLS(cfg.Name, cfg.TLSCAFile, cfg.TLSCertFile, cfg.TLSKeyFile); err != nil {
			return nil, err
		}
	}
	ln, err := network.Listen(cfg.APIAddr)
	if err != nil {
		return nil, fmt.Errorf("api_addr %s: %w", cfg.APIAddr, err)
	}
	ccfg := consensus.Config{
		NodeID:            cfg.Name,
		DataDir:           cfg.DataDir,
		BindAddr:          cfg.RaftAddr,
		Bootstrap:         cfg.Bootstrap,
		Logger:            log,
		SnapshotThreshold: cfg.RaftSnapshotThreshold,
		SnapshotInterval:  cfg.RaftSnapshotInterval,
	}
	if deps.Network != nil {
		if ccfg.Listener, err = network.ListenRaft(cfg.RaftAddr); err != nil {
			ln.Close()
			return nil, fmt.Errorf("raft_addr %s: %w", cfg.RaftAddr, err)
		}
		ccfg.Dial = func(addr string, timeout time.Duration) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			return network.DialContext(ctx, "tcp", addr)
		}
	}
	if tlsc != nil {
		ccfg.TLS = tlsc.raft
		ln = tls.NewListener(ln, tlsc.server)
	} else if cfg.Token != "" {
		// Without TLS, Raft peers prove they hold the cluster token
		// (consensus/secret.go): the port takes no one else.
		ccfg.Secret = []byte(cfg.Token)
	}
	// Before Raft and gossip start: they emit through go-metrics' global.
	if _, err := goMetricsSink(); err != nil {
		log.Warn("raft and memberlist metrics are not collected", "err", err)
	}
	var node clusterNode
	if cfg.Client {
		// No Raft at all: not even a listener on raft_addr.
		if ccfg.Listener != nil {
			ccfg.Listener.Close()
		}
		_, statErr := os.Stat(filepath.Join(cfg.DataDir, PeersFile))
		node = newClientNode(statErr == nil)
	} else if node, err = consensus.Open(ccfg); err != nil {
		ln.Close()
		if ccfg.Listener != nil {
			ccfg.Listener.Close()
		}
		if errors.Is(err, consensus.ErrStateUnreadable) {
			// The agent cannot run, and its postmasters would run on
			// unsupervised: fence the primaries it last knew of first.
			n, ferr := fenceRecordedPrimaries(cfg.DataDir, drv, log)
			if ferr != nil {
				return nil, fmt.Errorf("data_dir %s: %w; and the local primaries could not all be fenced: %w", cfg.DataDir, err, ferr)
			}
			return nil, fmt.Errorf("data_dir %s: %w; %d local primaries (from %s) fenced; move %s away to rejoin as a fresh member",
				cfg.DataDir, err, n, instancesFile, filepath.Join(cfg.DataDir, "raft"))
		}
		return nil, fmt.Errorf("raft_addr %s: %w", cfg.RaftAddr, err)
	}
	a := &Agent{cfg: cfg, log: log, node: node, drv: drv, clock: clock, net: network, apiListener: ln, tls: tlsc}
	a.lease = newLease(cfg.DataDir, clock.Now(), log)
	a.lease.recordGap = recordGap(cfg.Lease)
	a.lead = newLeader(a)
	a.exec = newExecutor(a)
	var gossip memberlist.NodeAwareTransport
	if deps.Network != nil {
		if gossip, err = a.gossipTransport(); err != nil {
			ln.Close()
			node.Close()
			return nil, err
		}
	}
	if err := a.openMesh(gossip); err != nil {
		ln.Close()
		node.Close()
		return nil, err
	}
	a.server = newAPIServer(a.routes(), defaultServerTimeouts)
	return a, nil
}

// APIAddr is the address the API listens on.
func (a *Agent) APIAddr() string { return a.apiListener.Addr().String() }

// Run serves until ctx ends, then shuts down: the API first, then the
// loops, then (only if configured, as the demo does) the instances, and
// last the Raft node.
func (a *Agent) Run(ctx context.Context) error {
	addrFile := filepath.Join(a.cfg.DataDir, APIAddrFile)
	if err := os.WriteFile(addrFile, []byte(a.APIAddr()+"\n"), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", addrFile, err)
	}
	a.log.Info("agent started", "api", a.APIAddr(), "raft", a.node.Addr(), "gossip", a.mesh.LocalAddr(), "data_dir", a.cfg.DataDir)

	loopCtx, stopLoops := context.WithCancel(ctx)
	var wg sync.WaitGroup
	serveErr := make(chan error, 1)
	wg.Go(func() { a.lead.run(loopCtx) })
	wg.Go(func() { a.exec.run(loopCtx) })
	wg.Go(func() { a.watchFence(loopCtx) })
	wg.Go(func() { a.runMesh(loopCtx) })
	wg.Go(func() { a.runCatalog(loopCtx) })
	if c, ok := a.node.(*clientNode); ok {
		wg.Go(func() { a.runClientWatch(loopCtx, c) })
	}
	go func() { serveErr <- a.server.Serve(a.apiListener) }()

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("api server: %w", err)
	}
	a.log.Info("agent stopping")
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = a.server.Shutdown(shutCtx)
	stopLoops()
	wg.Wait()
	if a.cfg.StopInstancesOnExit {
		a.exec.stopAll(30 * time.Second)
	}
	// A graceful leave tells the others at once that this host left on
	// purpose, rather than letting them wait to declare it dead.
	if err := a.mesh.Leave(2 * time.Second); err != nil {
		a.log.Warn("gossip leave", "err", err)
	}
	_ = a.mesh.Shutdown()
	if cerr := a.node.Close(); cerr != nil && err == nil {
		err = cerr
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// localInstance turns a topology segment into what the supervisor needs.
func localInstance(s topology.Segment) supervisor.Instance {
	return supervisor.Instance{DBID: s.DBID, Content: s.Content, Address: s.Address, Port: s.Port, DataDir: s.DataDir}
}

// indexed returns an index of t, a committed topology (never changed
// after its commit): one per version, shared by the report handler and
// the members list.
func (a *Agent) indexed(t *topology.Topology) *topology.Index {
	a.topoIndex.mu.Lock()
	defer a.topoIndex.mu.Unlock()
	if x := a.topoIndex.x; x != nil && x.Topology() == t {
		return x
	}
	x := topology.NewIndex(t)
	a.topoIndex.x = x
	return x
}
