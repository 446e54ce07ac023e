package e2e

// The host harness of issue 4: every agent in its own network namespace
// (ip netns), the namespaces joined by veth pairs to one bridge in the
// root namespace, so a test can cut a host off from the other hosts with
// blackhole routes while the test process itself still reaches every
// host (through the bridge's own address, .254).

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

// Fixed per-host ports: each host has its own namespace and address, so
// they never clash with each other or with anything in the root namespace.
const (
	netnsAPIPort       = 7070
	netnsRaftPort      = 7071
	netnsGossipPort    = 7072
	netnsCoordPort     = 5432
	netnsPrimaryBase   = 6000
	netnsMirrorBase    = 7000
	netnsSuperUser     = "gpadmin"
	netnsSubnetOctet0  = "10.213"
	netnsBridgeOctet   = 254
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
	veth string // the root-namespace end of its veth pair
	dir  string // DIR/<name>: agent.yaml, agent.log, agent.pid, agent/

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logf *os.File
}

func (h *netnsHost) api() string { return fmt.Sprintf("%s:%d", h.addr, netnsAPIPort) }

// netnsCluster is a running three-host cluster: mdw (coordinator), sdw1
// and sdw2 (one primary each, group mirrors on the other).
type netnsCluster struct {
	t       *testing.T
	dir     string
	prefix  string // of namespace and veth names
	bridge  string
	subnet  string // "10.213.X"
	hosts   []*netnsHost
	superPW string

	mu  sync.Mutex
	cut map[string][]netnsRoute // host -> the blackhole routes that isolate it
}

type netnsRoute struct{ ns, dst string }

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

// ipCmd runs `ip args...` and returns its combined output.
func ipCmd(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func mustIP(t *testing.T, args ...string) {
	t.Helper()
	if _, err := ipCmd(args...); err != nil {
		t.Fatal(err)
	}
}

// startNetnsCluster builds the network, writes the configs, starts one
// agent per namespace, runs gpagent init and waits until every instance is
// up and every pair in sync. Cleanup undoes all of it, even on failure.
func startNetnsCluster(t *testing.T) *netnsCluster {
	t.Helper()
	requireNetns(t)
	t0 := time.Now()
	seq := netnsSeq.Add(1) - 1
	pid := os.Getpid() % 1000
	c := &netnsCluster{
		t:      t,
		prefix: fmt.Sprintf("gpa%03d%c", pid, 'a'+rune(seq%26)),
		bridge: fmt.Sprintf("gpabr%03d%c", pid, 'a'+rune(seq%26)),
		cut:    map[string][]netnsRoute{},
	}
	c.removeLeftovers()

	dir, err := os.MkdirTemp("", "gpagent-netns-")
	if err != nil {
		t.Fatal(err)
	}
	// The instances run as the postgres OS user: it must reach the folder.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c.dir = dir
	c.subnet = c.pickSubnet(pid, int(seq))

	// Registered first, so it runs last: the network and the folder go
	// only after every agent and postmaster is gone.
	t.Cleanup(func() {
		c.teardownNetwork()
		if t.Failed() {
			t.Logf("netns: kept %s for inspection (agent logs in <host>/agent.log)", dir)
		} else {
			os.RemoveAll(dir)
		}
	})
	names := []string{"mdw", "sdw1", "sdw2"}
	for i, name := range names {
		k := i + 1
		c.hosts = append(c.hosts, &netnsHost{
			name: name,
			ns:   fmt.Sprintf("%sh%d", c.prefix, k),
			addr: fmt.Sprintf("%s.%d", c.subnet, k),
			veth: fmt.Sprintf("%sv%d", c.prefix, k),
			dir:  filepath.Join(dir, name),
		})
	}
	c.buildNetwork()
	c.writeFiles()
	t.Cleanup(c.stopAgents)
	for _, h := range c.hosts {
		c.startAgent(h)
	}
	c.waitMesh(90 * time.Second)
	c.initCluster()
	t.Logf("netns: cluster up on %s.0/24 (namespaces %sh1..%d, bridge %s) in %s; files in %s",
		c.subnet, c.prefix, len(c.hosts), c.bridge, time.Since(t0).Round(time.Millisecond), dir)
	return c
}

// removeLeftovers deletes namespaces, links and a bridge with this test's
// names, left by an earlier run with the same pid that did not clean up.
func (c *netnsCluster) removeLeftovers() {
	if out, err := ipCmd("netns", "list"); err == nil {
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) > 0 && strings.HasPrefix(f[0], c.prefix) {
				c.t.Logf("netns: removing leftover namespace %s", f[0])
				_, _ = ipCmd("netns", "del", f[0])
			}
		}
	}
	for _, l := range rootLinks() {
		if strings.HasPrefix(l, c.prefix) || l == c.bridge {
			c.t.Logf("netns: removing leftover link %s", l)
			_, _ = ipCmd("link", "del", l)
		}
	}
}

// rootLinks lists the link names of the root namespace.
func rootLinks() []string {
	out, err := ipCmd("-o", "link", "show")
	if err != nil {
		return nil
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		// "12: name@if11: <BROADCAST,...> ..."
		f := strings.SplitN(line, ":", 3)
		if len(f) < 3 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSpace(f[1]), "@")
		names = append(names, name)
	}
	return names
}

// pickSubnet chooses 10.213.X from the pid, moving on while the root
// namespace already has an address or route in 10.213.X.0/24.
func (c *netnsCluster) pickSubnet(pid, seq int) string {
	for i := 0; i < 250; i++ {
		x := (pid+7*seq+i)%250 + 1
		subnet := fmt.Sprintf("%s.%d", netnsSubnetOctet0, x)
		routes, err1 := ipCmd("-4", "route", "show", "table", "all", "to", "match", subnet+".1")
		addrs, err2 := ipCmd("-4", "addr", "show", "to", subnet+".0/24")
		if err1 != nil || err2 != nil {
			c.t.Fatalf("netns: inspect routes: %v %v", err1, err2)
		}
		used := strings.TrimSpace(addrs) != ""
		for _, r := range strings.Split(routes, "\n") {
			// The default route matches everything; only a route into this
			// /24 (or narrower) means someone uses it.
			if r = strings.TrimSpace(r); r != "" && strings.Contains(r, netnsSubnetOctet0+".") {
				used = true
			}
		}
		if !used {
			return subnet
		}
	}
	c.t.Fatalf("netns: no free 10.213.X.0/24 subnet")
	return ""
}

// buildNetwork creates the bridge and one namespace and veth pair per host.
func (c *netnsCluster) buildNetwork() {
	t := c.t
	mustIP(t, "link", "add", c.bridge, "type", "bridge")
	mustIP(t, "addr", "add", fmt.Sprintf("%s.%d/24", c.subnet, netnsBridgeOctet), "dev", c.bridge)
	mustIP(t, "link", "set", c.bridge, "up")
	for _, h := range c.hosts {
		peer := h.veth + "p"
		mustIP(t, "netns", "add", h.ns)
		mustIP(t, "-n", h.ns, "link", "set", "lo", "up")
		mustIP(t, "link", "add", h.veth, "type", "veth", "peer", "name", peer)
		mustIP(t, "link", "set", peer, "netns", h.ns)
		mustIP(t, "-n", h.ns, "link", "set", peer, "name", "eth0")
		mustIP(t, "-n", h.ns, "addr", "add", h.addr+"/24", "dev", "eth0")
		mustIP(t, "-n", h.ns, "link", "set", "eth0", "up")
		mustIP(t, "link", "set", h.veth, "master", c.bridge)
		mustIP(t, "link", "set", h.veth, "up")
	}
}

// teardownNetwork deletes the namespaces (their veth ends, and so the
// pairs, go with them) and the bridge.
func (c *netnsCluster) teardownNetwork() {
	for _, h := range c.hosts {
		if _, err := ipCmd("netns", "del", h.ns); err != nil {
			c.t.Logf("netns cleanup: %v", err)
		}
	}
	links := rootLinks()
	for _, h := range c.hosts {
		for _, l := range links {
			if l == h.veth {
				_, _ = ipCmd("link", "del", h.veth)
			}
		}
	}
	if _, err := ipCmd("link", "del", c.bridge); err != nil {
		c.t.Logf("netns cleanup: %v", err)
	}
}

func randomSecret() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// writeFiles writes the gossip key, every agent.yaml, cluster.yaml and a
// libpq password file, as `gpagent demo` does for its hosts.
func (c *netnsCluster) writeFiles() {
	t := c.t
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	keyFile := filepath.Join(c.dir, "gossip.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.superPW = randomSecret()
	replPW := randomSecret()
	var join []string
	for _, h := range c.hosts {
		join = append(join, fmt.Sprintf("%s:%d", h.addr, netnsGossipPort))
	}
	for _, h := range c.hosts {
		if err := os.MkdirAll(h.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := fmt.Sprintf(`# gpagent netns test agent: host %[1]s in namespace %[2]s
name: %[1]s
address: %[3]s
data_dir: %[4]s
api_addr: %[3]s:%[5]d
raft_addr: %[3]s:%[6]d
gossip_addr: %[3]s:%[7]d
gossip_key_file: %[8]s
bootstrap_expect: %[9]d
join: [%[10]s]
stop_instances_on_exit: true
postgres:
  superuser: %[11]s
  superuser_password: %[12]s
  replication_user: replicator
  replication_password: %[13]s
  wal_keep_size: 256MB
`, h.name, h.ns, h.addr, filepath.Join(h.dir, "agent"), netnsAPIPort, netnsRaftPort, netnsGossipPort,
			keyFile, len(c.hosts), strings.Join(join, ", "), netnsSuperUser, c.superPW, replPW)
		if err := os.WriteFile(filepath.Join(h.dir, "agent.yaml"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(c.dir, "data")
	mdw, sdw1, sdw2 := c.hosts[0], c.hosts[1], c.hosts[2]
	// One primary per segment host; group mirrors: content 0's primary
	// on sdw1 with its mirror on sdw2, content 1 the other way round.
	spec := fmt.Sprintf(`# gpagent netns test cluster
seg_prefix: gpseg
coordinator:
  hostname: %s
  address: %s
  port: %d
  datadir: %s/coordinator
segment_hosts:
  - {hostname: %s, address: %s}
  - {hostname: %s, address: %s}
primary:
  port_base: %d
  datadirs: [%s/primary]
mirror:
  port_base: %d
  datadirs: [%s/mirror]
  placement: group
`, mdw.name, mdw.addr, netnsCoordPort, data, sdw1.name, sdw1.addr, sdw2.name, sdw2.addr,
		netnsPrimaryBase, data, netnsMirrorBase, data)
	if err := os.WriteFile(filepath.Join(c.dir, "cluster.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	pgpass := fmt.Sprintf("*:*:*:%s:%s\n", netnsSuperUser, c.superPW)
	if err := os.WriteFile(filepath.Join(c.dir, "pgpass"), []byte(pgpass), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startAgent runs `ip netns exec NS gpagent agent --config F`; ip execs
// the agent in place, so the child's pid is the agent's.
func (c *netnsCluster) startAgent(h *netnsHost) {
	t := c.t
	logf, err := os.OpenFile(filepath.Join(h.dir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", h.ns, binary, "agent", "--config", filepath.Join(h.dir, "agent.yaml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start agent %s: %v", h.name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	if err := os.WriteFile(filepath.Join(h.dir, "agent.pid"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	h.cmd, h.done, h.logf = cmd, done, logf
	h.mu.Unlock()
}

func (h *netnsHost) exited() bool {
	h.mu.Lock()
	done := h.done
	h.mu.Unlock()
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
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
		cmd, done, logf := h.cmd, h.done, h.logf
		h.mu.Unlock()
		if cmd == nil {
			continue
		}
		wg.Go(func() {
			defer logf.Close()
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(netnsAgentStopWait):
				t.Errorf("agent %s did not stop within %s of SIGTERM; killing it", h.name, netnsAgentStopWait)
				_ = cmd.Process.Kill()
				<-done
			}
		})
	}
	wg.Wait()
	if n := killProcessesUnder(c.dir); n > 0 {
		t.Logf("netns cleanup: killed %d processes left under %s", n, c.dir)
	}
}

// killProcessesUnder SIGKILLs every process whose command line names a
// path under dir (postmasters: postgres -D DIR/...), and any postmaster
// a postmaster.pid under dir names.
func killProcessesUnder(dir string) int {
	killed := 0
	self := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, arg := range bytes.Split(cmdline, []byte{0}) {
			if strings.HasPrefix(string(arg), dir+"/") {
				if syscall.Kill(pid, syscall.SIGKILL) == nil {
					killed++
				}
				break
			}
		}
	}
	pidFiles, _ := filepath.Glob(filepath.Join(dir, "data", "*", "*", "postmaster.pid"))
	more, _ := filepath.Glob(filepath.Join(dir, "data", "*", "postmaster.pid"))
	for _, f := range append(pidFiles, more...) {
		pid := postmasterPID(filepath.Dir(f))
		if !alive(pid) {
			continue
		}
		// Only if that pid still is a postgres of ours, not a reused pid.
		cmdline, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		if bytes.Contains(cmdline, []byte(filepath.Dir(f))) && syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed++
		}
	}
	return killed
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

func (c *netnsCluster) client(host string) *api.Client { return api.NewClient(c.host(host).api()) }

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
// process: blackhole routes in its namespace to every other host, and in
// theirs to it. Both directions: with routes on one side only, UDP gossip
// from the others would still arrive at the isolated host. It returns
// when the routes are in place.
func (c *netnsCluster) partition(name string) time.Time {
	c.t.Helper()
	h := c.host(name)
	var routes []netnsRoute
	for _, o := range c.hosts {
		if o == h {
			continue
		}
		routes = append(routes, netnsRoute{ns: h.ns, dst: o.addr + "/32"}, netnsRoute{ns: o.ns, dst: h.addr + "/32"})
	}
	c.mu.Lock()
	c.cut[name] = append(c.cut[name], routes...)
	c.mu.Unlock()
	for _, r := range routes {
		mustIP(c.t, "-n", r.ns, "route", "add", "blackhole", r.dst)
	}
	return time.Now()
}

// heal removes the routes partition added for host.
func (c *netnsCluster) heal(name string) {
	c.mu.Lock()
	routes := c.cut[name]
	delete(c.cut, name)
	c.mu.Unlock()
	for _, r := range routes {
		if _, err := ipCmd("-n", r.ns, "route", "del", "blackhole", r.dst); err != nil {
			c.t.Errorf("heal %s: %v", name, err)
		}
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
