package e2e

// The host harness of issue 4: every agent in its own network namespace
// (internal/netns: ip netns), the namespaces joined by veth pairs to one
// bridge in the root namespace, so a test can cut a host off from the
// other hosts with blackhole routes while the test process itself still
// reaches every host (through the bridge's own address, .254).

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/internal/netns"
	"github.com/gpagent/gpagent/topology"
)

const (
	netnsSuperUser     = netns.SuperUser
	netnsAgentStopWait = 60 * time.Second
)

// netnsSeq makes the names of each test's namespaces, bridge and subnet
// unique within this test process.
var netnsSeq atomic.Int32

// netnsHost is one simulated host: a namespace, its address, its agent.
type netnsHost struct {
	name string // mdw, sdw1, sdw2
	ns   string
	addr string // 10.213.X.k
	dir  string // DIR/<name>: agent.yaml, agent.log, agent.pid, agent/
	net  *netns.Host

	mu    sync.Mutex
	agent *netns.Agent
}

func (h *netnsHost) api() string { return netns.APIAddr(h.net) }

// netnsCluster is a running three-host cluster: mdw (coordinator), sdw1
// and sdw2 (one primary each, group mirrors on the other).
type netnsCluster struct {
	t       *testing.T
	dir     string
	net     *netns.Network
	files   *netns.Cluster
	hosts   []*netnsHost
	superPW string
}

// requireNetns fails (or, outside CI and not root, skips) a test that
// cannot create network namespaces.
func requireNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		why := fmt.Sprintf("netns tests need root to create network namespaces, veth pairs and a bridge (euid %d)", os.Geteuid())
		if os.Getenv("CI") == "" {
			t.Skip(why + "; skipped because CI is not set. CI runs as root and fails here instead.")
		}
		t.Fatal(why + "; CI must run them as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("netns tests need iproute2's `ip` on PATH: %v", err)
	}
	if _, err := os.Stat("/usr/lib/postgresql/15/bin/postgres"); err != nil {
		t.Fatalf("netns tests need PostgreSQL 15 at /usr/lib/postgresql/15/bin: %v", err)
	}
}

// startNetnsCluster builds the network, writes the configs, starts one
// agent per namespace, runs gpagent init and waits until every instance is
// up and every pair in sync. Cleanup undoes all of it, even on failure.
func startNetnsCluster(t *testing.T) *netnsCluster {
	t.Helper()
	requireNetns(t)
	t0 := time.Now()
	seq := int(netnsSeq.Add(1) - 1)
	c := &netnsCluster{t: t}

	dir, err := os.MkdirTemp("", "gpagent-netns-")
	if err != nil {
		t.Fatal(err)
	}
	// The instances run as the postgres OS user: it must reach the folder.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c.dir = dir

	// Registered first, so it runs last: the network and the folder go
	// only after every agent and postmaster is gone.
	t.Cleanup(func() {
		if c.net != nil {
			if err := c.net.Close(); err != nil {
				t.Logf("netns cleanup: %v", err)
			}
		}
		if t.Failed() {
			t.Logf("netns: kept %s for inspection (agent logs in <host>/agent.log)", dir)
		} else {
			os.RemoveAll(dir)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Build removes whatever an earlier run with this pid and sequence
	// left, then picks a free 10.213.X.0/24 from the seed on.
	c.net, err = netns.Build(ctx, netns.Options{
		Prefix: netns.Prefix("gpa", seq),
		Hosts:  []string{"mdw", "sdw1", "sdw2"},
		Seed:   os.Getpid() + 7*seq,
		Logf:   t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, nh := range c.net.Hosts {
		c.hosts = append(c.hosts, &netnsHost{name: nh.Name, ns: nh.NS, addr: nh.Addr, dir: filepath.Join(dir, nh.Name), net: nh})
	}
	if c.files, err = netns.WriteCluster(dir, c.net); err != nil {
		t.Fatal(err)
	}
	c.superPW = c.files.SuperPassword
	t.Cleanup(c.stopAgents)
	for _, h := range c.hosts {
		c.startAgent(h)
	}
	c.waitMesh(90 * time.Second)
	c.initCluster()
	t.Logf("netns: cluster up on %s.0/24 (namespaces %sh1..%d, bridge %s) in %s; files in %s",
		c.net.Subnet, c.net.Prefix, len(c.hosts), c.net.Bridge, time.Since(t0).Round(time.Millisecond), dir)
	return c
}

// startAgent runs `ip netns exec NS gpagent agent --config F`; ip execs
// the agent in place, so the child's pid is the agent's.
func (c *netnsCluster) startAgent(h *netnsHost) {
	a, err := c.files.StartAgent(binary, h.net)
	if a != nil {
		h.mu.Lock()
		h.agent = a
		h.mu.Unlock()
	}
	if err != nil {
		c.t.Fatal(err)
	}
}

func (h *netnsHost) exited() bool {
	h.mu.Lock()
	a := h.agent
	h.mu.Unlock()
	return a == nil || a.Exited()
}

// stopAgents is the cleanup: heal every cut, print the logs' ends if the
// test failed, SIGTERM every agent (each stops its instances), then kill
// whatever is left of the test's processes.
func (c *netnsCluster) stopAgents() {
	t := c.t
	for _, h := range c.hosts {
		c.heal(h.name)
	}
	if t.Failed() {
		t.Logf("agent logs (ends):\n%s", c.agentLogs(40))
	}
	var wg sync.WaitGroup
	for _, h := range c.hosts {
		h.mu.Lock()
		a := h.agent
		h.mu.Unlock()
		if a == nil {
			continue
		}
		wg.Go(func() {
			if err := a.Stop(netnsAgentStopWait); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := netns.KillProcessesUnder(c.dir); n > 0 {
		t.Logf("netns cleanup: killed %d processes left under %s", n, c.dir)
	}
}

// agentLogNoise matches the lines a cut makes every agent repeat several
// times a second (failed sends, elections that cannot win): left out of
// the log ends a failure prints, not out of the files.
var agentLogNoise = []string{
	"Failed to send gossip", "Failed to send UDP", "Failed to send indirect", "Failed to send TCP",
	"failed to appendEntries", "failed to heartbeat", "failed to make requestVote",
	"pre-vote campaign failed", "Election timeout reached", "entering candidate state", "failed to contact",
	"Suspect ", "failed to pipeline",
}

// agentLogs is the last n lines of every host's agent.log, without the
// repeated noise of a cut.
func (c *netnsCluster) agentLogs(n int) string {
	var out []string
	for _, h := range c.hosts {
		b, _ := os.ReadFile(filepath.Join(h.dir, "agent.log"))
		var keep []string
		for _, line := range strings.Split(string(b), "\n") {
			noise := false
			for _, s := range agentLogNoise {
				if strings.Contains(line, s) {
					noise = true
					break
				}
			}
			if !noise {
				keep = append(keep, line)
			}
		}
		out = append(out, "--- "+h.name+" ("+h.ns+", "+h.addr+"), "+filepath.Join(h.dir, "agent.log")+":",
			lastLines(strings.Join(keep, "\n"), n))
	}
	return strings.Join(out, "\n")
}

func (c *netnsCluster) host(name string) *netnsHost {
	for _, h := range c.hosts {
		if h.name == name {
			return h
		}
	}
	c.t.Fatalf("netns: no host %q", name)
	return nil
}

// view is the cluster seen through one host's API, as the demo type the
// other e2e helpers take (state, gpagent, writers, waitFailedOver...).
func (c *netnsCluster) view(host string) *demo {
	return &demo{t: c.t, dir: c.dir, addr: c.host(host).api()}
}

func (c *netnsCluster) client(host string) *api.Client { return newClient(c.host(host).api()) }

// stateOf asks one host's API for the state, with a bound.
func (c *netnsCluster) stateOf(host string, timeout time.Duration) (*api.State, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.client(host).State(ctx)
}

func (c *netnsCluster) checkAgentsRunning() {
	c.t.Helper()
	for _, h := range c.hosts {
		if h.exited() {
			c.t.Fatalf("agent %s exited:\n%s", h.name, c.agentLogs(40))
		}
	}
}

// waitMesh waits until a leader is elected and every agent is alive in
// gossip and a Raft member.
func (c *netnsCluster) waitMesh(timeout time.Duration) {
	c.t.Helper()
	waitUntil(c.t, timeout, "every agent alive in gossip and a Raft member, a leader elected", func() (bool, string) {
		c.checkAgentsRunning()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cl := c.client(c.hosts[0].name)
		s, err := cl.State(ctx)
		if err != nil {
			return false, err.Error()
		}
		if s.Leader == "" {
			return false, "no leader yet"
		}
		m, err := cl.Members(ctx)
		if err != nil {
			return false, err.Error()
		}
		alive, inRaft := 0, 0
		for _, x := range m.Members {
			if x.Status == "alive" {
				alive++
			}
			if x.RaftRole != "none" && x.RaftRole != "" {
				inRaft++
			}
		}
		return alive == len(c.hosts) && inRaft == len(c.hosts), fmt.Sprintf("leader %s, %d alive, %d in Raft", s.Leader, alive, inRaft)
	})
}

// initCluster runs gpagent init against mdw, then waits until every
// instance is reported up by its agent and every pair is in sync.
func (c *netnsCluster) initCluster() {
	t := c.t
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "init", "--config", filepath.Join(c.dir, "cluster.yaml"), "--addr", c.hosts[0].api())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("gpagent init: %v\n%s\nagent logs:\n%s", err, lastLines(out.String(), 30), c.agentLogs(40))
	}
	c.waitHealthy(c.hosts[0].name, 2*time.Minute)
}

// waitHealthy waits until, seen from host's API, every instance is
// recorded up, every pair in sync, and every instance freshly reported up
// by its own agent.
func (c *netnsCluster) waitHealthy(host string, timeout time.Duration) {
	c.t.Helper()
	waitUntil(c.t, timeout, "every instance up and reported, every pair in sync", func() (bool, string) {
		c.checkAgentsRunning()
		s, err := c.stateOf(host, 10*time.Second)
		if err != nil {
			return false, err.Error()
		}
		if s.Stale {
			return false, "state is stale"
		}
		return healthy(s)
	})
}

func healthy(s *api.State) (bool, string) {
	mirrored := map[int]bool{}
	for _, seg := range s.Segments {
		if seg.Role == topology.RoleMirror {
			mirrored[seg.Content] = true
		}
	}
	for _, seg := range s.Segments {
		if seg.Status != topology.StatusUp || (mirrored[seg.Content] && seg.Mode != topology.ModeSynced) {
			return false, fmt.Sprintf("%s: status %s mode %s", seg, seg.Status, seg.Mode)
		}
		r, ok := report(*s, seg.DBID)
		if !ok || !r.Up || time.Since(r.Seen) > 5*time.Second {
			return false, fmt.Sprintf("%s: report %+v", seg, r)
		}
	}
	return len(s.Segments) > 0, fmt.Sprintf("%d segments", len(s.Segments))
}

// partition cuts host off from the other hosts, not from the test
// process (see netns.Network.Partition). It returns when the routes are
// in place.
func (c *netnsCluster) partition(name string) time.Time {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.net.Partition(ctx, name); err != nil {
		c.t.Fatal(err)
	}
	return time.Now()
}

// heal removes the routes partition added for host.
func (c *netnsCluster) heal(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.net.Heal(ctx, name); err != nil {
		c.t.Error(err)
	}
}

// segDSN is a direct connection to one instance, short timeouts.
func (c *netnsCluster) segDSN(seg topology.Segment, extra string) string {
	return fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=postgres sslmode=disable connect_timeout=1 %s",
		seg.Address, seg.Port, netnsSuperUser, c.superPW, extra)
}

// startWriterTable is startWriter with a table of its own, for a second
// client of the same content (ids start at 1 again).
func (c *netnsCluster) startWriterTable(d *demo, content int, table string) *writer {
	c.t.Helper()
	connstr := strings.TrimSpace(d.mustGpagent("connstr", "--content", fmt.Sprint(content)))
	w := &writer{t: c.t, connstr: connstr + " passfile=" + filepath.Join(c.dir, "pgpass"),
		table: table, stop: make(chan struct{}), done: make(chan struct{})}
	var conn *pgx.Conn
	waitUntil(c.t, 20*time.Second, "writer "+table+" connects", func() (bool, string) {
		conn = w.connect()
		return conn != nil, fmt.Sprint(w.lastErr)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+table+" (id bigint primary key)"); err != nil {
		c.t.Fatalf("create %s: %v", table, err)
	}
	go w.run(conn)
	c.t.Cleanup(w.halt)
	return w
}

// writeWatcher looks for split brain: every ~100 ms it tries one short
// autocommit INSERT on both instances of each watched content at once.
// An instance is writable in a round when that commit is acknowledged
// within the probe's bound: a fenced primary still answers false to
// pg_is_in_recovery() but acknowledges no commit, a mirror refuses the
// INSERT. Two acknowledged commits for one content in one round is two
// writable primaries at the same moment (safety rule 1).
type writeWatcher struct {
	c     *netnsCluster
	pairs map[int][2]topology.Segment

	stop chan struct{}
	done chan struct{}
	kill sync.WaitGroup // terminations of probe backends stuck in a commit

	mu       sync.Mutex
	rounds   int
	writable map[int]int // dbid -> rounds it was writable
	splits   []string
}

const (
	watchTable       = "netns_write_probe"
	watchInterval    = 100 * time.Millisecond
	watchCommitBound = 700 * time.Millisecond
)

// watchWrites starts the watcher on the given contents (each a primary
// and a mirror in s).
func (c *netnsCluster) watchWrites(s api.State, contents ...int) *writeWatcher {
	c.t.Helper()
	w := &writeWatcher{c: c, pairs: map[int][2]topology.Segment{}, stop: make(chan struct{}), done: make(chan struct{}), writable: map[int]int{}}
	for _, content := range contents {
		p, m := pair(c.t, s, content)
		w.pairs[content] = [2]topology.Segment{p, m}
		// On the primary; it reaches the mirror by replication.
		execSQL(c.t, netnsSuperUser, c.superPW, p, "CREATE TABLE IF NOT EXISTS "+watchTable+" (at timestamptz)")
	}
	go w.run()
	c.t.Cleanup(w.halt)
	return w
}

func (w *writeWatcher) run() {
	defer close(w.done)
	conns := map[int]*pgx.Conn{} // dbid -> a reused session
	defer func() {
		for _, conn := range conns {
			conn.Close(context.Background())
		}
	}()
	var connsMu sync.Mutex
	tick := time.NewTicker(watchInterval)
	defer tick.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-tick.C:
		}
		var wg sync.WaitGroup
		results := map[int][2]bool{}
		var resMu sync.Mutex
		for content, pr := range w.pairs {
			for i, seg := range pr {
				wg.Go(func() {
					connsMu.Lock()
					conn := conns[seg.DBID]
					delete(conns, seg.DBID)
					connsMu.Unlock()
					ok, conn := w.probe(seg, conn)
					connsMu.Lock()
					if conn != nil {
						conns[seg.DBID] = conn
					}
					connsMu.Unlock()
					resMu.Lock()
					r := results[content]
					r[i] = ok
					results[content] = r
					resMu.Unlock()
				})
			}
		}
		wg.Wait()
		now := time.Now()
		w.mu.Lock()
		w.rounds++
		for content, r := range results {
			pr := w.pairs[content]
			for i := range 2 {
				if r[i] {
					w.writable[pr[i].DBID]++
				}
			}
			if r[0] && r[1] {
				w.splits = append(w.splits, fmt.Sprintf("%s: content %d: dbid %d and dbid %d both acknowledged a commit",
					now.Format(time.TimeOnly+".000"), content, pr[0].DBID, pr[1].DBID))
			}
		}
		w.mu.Unlock()
	}
}

// probe tries one INSERT on seg and reports whether its commit was
// acknowledged within the bound; it returns the session to reuse, or nil.
func (w *writeWatcher) probe(seg topology.Segment, conn *pgx.Conn) (bool, *pgx.Conn) {
	if conn == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		var err error
		conn, err = pgx.Connect(ctx, w.c.segDSN(seg, "statement_timeout=300"))
		cancel()
		if err != nil {
			return false, nil
		}
	}
	// statement_timeout bounds the INSERT; a commit waiting for a sync
	// standby is not bounded by it, so the context bounds the whole.
	ctx, cancel := context.WithTimeout(context.Background(), watchCommitBound)
	_, err := conn.Exec(ctx, "INSERT INTO "+watchTable+" VALUES (now())")
	cancel()
	if err == nil {
		return true, conn
	}
	if !conn.IsClosed() && conn.PgConn().TxStatus() == 'I' {
		// Refused (a mirror: read-only), the session is fine.
		return false, conn
	}
	// Timed out: the backend may be stuck in its commit wait, holding a
	// connection slot for good. End it, so probes do not pile up.
	pid := conn.PgConn().PID()
	conn.Close(context.Background())
	w.kill.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		k, err := pgx.Connect(ctx, w.c.segDSN(seg, ""))
		if err != nil {
			return
		}
		defer k.Close(context.Background())
		_, _ = k.Exec(ctx, "SELECT pg_terminate_backend($1)", pid)
	})
	return false, nil
}

func (w *writeWatcher) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	w.kill.Wait()
}

// check stops the watcher and fails the test on any split-brain round, or
// if it never saw a writable primary of a content (a blind watcher).
func (w *writeWatcher) check() {
	t := w.c.t
	t.Helper()
	w.halt()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.splits {
		t.Errorf("SPLIT BRAIN (safety rule 1): %s", s)
	}
	var counts []string
	for content, pr := range w.pairs {
		n := w.writable[pr[0].DBID] + w.writable[pr[1].DBID]
		if n == 0 {
			t.Errorf("write watcher never saw content %d writable in %d rounds: it watched nothing", content, w.rounds)
		}
		counts = append(counts, fmt.Sprintf("content %d: dbid %d writable %d, dbid %d writable %d", content,
			pr[0].DBID, w.writable[pr[0].DBID], pr[1].DBID, w.writable[pr[1].DBID]))
	}
	t.Logf("write watcher: %d rounds, %d with two writable primaries; %s", w.rounds, len(w.splits), strings.Join(counts, "; "))
}
