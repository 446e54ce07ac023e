package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

// scaleOptions are gpbench scale's flags.
type scaleOptions struct {
	agents       []int
	trials       int
	perHost      int
	idle         time.Duration
	sizeTimeout  time.Duration
	trialTimeout time.Duration
	gpagent      string
	buildGpagent bool
	keep         bool
	clients      bool   // segment hosts run as client agents (server: false)
	clientGossip bool   // the clients join the gossip pool (join) instead of naming the servers (servers)
	real         int    // segment hosts run as real gpagent agents with real PostgreSQL
	octet        int    // 127.octet.0.0/16 holds this run's agents
	hostData     string // where the simulated segment hosts keep their data dirs ("": in the run's dir)
	// autoRecover: every agent runs with auto_recover: incremental.
	autoRecover bool
	// hostsGOGC is the GC target of the simulated segment hosts'
	// process (GOGC, percent): see the flag.
	hostsGOGC int
}

// Raft servers: separate processes on 127.N.0.1-3 (N chosen per run), hosting no segments
// (the coordinator runs on the first). Segment hosts: one child process,
// on 127.N.1.1 onwards.
const scaleServers = 3

func scaleServerIP(o scaleOptions, i int) string { return fmt.Sprintf("127.%d.0.%d", o.octet, i+1) }

// scaleHostIP is the IP of segment host i (0-based): 250 a /24.
func scaleHostIP(o scaleOptions, i int) string {
	return fmt.Sprintf("127.%d.%d.%d", o.octet, 1+i/250, 1+i%250)
}

// pickOctet chooses the second octet of this run's loopback addresses
// (127.N.0.1 and on), one whose first server ports are free: two runs on
// one machine (or a run and its test) do not collide on the fixed ports.
func pickOctet() (int, error) {
	start := 2 + rand.IntN(250)
	for k := range 250 {
		n := 2 + (start-2+k)%250
		ln, err := net.Listen("tcp", fmt.Sprintf("127.%d.0.1:%d", n, scaleAPIPort))
		if err != nil {
			continue
		}
		ln.Close()
		return n, nil
	}
	return 0, errors.New("no free 127.N.0.1 for the servers: the scale run needs the 127.0.0.0/8 loopback addresses")
}

func cmdScale(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o scaleOptions
	agents := fs.String("agents", "10,30", "comma-separated cluster sizes to run, in agents (3 of them Raft servers without segments)")
	fs.IntVar(&o.trials, "trials", 3, "trials of each fault (instance crash, host loss) and of gpagent state, per size")
	fs.IntVar(&o.perHost, "primaries-per-host", 8, "primaries (and mirrors) per segment host")
	fs.DurationVar(&o.idle, "idle", 10*time.Second, "idle window in which the leader's CPU and spurious fences are measured")
	fs.DurationVar(&o.sizeTimeout, "size-timeout", 4*time.Minute, "how long one size may take to come up with every pair in sync; a size that does not is reported as never reached")
	fs.DurationVar(&o.trialTimeout, "trial-timeout", time.Minute, "limit of one fault's failover")
	fs.StringVar(&o.gpagent, "gpagent", "", "gpagent binary for the state timing (default: next to gpbench, else in PATH, else built from this checkout)")
	fs.BoolVar(&o.buildGpagent, "build-gpagent", false, "go build ./cmd/gpagent into a temporary folder for the state timing")
	fs.BoolVar(&o.keep, "keep", false, "keep each size's folder (agent logs, Raft data)")
	fs.StringVar(&o.hostData, "host-data", "/dev/shm", "where the simulated segment hosts keep their agents' data dirs (lease and instance records); a tmpfs, since on a real cluster each host writes its own disk and here a thousand hosts would share one filesystem journal (\"\": in the run's dir, with the servers)")
	fs.BoolVar(&o.autoRecover, "auto-recover", true, "run the agents with auto_recover: incremental, as an operator of hundreds of hosts would: at 1,000 agents on two cores the init can run hundreds of simulated hosts' leases out (their shared process is CPU-bound and report round trips take seconds), their mirrors are marked down, and without it they wait for a recoverseg the bench does not run")
	fs.IntVar(&o.hostsGOGC, "hosts-gogc", 400, "GOGC of the simulated segment hosts' process: a thousand agents share its heap and its two cores, and through an init its garbage collector took a quarter of the CPU the hosts' reports needed (each real agent collects a heap of its own, on a machine of its own); 100 is Go's default")
	fs.BoolVar(&o.clientGossip, "client-gossip", false, "the client agents join the gossip pool (join: the servers' gossip addresses); by default they join none and find the servers by their API addresses (servers:), as the large-cluster shape runs")
	fs.BoolVar(&o.clients, "clients", true, "run the segment hosts as client agents (server: false: no Raft log, the topology by a blocking query); false makes every agent a Raft member (nonvoters past the 3 voters), the design before")
	fs.IntVar(&o.real, "real", 0, "run this many of each size's segment hosts as real gpagent agent processes (the --gpagent binary) with real PostgreSQL, one primary and one mirror each, mirrors among the real hosts; a trial then kill -9s a real primary's postmaster (a mixed cluster; 0 or at least 2)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if o.real < 0 || o.real == 1 {
		fmt.Fprintf(stderr, "gpbench scale: --real: %d: want 0, or at least 2 (a real primary's mirror is on another real host)\n", o.real)
		return errUsage
	}
	least := scaleServers + 2 + o.real
	for _, f := range strings.Split(*agents, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < least {
			fmt.Fprintf(stderr, "gpbench scale: --agents: %q is not a size of at least %d agents (3 servers, 2 simulated segment hosts, --real %d)\n", f, least, o.real)
			return errUsage
		}
		o.agents = append(o.agents, n)
	}
	if o.real > 0 && !o.clients {
		fmt.Fprintln(stderr, "gpbench scale: --real goes with --clients (the real hosts are clients of the 3 servers)")
		return errUsage
	}
	if o.hostsGOGC < 25 {
		fmt.Fprintf(stderr, "gpbench scale: --hosts-gogc: %d: want at least 25 (percent)\n", o.hostsGOGC)
		return errUsage
	}
	if o.trials < 1 || o.perHost < 1 {
		fmt.Fprintln(stderr, "gpbench scale: --trials and --primaries-per-host must be at least 1")
		return errUsage
	}
	octet, err := pickOctet()
	if err != nil {
		return err
	}
	o.octet = octet
	bin, cleanup, err := resolveGpagent(ctx, o.gpagent, o.buildGpagent, stderr)
	if err != nil && o.gpagent == "" && !o.buildGpagent {
		// None named and none found (go run: no gpagent beside this
		// binary): build one, so that the command the README gives
		// times gpagent state as it stands.
		bin, cleanup, err = resolveGpagent(ctx, "", true, stderr)
	}
	defer cleanup()
	if err != nil {
		if o.real > 0 {
			return fmt.Errorf("--real %d needs a gpagent binary for the real hosts (--gpagent or --build-gpagent): %w", o.real, err)
		}
		fmt.Fprintf(stderr, "gpbench scale: no gpagent binary (%v): gpagent state will not be timed\n", err)
		bin = ""
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var results []sizeResult
	for _, n := range o.agents {
		fmt.Fprintf(stderr, "gpbench scale: %d agents\n", n)
		r := runScaleSize(ctx, o, self, bin, n, stderr)
		results = append(results, r)
		if ctx.Err() != nil {
			break
		}
	}
	fmt.Fprint(stdout, scaleTable(results))
	b, err := json.Marshal(results[len(results)-1])
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, string(b))
	return nil
}

// sizeResult is one size's figures: the JSON line of the issue. A figure
// the run could not measure is null and Reasons says why.
type sizeResult struct {
	Agents    int    `json:"agents"`
	Contents  int    `json:"contents"`
	Trials    int    `json:"trials"`
	Placement string `json:"placement"`
	// Clients: the segment hosts ran as client agents, outside Raft.
	Clients          bool     `json:"clients"`
	InSyncMS         *int64   `json:"in_sync_ms"`
	HostLossMS       *p50Max  `json:"host_loss_ms"`
	KillMS           *p50Max  `json:"kill_ms"`
	RaftEntriesPerHL *maxOnly `json:"raft_entries_per_host_loss"`
	FencedSpuriously *int64   `json:"fenced_spuriously"`
	StateMS          *p50Max  `json:"state_ms"`
	LeaderCPUIdlePct *float64 `json:"leader_cpu_idle_pct"`
	AgentRSSMB       *p50Max  `json:"agent_rss_mb"`
	ServerRSSMB      *p50Max  `json:"server_rss_mb"`
	SnapshotBytes    *int64   `json:"snapshot_bytes"`
	// Real: segment hosts run as real agents with real PostgreSQL (--real);
	// the real-kill figures are left out of a run without them.
	Real               int     `json:"real,omitempty"`
	RealKillMS         *p50Max `json:"real_kill_ms,omitempty"`
	RealPromotedWrites *int    `json:"real_promoted_writes,omitempty"`
	// Reasons says why a figure is null; Notes how one was measured
	// where the name alone could mislead.
	Reasons map[string]string `json:"reasons,omitempty"`
	Notes   map[string]string `json:"notes,omitempty"`
}

func (r *sizeResult) note(field, text string) {
	if r.Notes == nil {
		r.Notes = map[string]string{}
	}
	r.Notes[field] = text
}

type p50Max struct {
	P50 int64 `json:"p50"`
	Max int64 `json:"max"`
}

type maxOnly struct {
	Max int64 `json:"max"`
}

func newP50Max(v []int64) *p50Max {
	if len(v) == 0 {
		return nil
	}
	return &p50Max{P50: nearestRank(v, 50), Max: nearestRank(v, 100)}
}

func (r *sizeResult) why(field, reason string) {
	if r.Reasons == nil {
		r.Reasons = map[string]string{}
	}
	if _, ok := r.Reasons[field]; !ok {
		r.Reasons[field] = reason
	}
}

// unmeasured names every null figure with the reason given.
func (r *sizeResult) unmeasured(reason string) {
	for _, f := range []string{"in_sync_ms", "host_loss_ms", "kill_ms", "raft_entries_per_host_loss", "fenced_spuriously", "state_ms", "leader_cpu_idle_pct", "agent_rss_mb", "server_rss_mb", "snapshot_bytes"} {
		if r.isNull(f) {
			r.why(f, reason)
		}
	}
	if r.Real > 0 {
		if r.RealKillMS == nil {
			r.why("real_kill_ms", reason)
		}
		if r.RealPromotedWrites == nil {
			r.why("real_promoted_writes", reason)
		}
	}
}

func (r *sizeResult) isNull(field string) bool {
	b, _ := json.Marshal(r)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m[field] == nil
}

// scaleChild is one scale-node process.
type scaleChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	ctl   string
	pid   int
}

func startScaleChild(ctx context.Context, self, dir, name string, spec scaleNodeSpec) (*scaleChild, error) {
	spec.Dir = filepath.Join(dir, name)
	if err := os.MkdirAll(spec.Dir, 0o755); err != nil {
		return nil, err
	}
	b, _ := json.Marshal(spec)
	specFile := filepath.Join(spec.Dir, "spec.json")
	if err := os.WriteFile(specFile, b, 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "scale-node", "--spec", specFile)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	errf, err := os.Create(filepath.Join(spec.Dir, "stderr"))
	if err != nil {
		return nil, err
	}
	defer errf.Close()
	cmd.Stderr = errf
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &scaleChild{cmd: cmd, stdin: stdin, pid: cmd.Process.Pid}
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(out)
		if s.Scan() {
			line <- s.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case l, ok := <-line:
		addr, found := strings.CutPrefix(l, "ctl ")
		if !ok || !found {
			c.stop()
			b, _ := os.ReadFile(filepath.Join(spec.Dir, "stderr"))
			return nil, fmt.Errorf("scale-node %s did not start: %s", name, oneLine(lastLines(string(b), 3)))
		}
		c.ctl = addr
	case <-time.After(2 * time.Minute):
		c.stop()
		return nil, fmt.Errorf("scale-node %s did not start within 2m", name)
	case <-ctx.Done():
		c.stop()
		return nil, ctx.Err()
	}
	return c, nil
}

// stop closes the child's stdin (it stops its agents and exits), then
// kills its process group if it has not exited within 10 s.
func (c *scaleChild) stop() {
	_ = c.stdin.Close()
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-c.pid, syscall.SIGKILL)
		<-done
	}
}

func (c *scaleChild) post(ctx context.Context, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.ctl+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("control %s: %s: %s", path, resp.Status, bytes.TrimSpace(b))
	}
	return nil
}

// cpuTicks is the process's user+system time, in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s, nil
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

func runScaleSize(ctx context.Context, o scaleOptions, self, bin string, n int, log io.Writer) (r sizeResult) {
	nhosts := n - scaleServers
	nsim := nhosts - o.real // simulated segment hosts, sdw1..; the real ones come last
	r = sizeResult{Agents: n, Contents: nsim*o.perHost + o.real, Trials: o.trials, Placement: "spread", Clients: o.clients, Real: o.real}
	if nsim <= o.perHost {
		// Spread needs more segment hosts than primaries per host.
		r.Placement = "group"
	}
	dir, err := os.MkdirTemp("", fmt.Sprintf("gpbench-scale-%d-", n))
	if err != nil {
		r.unmeasured(err.Error())
		return r
	}
	var children []*scaleChild
	var rh *realHosts
	defer func() {
		for _, c := range children {
			c.stop()
		}
		rh.stop(log)
		if o.keep {
			fmt.Fprintf(log, "gpbench scale: kept %s\n", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, o.sizeTimeout+time.Duration(4*o.trials)*o.trialTimeout+2*o.idle)
	defer cancel()
	t0 := time.Now()
	seed := fmt.Sprintf("%s:%d", scaleServerIP(o, 0), scaleGossipPort)
	extra := map[string]string{"voters": "3"}
	if o.autoRecover {
		extra["auto_recover"] = "incremental"
	}
	// The servers alone (the only Raft members: snapshot_bytes is read
	// from their disks) snapshot after scaleSnapshotThreshold entries,
	// checked every scaleSnapshotInterval, so that snapshot_bytes is
	// measured at every size (raft's 8192 entries are never reached in a
	// run).
	serverExtra := maps.Clone(extra)
	serverExtra["raft_snapshot_threshold"] = strconv.Itoa(scaleSnapshotThreshold)
	serverExtra["raft_snapshot_interval"] = scaleSnapshotInterval.String()
	var servers []*scaleChild
	for i := range scaleServers {
		as := scaleAgentSpec{Name: fmt.Sprintf("srv%d", i+1), IP: scaleServerIP(o, i), Bootstrap: i == 0}
		if i > 0 {
			as.Join = []string{seed}
		}
		c, err := startScaleChild(ctx, self, dir, as.Name, scaleNodeSpec{CtlIP: as.IP, Agents: []scaleAgentSpec{as}, Extra: serverExtra})
		if err != nil {
			r.unmeasured(err.Error())
			return r
		}
		children = append(children, c)
		servers = append(servers, c)
	}
	cl := api.NewClient(fmt.Sprintf("%s:%d", scaleServerIP(o, 0), scaleAPIPort)).WithToken(os.Getenv("GPAGENT_TOKEN"))
	if err := waitFor(ctx, "the 3 servers in Raft", func() (bool, string) {
		m, err := cl.Members(ctx)
		if err != nil {
			return false, err.Error()
		}
		return raftMembers(m) >= scaleServers && m.Leader != "", fmt.Sprint(raftMembers(m))
	}); err != nil {
		r.unmeasured(err.Error())
		return r
	}
	hs := scaleNodeSpec{CtlIP: scaleHostIP(o, 0), Extra: extra, GOGC: o.hostsGOGC}
	if o.hostData != "" {
		d, err := os.MkdirTemp(o.hostData, fmt.Sprintf("gpbench-scale-%d-hosts-", n))
		if err != nil {
			r.unmeasured("--host-data: " + err.Error())
			return r
		}
		defer func() {
			if o.keep {
				fmt.Fprintf(log, "gpbench scale: kept %s\n", d)
			} else {
				os.RemoveAll(d)
			}
		}()
		hs.DataDir = d
	}
	for i := range scaleServers {
		hs.Peers = append(hs.Peers, scaleServerIP(o, i))
	}
	join := []string{seed, fmt.Sprintf("%s:%d", scaleServerIP(o, 1), scaleGossipPort)}
	var serverAPIs []string
	for i := range scaleServers {
		serverAPIs = append(serverAPIs, fmt.Sprintf("%s:%d", scaleServerIP(o, i), scaleAPIPort))
	}
	var hostNames, realNames, realIPs []string
	for i := range nhosts {
		name := fmt.Sprintf("sdw%d", i+1)
		hostNames = append(hostNames, name)
		if i >= nsim {
			// A real host: its own process, but the simulated network
			// must know it to cut a lost simulated host off from it.
			realNames, realIPs = append(realNames, name), append(realIPs, scaleHostIP(o, i))
			hs.Peers = append(hs.Peers, scaleHostIP(o, i))
			continue
		}
		as := scaleAgentSpec{Name: name, IP: scaleHostIP(o, i), Client: o.clients, Join: join}
		if o.clients && !o.clientGossip {
			as.Join, as.Servers = nil, serverAPIs
		}
		hs.Agents = append(hs.Agents, as)
	}
	hosts, err := startScaleChild(ctx, self, dir, "hosts", hs)
	if err != nil {
		r.unmeasured(err.Error())
		return r
	}
	children = append(children, hosts)
	if o.real > 0 {
		rh, err = startRealHosts(o, dir, bin, realNames, realIPs, join)
		if err != nil {
			r.unmeasured("real hosts: " + err.Error())
			return r
		}
	}
	// raftMembers counts the clients too (raft_role "client"): all n
	// agents alive, the clients outside Raft.
	if err := waitFor(ctx, fmt.Sprintf("all %d agents in Raft or alive as clients", n), func() (bool, string) {
		m, err := leaderMembers(ctx, o, cl)
		if err != nil {
			return false, err.Error()
		}
		if rh != nil {
			if h := rh.exited(); h != "" {
				return false, fmt.Sprintf("%d; the real agent %s exited: %s", raftMembers(m), h, rh.logs())
			}
		}
		return raftMembers(m) == n, fmt.Sprint(raftMembers(m))
	}); err != nil {
		r.unmeasured(err.Error())
		return r
	}
	spec := topology.Spec{
		SegPrefix:   "gpseg",
		Coordinator: topology.CoordinatorSpec{Hostname: "srv1", Address: scaleServerIP(o, 0), Port: 5000, DataDir: "/sim/coordinator"},
		Primary:     topology.PortDirs{PortBase: 6000},
		Mirror:      &topology.MirrorSpec{PortDirs: topology.PortDirs{PortBase: 7000}, Placement: r.Placement},
	}
	primaryDir, mirrorDir := "/sim/primary", "/sim/mirror"
	if o.real > 0 {
		// The real hosts' instances live here (the simulated ones'
		// paths are only names); every host gets the same paths, the
		// content in each instance's folder name keeps them apart.
		primaryDir, mirrorDir = filepath.Join(dir, "data", "primary"), filepath.Join(dir, "data", "mirror")
	}
	var perHost []int
	for i, h := range hostNames {
		host := topology.Host{Hostname: h, Address: scaleHostIP(o, i)}
		perHost = append(perHost, o.perHost)
		if i >= nsim {
			host.Primaries, perHost[i] = 1, 1 // real hosts are kept light
		}
		spec.SegmentHosts = append(spec.SegmentHosts, host)
	}
	for range o.perHost {
		spec.Primary.DataDirs = append(spec.Primary.DataDirs, primaryDir)
		spec.Mirror.DataDirs = append(spec.Mirror.DataDirs, mirrorDir)
	}
	var entries []topology.MirrorEntry
	if o.real > 0 {
		// Uneven hosts: init without mirrors, then the mirrors placed
		// here (simulated among simulated, real among real), as
		// gpagent addmirrors -i would add them.
		entries = mixedMirrors(spec.SegmentHosts, perHost, rh.names, topology.Placement(r.Placement), mirrorDir, spec.Mirror.PortBase)
		spec.Mirror = nil
	}
	initStart := time.Now()
	// Init refuses while a host's agent is not alive in gossip; with
	// a hundred agents in one loaded process one may be suspect for a
	// moment right after all joined Raft: retry, as an operator would,
	// within the size's time.
	initCtx, cancelInit := context.WithDeadline(ctx, t0.Add(o.sizeTimeout))
	var initErr error
	_ = waitFor(initCtx, "init accepted", func() (bool, string) {
		_, initErr = cl.Init(ctx, api.InitRequest{Spec: spec, NoMirrors: spec.Mirror == nil})
		if errors.Is(initErr, api.ErrUnavailable) {
			fmt.Fprintf(log, "gpbench scale: %d agents: init refused, retrying: %v\n", n, initErr)
			return false, initErr.Error()
		}
		return true, ""
	})
	cancelInit()
	if initErr != nil {
		r.unmeasured("init: " + initErr.Error())
		return r
	}
	if len(entries) > 0 {
		addCtx, cancelAdd := context.WithDeadline(ctx, t0.Add(o.sizeTimeout))
		err := addMirrors(addCtx, cl, entries, log)
		cancelAdd()
		if err != nil {
			r.unmeasured("addmirrors: " + err.Error())
			return r
		}
	}
	inSyncCtx, cancelInSync := context.WithDeadline(ctx, t0.Add(o.sizeTimeout))
	err = waitFor(inSyncCtx, "every pair up and in sync", func() (bool, string) {
		s, err := cl.Segments(ctx)
		if err != nil {
			return false, err.Error()
		}
		bad := notInSync(s, nil)
		return len(s.Segments) > 0 && bad == 0, fmt.Sprintf("%d instances not up and in sync", bad)
	})
	cancelInSync()
	if err != nil {
		if rh != nil {
			err = fmt.Errorf("%w; real agents: %s", err, rh.logs())
		}
		r.unmeasured(fmt.Sprintf("never reached every pair in sync within --size-timeout %s: %v", o.sizeTimeout, err))
		return r
	}
	v := time.Since(initStart).Milliseconds()
	r.InSyncMS = &v
	fmt.Fprintf(log, "gpbench scale: %d agents up and in sync %s after init (%s after start)\n", n, time.Since(initStart).Round(time.Millisecond), time.Since(t0).Round(time.Second))

	// Idle: the leader's CPU and spurious fences.
	scaleIdle(ctx, o, &r, cl, servers, hosts)
	// Snapshot: the largest on the servers' disks.
	scaleSnapshot(&r, dir)
	// gpagent state --json end to end.
	scaleState(ctx, o, &r, bin)
	// Faults.
	var realNamesSet map[string]bool
	if rh != nil {
		realNamesSet = rh.names
		scaleRealKills(ctx, o, &r, cl, rh, log)
	}
	scaleKills(ctx, o, &r, cl, hosts, realNamesSet, log)
	scaleHostLoss(ctx, o, &r, cl, hosts, realNamesSet, log)
	r.unmeasured("not measured (see the run's stderr)")
	return r
}

func raftMembers(m *api.Members) int {
	k := 0
	for _, x := range m.Members {
		if x.RaftRole != "" && x.RaftRole != "none" && x.Status == "alive" {
			k++
		}
	}
	return k
}

// leaderMembers is the members list of the leader, asked through cl (a
// server): only the leader knows the clients without gossip, from their
// reports.
func leaderMembers(ctx context.Context, o scaleOptions, cl *api.Client) (*api.Members, error) {
	m, err := cl.Members(ctx)
	if err != nil {
		return nil, err
	}
	for i := range scaleServers {
		if name := fmt.Sprintf("srv%d", i+1); m.Leader == name && i > 0 {
			return api.NewClient(fmt.Sprintf("%s:%d", scaleServerIP(o, i), scaleAPIPort)).WithToken(os.Getenv("GPAGENT_TOKEN")).Members(ctx)
		}
	}
	return m, nil
}

// waitFor polls cond every 200 ms, or five times as long as cond took
// if more (a thousand hosts' state is megabytes for the leader to
// encode: the bench must not be the leader's largest load), until it
// holds or ctx ends.
func waitFor(ctx context.Context, what string, cond func() (bool, string)) error {
	last := ""
	for {
		began := time.Now()
		ok, why := cond()
		if ok {
			return nil
		}
		last = why
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not reached (%s)", what, last)
		case <-time.After(max(200*time.Millisecond, 5*time.Since(began))):
		}
	}
}

func scaleIdle(ctx context.Context, o scaleOptions, r *sizeResult, cl *api.Client, servers []*scaleChild, hosts *scaleChild) {
	m, err := leaderMembers(ctx, o, cl)
	if err != nil {
		r.why("leader_cpu_idle_pct", err.Error())
		return
	}
	var leaderPID int
	for i, s := range servers {
		if m.Leader == fmt.Sprintf("srv%d", i+1) {
			leaderPID = s.pid
		}
	}
	fencesBefore, errBefore := sumFences(ctx, m)
	before, err := cpuTicks(leaderPID)
	start := time.Now()
	if leaderPID == 0 || err != nil {
		r.why("leader_cpu_idle_pct", fmt.Sprintf("the leader %s is not a server process", m.Leader))
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(o.idle):
	}
	if leaderPID != 0 {
		if after, err := cpuTicks(leaderPID); err == nil {
			pct := float64(after-before) / clockTicks / time.Since(start).Seconds() * 100
			pct = float64(int64(pct*10+0.5)) / 10
			r.LeaderCPUIdlePct = &pct
		}
	}
	// Fences while nothing failed: every agent's counter, over the idle
	// window; those from the start up to in-sync are noted apart.
	fencesAfter, err := sumFences(ctx, m)
	switch {
	case errBefore != nil:
		r.why("fenced_spuriously", errBefore.Error())
	case err != nil:
		r.why("fenced_spuriously", err.Error())
	default:
		d := fencesAfter - fencesBefore
		r.FencedSpuriously = &d
		r.note("fenced_spuriously", fmt.Sprintf("fence events of all agents in the %s idle window; %d more from the start until every pair was in sync", o.idle, fencesBefore))
	}
	// Memory: the segment hosts share one process, so the figure per
	// agent is that process's RSS over its agents (p50 = max); the
	// servers each have their own.
	var rss struct {
		RSSKB  int64 `json:"rss_kb"`
		Agents int64 `json:"agents"`
	}
	if err := getJSON(ctx, "http://"+hosts.ctl+"/rss", &rss); err == nil && rss.Agents > 0 {
		per := rss.RSSKB / rss.Agents / 1024
		r.AgentRSSMB = &p50Max{P50: per, Max: per}
		r.note("agent_rss_mb", fmt.Sprintf("%d segment-host agents share one process of %d MB; the figure is its RSS over them (p50 = max)", rss.Agents, rss.RSSKB/1024))
	} else {
		r.why("agent_rss_mb", fmt.Sprint(err))
	}
	var srv []int64
	for _, s := range servers {
		if kb, err := rssKB(s.pid); err == nil {
			srv = append(srv, kb/1024)
		}
	}
	r.ServerRSSMB = newP50Max(srv)
}

// sumFences adds up every agent's fence events.
func sumFences(ctx context.Context, m *api.Members) (int64, error) {
	var n int64
	for _, x := range m.Members {
		v, err := scrapeCounter(ctx, x.APIAddr, "gpagent_fence_events_total")
		if err != nil {
			return 0, fmt.Errorf("%s: %w", x.Name, err)
		}
		n += v
	}
	return n, nil
}

func getJSON(ctx context.Context, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// scrapeCounter reads one unlabelled metric from an agent's /metrics.
func scrapeCounter(ctx context.Context, apiAddr, name string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+apiAddr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return int64(f), err
		}
	}
	return 0, fmt.Errorf("/metrics has no %s", name)
}

// The servers' Raft snapshot settings in a scale run. Before init a
// server's log holds about 4 entries (the bootstrap configuration, two
// AddVoters, the leader's no-op; the segment hosts are clients, outside
// Raft, unless --clients=false adds one nonvoter each), so 8 entries are
// only reached with the init and its barrier and at least one record of
// instances coming up (each command is two entries): even the smallest
// run (TestScaleSmoke, 6 agents) snapshots a topology after init. At
// larger sizes entries come faster than the checks, so the interval, not
// the threshold, bounds how often a server snapshots: once every 2-4 s
// during init (raft adds up to an interval of jitter), 14 ms and 2.9 MB
// a time at 8,000 contents (BenchmarkSnapshot_8000Contents), none when
// idle.
const (
	scaleSnapshotThreshold = 8
	scaleSnapshotInterval  = 2 * time.Second
)

// scaleSnapshot records the largest Raft snapshot on the servers' disks:
// DIR/srvN/srvN/raft/snapshots/ID/state.bin (raft's file snapshot store
// under the agent's data dir). The run idles before, so the servers have
// had a check or more since in sync; under load one may be late, so it
// waits up to three intervals (two checks at the most jitter) for one.
func scaleSnapshot(r *sizeResult, dir string) {
	deadline := time.Now().Add(3 * scaleSnapshotInterval)
	most := largestServerSnapshot(dir)
	for most < 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		most = largestServerSnapshot(dir)
	}
	if most < 0 {
		r.why("snapshot_bytes", fmt.Sprintf("no Raft snapshot was taken during the run (the servers' raft_snapshot_threshold is %d entries, checked every %s)", scaleSnapshotThreshold, scaleSnapshotInterval))
		return
	}
	r.SnapshotBytes = &most
}

// largestServerSnapshot is the size of the largest state.bin of a raft
// snapshot under a server's dir (srv*) of dir, or -1.
func largestServerSnapshot(dir string) int64 {
	var most int64 = -1
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "state.bin" {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return nil
		}
		parts := strings.Split(rel, string(filepath.Separator))
		k := len(parts)
		if k < 5 || !strings.HasPrefix(parts[0], "srv") || parts[k-3] != "snapshots" || parts[k-4] != "raft" {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.Size() > most {
			most = fi.Size()
		}
		return nil
	})
	return most
}

func scaleState(ctx context.Context, o scaleOptions, r *sizeResult, bin string) {
	if bin == "" {
		r.why("state_ms", "no gpagent binary (--gpagent or --build-gpagent)")
		return
	}
	var v []int64
	for range o.trials {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		cmd := exec.CommandContext(cctx, bin, "state", "--json")
		cmd.Env = append(os.Environ(), fmt.Sprintf("GPAGENT_ADDR=%s:%d", scaleServerIP(o, 1), scaleAPIPort))
		start := time.Now()
		err := cmd.Run()
		d := time.Since(start)
		cancel()
		if err != nil {
			r.why("state_ms", "gpagent state --json: "+err.Error())
			return
		}
		v = append(v, ms(d))
	}
	r.StateMS = newP50Max(v)
}

// promotedAt is when the leader committed the promotion of mirror dbid m
// (its history row), or false.
func promotedAt(h api.History, m int, after time.Time) (time.Time, bool) {
	for i := len(h) - 1; i >= 0; i-- {
		e := h[i]
		if e.DBID == m && strings.Contains(e.Desc, "promoted") && !e.Time.Before(after.Add(-time.Second)) {
			return e.Time, true
		}
	}
	return time.Time{}, false
}

// pairOK: a content whose primary is up and in sync with its mirror, up,
// on hosts not lost.
func pairOK(s *api.State, c int, lost map[string]bool) (p, m topology.Segment, ok bool) {
	var hasP, hasM bool
	for _, seg := range s.Segments {
		if seg.Content != c {
			continue
		}
		if seg.Role == topology.RolePrimary {
			p, hasP = seg, true
		} else {
			m, hasM = seg, true
		}
	}
	ok = hasP && hasM && p.Status == topology.StatusUp && m.Status == topology.StatusUp &&
		p.Mode == topology.ModeSynced && m.Mode == topology.ModeSynced && !lost[p.Hostname] && !lost[m.Hostname]
	return p, m, ok
}

func scaleKills(ctx context.Context, o scaleOptions, r *sizeResult, cl *api.Client, hosts *scaleChild, realHost map[string]bool, log io.Writer) {
	var v, prop []int64
	used := map[string]bool{}
	for trial := range o.trials {
		settle(ctx, o, cl, nil, log)
		s, err := cl.Segments(ctx)
		if err != nil {
			r.why("kill_ms", err.Error())
			break
		}
		// A content from the end, on hosts no trial touched yet (the
		// host-loss trials take hosts from the front).
		var p, m topology.Segment
		found := false
		for c := r.Contents - 1; c >= 0 && !found; c-- {
			if p, m, found = pairOK(s, c, nil); found && (used[p.Hostname] || used[m.Hostname] || realHost[p.Hostname]) {
				found = false
			}
		}
		if !found {
			r.why("kill_ms", "no in-sync pair left to crash")
			break
		}
		used[p.Hostname], used[m.Hostname] = true, true
		t0 := time.Now()
		if err := hosts.post(ctx, fmt.Sprintf("/crash?addr=%s&port=%d", p.Address, p.Port)); err != nil {
			r.why("kill_ms", err.Error())
			break
		}
		seen, stamped, err := waitPromoted(ctx, o, cl, []int{m.DBID}, t0)
		if err != nil {
			r.why("kill_ms", fmt.Sprintf("trial %d: %v", trial+1, err))
			break
		}
		d := seen.Sub(t0)
		fmt.Fprintf(log, "gpbench scale: %d agents: kill trial %d: content %d dbid %d crashed, mirror dbid %d promotion seen committed after %s (proposed by the leader after %s)\n", r.Agents, trial+1, p.Content, p.DBID, m.DBID, d.Round(time.Millisecond), stamped.Sub(t0).Round(time.Millisecond))
		v = append(v, ms(d))
		prop = append(prop, ms(stamped.Sub(t0)))
	}
	r.KillMS = newP50Max(v)
	if len(prop) > 0 {
		r.note("kill_ms", fmt.Sprintf("from the crash until the parent saw the promotion in the committed history (polled every 10 ms); the leader proposed it after p50 %d ms", nearestRank(prop, 50)))
	}
}

// settle waits, when the agents run with auto_recover, until no recovery
// runs and every pair with no instance on a lost host is up and in sync
// (at most a trial's timeout): a trial times one failure of a quiet
// cluster, not one that lands while the leader recovers the last trial's
// old primaries (at 1,000 agents their entries were counted in the next
// host loss's, and a kill's promotion waited a second behind them).
func settle(ctx context.Context, o scaleOptions, cl *api.Client, lost map[string]bool, log io.Writer) {
	if !o.autoRecover {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, o.trialTimeout)
	defer cancel()
	err := waitFor(sctx, "the cluster quiet (auto_recover done)", func() (bool, string) {
		s, err := cl.Segments(sctx)
		if err != nil {
			return false, err.Error()
		}
		bad := notInSync(s, lost)
		return bad == 0 && len(s.Recoveries) == 0, fmt.Sprintf("%d instances not up and in sync, %d recoveries", bad, len(s.Recoveries))
	})
	if err != nil {
		fmt.Fprintf(log, "gpbench scale: %v; the trial runs all the same\n", err)
	}
}

// notInSync counts the segment instances of s not up and in sync, but
// for the contents with an instance on a lost host.
func notInSync(s *api.State, lost map[string]bool) int {
	onLost := map[int]bool{}
	for _, seg := range s.Segments {
		if lost[seg.Hostname] {
			onLost[seg.Content] = true
		}
	}
	bad := 0
	for _, seg := range s.Segments {
		if seg.Content >= 0 && !onLost[seg.Content] && (seg.Status != topology.StatusUp || seg.Mode != topology.ModeSynced) {
			bad++
		}
	}
	return bad
}

// waitPromoted waits until every mirror of dbids is recorded primary in
// the committed history, polled through the API every 10 ms. It returns
// when the parent first saw the last promotion committed (an upper bound
// of the commit: the poll's period and one request late) and the time the
// leader stamped on it (when it proposed the entry, before replication).
func waitPromoted(ctx context.Context, o scaleOptions, cl *api.Client, dbids []int, t0 time.Time) (seen, stamped time.Time, err error) {
	ctx, cancel := context.WithTimeout(ctx, o.trialTimeout)
	defer cancel()
	last := ""
	for {
		h, err := cl.History(ctx)
		if err == nil {
			stamped = time.Time{}
			done := true
			for _, m := range dbids {
				at, ok := promotedAt(h, m, t0)
				if !ok {
					done, last = false, fmt.Sprintf("dbid %d not promoted", m)
					break
				}
				if at.After(stamped) {
					stamped = at
				}
			}
			if done {
				return time.Now(), stamped, nil
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return time.Time{}, time.Time{}, fmt.Errorf("the promotion committed: not reached (%s)", last)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func scaleHostLoss(ctx context.Context, o scaleOptions, r *sizeResult, cl *api.Client, hosts *scaleChild, realHost map[string]bool, log io.Writer) {
	var v, entries, prop []int64
	lost := map[string]bool{}
	for trial := range o.trials {
		settle(ctx, o, cl, lost, log)
		s, err := cl.Segments(ctx)
		if err != nil {
			r.why("host_loss_ms", err.Error())
			break
		}
		// A host whose every primary is in sync with a mirror on a host
		// still alive, holding perHost primaries.
		byHost := map[string][]int{}
		bad := map[string]bool{}
		for c := range r.Contents {
			p, m, ok := pairOK(s, c, lost)
			if !ok {
				bad[p.Hostname] = true
				continue
			}
			byHost[p.Hostname] = append(byHost[p.Hostname], m.DBID)
		}
		var names []string
		for h, ms := range byHost {
			if !bad[h] && !lost[h] && !realHost[h] && len(ms) == o.perHost {
				names = append(names, h)
			}
		}
		if len(names) == 0 {
			r.why("host_loss_ms", "no host left whose every primary is in sync")
			break
		}
		slices.SortFunc(names, func(a, b string) int { return scaleHostNum(a) - scaleHostNum(b) })
		h := names[0]
		lost[h] = true
		v0 := s.ConfigVersion
		t0 := time.Now()
		if err := hosts.post(ctx, "/kill-host?name="+h); err != nil {
			r.why("host_loss_ms", err.Error())
			break
		}
		seen, stamped, err := waitPromoted(ctx, o, cl, byHost[h], t0)
		if err != nil {
			r.why("host_loss_ms", fmt.Sprintf("trial %d: %v", trial+1, err))
			break
		}
		d := seen.Sub(t0)
		prop = append(prop, ms(stamped.Sub(t0)))
		s2, err := cl.Segments(ctx)
		if err == nil {
			entries = append(entries, int64(s2.ConfigVersion-v0))
		}
		fmt.Fprintf(log, "gpbench scale: %d agents: host-loss trial %d: %s lost, its %d mirrors promoted after %s\n", r.Agents, trial+1, h, len(byHost[h]), d.Round(time.Millisecond))
		v = append(v, ms(d))
	}
	r.HostLossMS = newP50Max(v)
	if len(prop) > 0 {
		r.note("host_loss_ms", fmt.Sprintf("from the host's loss (its instances crashed, its agent cut off) until the parent saw the last of its mirrors promoted in the committed history (polled every 10 ms); the leader proposed it after p50 %d ms", nearestRank(prop, 50)))
	}
	if len(entries) > 0 {
		r.RaftEntriesPerHL = &maxOnly{Max: slices.Max(entries)}
		r.note("raft_entries_per_host_loss", "config versions from before the kill to the state read after the last promotion; entries committed meanwhile for other reasons are counted too")
	}
}

func scaleHostNum(name string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(name, "sdw"))
	return n
}

func fmtOpt(p *p50Max) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%d/%d", p.P50, p.Max)
}

// scaleTable is the growth table, one row a size.
func scaleTable(rs []sizeResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-7s %-9s %-9s %-10s %-14s %-12s %-8s %-12s %-9s %-10s %-9s %-10s %-14s\n",
		"agents", "contents", "placement", "in_sync_s", "host_loss_ms", "kill_ms", "entries", "state_ms", "cpu_idle%", "agent_rss", "fenced", "snapshot", "real_kill_ms")
	for _, r := range rs {
		insync, entries, cpu, fenced := "never", "-", "-", "-"
		if r.InSyncMS != nil {
			insync = fmt.Sprintf("%.1f", float64(*r.InSyncMS)/1000)
		}
		if r.RaftEntriesPerHL != nil {
			entries = fmt.Sprint(r.RaftEntriesPerHL.Max)
		}
		if r.LeaderCPUIdlePct != nil {
			cpu = fmt.Sprintf("%.1f", *r.LeaderCPUIdlePct)
		}
		if r.FencedSpuriously != nil {
			fenced = fmt.Sprint(*r.FencedSpuriously)
		}
		rss := "-"
		if r.AgentRSSMB != nil {
			rss = fmt.Sprintf("%d MB", r.AgentRSSMB.Max)
		}
		snap := "-"
		if r.SnapshotBytes != nil {
			snap = fmt.Sprintf("%d KB", (*r.SnapshotBytes+512)/1024)
		}
		realKill := "-"
		if r.RealKillMS != nil {
			realKill = fmtOpt(r.RealKillMS)
			if r.RealPromotedWrites != nil {
				realKill += fmt.Sprintf(" (%dw)", *r.RealPromotedWrites)
			}
		}
		fmt.Fprintf(&b, "%-7d %-9d %-9s %-10s %-14s %-12s %-8s %-12s %-9s %-10s %-9s %-10s %-14s\n",
			r.Agents, r.Contents, r.Placement, insync, fmtOpt(r.HostLossMS), fmtOpt(r.KillMS), entries, fmtOpt(r.StateMS), cpu, rss, fenced, snap, realKill)
	}
	b.WriteString("(ms as p50/max; in_sync_s from init to every pair in sync; entries: Raft entries per host loss, max; snapshot: the largest Raft snapshot on the servers; real_kill_ms: kill -9 of a real PostgreSQL primary (--real), Nw: N promoted mirrors took a write)\n")
	return b.String()
}
