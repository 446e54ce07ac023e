package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gpagent/gpagent/agent"
	"github.com/gpagent/gpagent/internal/simnet"
	"github.com/gpagent/gpagent/simpg"
)

// Fixed ports of every scale agent: each agent has its own loopback IP,
// so the parent knows every address without asking.
const (
	scaleAPIPort    = 17000
	scaleRaftPort   = 17001
	scaleGossipPort = 17002
)

// scaleNodeSpec is what one scale-node child runs: the agents it hosts
// (with one simulated PostgreSQL world shared by all of them, so that a
// mirror in this process streams from its primary in this process) and
// where its control API listens.
type scaleNodeSpec struct {
	Dir string `json:"dir"`
	// DataDir holds the agents' data dirs (default Dir).
	DataDir string            `json:"data_dir,omitempty"`
	CtlIP   string            `json:"ctl_ip"`
	Agents  []scaleAgentSpec  `json:"agents"`
	Extra   map[string]string `json:"extra,omitempty"` // config lines added to every agent
	// Peers are the IPs of agents in other processes: a host this
	// process cuts off is cut off from them too (simnet cuts only
	// between hosts it knows).
	Peers []string `json:"peers,omitempty"`
	// GOGC sets this process's GC target (percent; 0: Go's default).
	GOGC int `json:"gogc,omitempty"`
}

type scaleAgentSpec struct {
	Name      string   `json:"name"`
	IP        string   `json:"ip"`
	Bootstrap bool     `json:"bootstrap,omitempty"`
	Join      []string `json:"join,omitempty"`
	// Client: the agent holds no Raft log (server: false).
	Client bool `json:"client,omitempty"`
	// Servers: the servers' API addresses, for a client without gossip
	// (servers: in its config, no join).
	Servers []string `json:"servers,omitempty"`
}

// cmdScaleNode is the child of gpbench scale: it runs the agents of its
// spec in this process with the simulated driver, real Raft, real
// memberlist and the real HTTP API over loopback, prints "ctl ADDR" once
// its control API listens, and runs until its standard input closes or
// it is signalled (the parent's death ends it too).
func cmdScaleNode(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("scale-node", flag.ContinueOnError)
	fs.SetOutput(stderr)
	specFile := fs.String("spec", "", "the JSON spec of the agents to run (written by gpbench scale)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *specFile == "" {
		fmt.Fprintln(stderr, "gpbench scale-node: --spec is required")
		return errUsage
	}
	b, err := os.ReadFile(*specFile)
	if err != nil {
		return fmt.Errorf("--spec: %w", err)
	}
	var spec scaleNodeSpec
	if err := json.Unmarshal(b, &spec); err != nil {
		return fmt.Errorf("--spec %s: %w", *specFile, err)
	}
	if spec.GOGC > 0 {
		debug.SetGCPercent(spec.GOGC)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // the parent closes our stdin (or dies): stop
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()

	logf, err := os.Create(filepath.Join(spec.Dir, "agents.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	// Warnings and errors only, unless GPBENCH_SCALE_LOG names another
	// level (info logs every topology change the leader commits; debug
	// every failed report or query): a diagnosis of a size that does
	// not come up needs them, a measurement does not.
	level := slog.LevelWarn
	if s := os.Getenv("GPBENCH_SCALE_LOG"); s != "" {
		if err := level.UnmarshalText([]byte(s)); err != nil {
			return fmt.Errorf("GPBENCH_SCALE_LOG: %w", err)
		}
	}
	log := slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: level}))
	if os.Getenv("GPBENCH_PROFILE_LOCKS") != "" {
		// /debug/pprof/mutex and /block then say which lock the
		// agents of this process queue on.
		runtime.SetMutexProfileFraction(10)
		runtime.SetBlockProfileRate(int(time.Millisecond))
	}
	world := simpg.NewWorld(simpg.Options{})
	defer world.Close()
	snet := simnet.New()
	for _, ip := range spec.Peers {
		snet.Host(ip)
	}

	n := &scaleNode{world: world, net: snet, ips: map[string]string{}}
	var wg sync.WaitGroup
	defer wg.Wait()
	dataDir := spec.Dir
	if spec.DataDir != "" {
		dataDir = spec.DataDir
	}
	for _, as := range spec.Agents {
		start := "join: [" + strings.Join(as.Join, ", ") + "]"
		if len(as.Servers) > 0 {
			start = "servers: [" + strings.Join(as.Servers, ", ") + "]"
		}
		if as.Bootstrap {
			start = "bootstrap: true"
		}
		var extra strings.Builder
		if as.Client {
			extra.WriteString("server: false\n")
		}
		for k, v := range spec.Extra {
			fmt.Fprintf(&extra, "%s: %s\n", k, v)
		}
		doc := fmt.Sprintf(`name: %s
address: %s
data_dir: %s
api_addr: %s:%d
raft_addr: %s:%d
gossip_addr: %s:%d
%s
postgres: {superuser_password: a, replication_password: b}
%s`, as.Name, as.IP, filepath.Join(dataDir, as.Name), as.IP, scaleAPIPort, as.IP, scaleRaftPort, as.IP, scaleGossipPort, start, extra.String())
		cfg, err := agent.ParseConfig([]byte(doc))
		if err != nil {
			return fmt.Errorf("agent %s config: %w", as.Name, err)
		}
		// As a documented config runs: the run's token (gpbench sets
		// $GPAGENT_TOKEN, the children inherit it) guards the API, and a
		// gossip key derived from it encrypts gossip in every process.
		cfg.Token = os.Getenv("GPAGENT_TOKEN")
		key := sha256.Sum256([]byte("gpbench gossip key: " + cfg.Token))
		cfg.GossipKeys = [][]byte{key[:]}
		alog := log.With("agent", as.Name)
		if slices.Contains(strings.Split(os.Getenv("GPBENCH_TRACE_AGENTS"), ","), as.Name) {
			// Debug logs of a few named agents only (every report's
			// versions and round trip, every view answered): what a
			// diagnosis of one host's lease needs, without a thousand
			// hosts' worth of debug logs.
			alog = slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelDebug})).With("agent", as.Name)
		}
		a, err := agent.NewWith(cfg, agent.Deps{Logger: alog, Driver: world.Host(as.Name), Network: snet.Host(as.IP)})
		if err != nil {
			return fmt.Errorf("agent %s: %w", as.Name, err)
		}
		n.ips[as.Name] = as.IP
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.Run(ctx); err != nil && ctx.Err() == nil {
				log.Error("agent stopped", "agent", as.Name, "err", err)
			}
		}()
	}

	ln, err := net.Listen("tcp", net.JoinHostPort(spec.CtlIP, "0"))
	if err != nil {
		return fmt.Errorf("control API: %w", err)
	}
	srv := &http.Server{Handler: n.mux(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	// The address also goes to a file in the child's folder, so that a
	// profile can be taken of a running size (/debug/pprof/ on it).
	_ = os.WriteFile(filepath.Join(spec.Dir, "ctl.addr"), []byte(ln.Addr().String()+"\n"), 0o644)
	w := bufio.NewWriter(stdout)
	fmt.Fprintf(w, "ctl %s\n", ln.Addr())
	if err := w.Flush(); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// scaleNode is a child's agents' shared parts, which its control API
// faults.
type scaleNode struct {
	world *simpg.World
	net   *simnet.Net
	ips   map[string]string // agent name -> IP
}

// mux is the control API: POST /kill-host?name=H loses host H (every
// instance there crashes and the host is cut off from every other, as a
// machine that died: its agent stays silent to the others, without the
// graceful leave a stopped agent would send); POST /crash?addr=A&port=P
// crashes one instance (kill -9 of its postmaster); GET /rss is this
// process's resident memory and how many agents share it; /debug/pprof/
// profiles the process (the bench's own control API, not the agent's).
func (n *scaleNode) mux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("/debug/pprof/", pprof.Index)
	m.HandleFunc("/debug/pprof/profile", pprof.Profile)
	m.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	m.HandleFunc("POST /kill-host", func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("name")
		ip, ok := n.ips[name]
		if !ok {
			http.Error(w, "no agent "+name+" in this process", http.StatusNotFound)
			return
		}
		n.net.Isolate(ip)
		n.world.KillHost(name)
	})
	m.HandleFunc("POST /crash", func(w http.ResponseWriter, r *http.Request) {
		port, err := strconv.Atoi(r.URL.Query().Get("port"))
		if err != nil {
			http.Error(w, "port: "+err.Error(), http.StatusBadRequest)
			return
		}
		n.world.Crash(r.URL.Query().Get("addr"), port)
	})
	m.HandleFunc("GET /rss", func(w http.ResponseWriter, r *http.Request) {
		kb, err := rssKB(os.Getpid())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]int64{"rss_kb": kb, "agents": int64(len(n.ips))})
	})
	return m
}

// rssKB reads VmRSS of a process from /proc.
func rssKB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}
