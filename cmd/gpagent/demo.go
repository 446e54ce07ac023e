package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/gpagent/gpagent/api"
)

func cmdDemo(ctx context.Context, cio cmdIO, args []string) error {
	fs := newFlags(cio, "demo", "[--dir DIR] [--hosts N] [--no-mirrors] [--auto-recover] [--restart-agents=false]")
	dir := fs.String("dir", "", "where the demo keeps its configs and data (default: a new temporary folder)")
	hosts := fs.Int("hosts", 3, "simulated hosts, one agent each on 127.0.0.1..N (1 to 9)")
	noMirrors := fs.Bool("no-mirrors", false, "start without mirrors, so gpagent addmirrors can be tried")
	autoRecover := fs.Bool("auto-recover", false, "set auto_recover: incremental (failed instances come back as mirrors unasked)")
	restart := fs.Bool("restart-agents", true, "restart an agent that dies, as systemd would (false: a killed agent stays down, a host loss)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *hosts < 1 || *hosts > 9 {
		return fmt.Errorf("--hosts: %d is not 1 to 9", *hosts)
	}
	// Under `gpagent demo | tee demo.log`, Ctrl-C stops tee first: a
	// write to the closed pipe would then kill the demo by SIGPIPE half
	// way through stopping its agents. Ignored, such a write fails with
	// EPIPE, which the demo does not act on: stopping goes on.
	signal.Ignore(syscall.SIGPIPE)
	d, err := prepareDemo(*dir, *hosts, *autoRecover)
	if err != nil {
		return err
	}
	fmt.Fprintf(cio.out, "demo: %d hosts, files under %s\n", len(d.hosts), d.dir)
	var procs []*agentProcess
	defer func() { stopAll(procs) }()
	for _, h := range d.hosts {
		p := &agentProcess{dir: h.dir, log: cio.err, name: h.name}
		if err := p.start(); err != nil {
			return err
		}
		procs = append(procs, p)
		if *restart {
			go p.keepRunning(ctx)
		}
	}
	tc, err := d.operatorTLS()
	if err != nil {
		return err
	}
	c := api.NewTLSClient(d.hosts[0].apiAddr, tc)
	if err := waitMesh(ctx, c, len(d.hosts), 60*time.Second); err != nil {
		return fmt.Errorf("agents did not form a cluster (see %s/*/agent.log): %w", d.dir, err)
	}
	s, err := c.Init(ctx, api.InitRequest{Spec: *d.spec, NoMirrors: *noMirrors})
	if err != nil {
		return err
	}
	fmt.Fprintf(cio.out, "demo: creating %d instances\n", len(s.Segments))
	dbids := dbidsOf(s.Segments)
	if err := waitFor(ctx, cio.out, c, 10*time.Minute, dbids, allUp(dbids, true)); err != nil {
		return err
	}
	if err := seedRegion(ctx, c, d.dir); err != nil {
		return err
	}
	fmt.Fprintln(cio.out, "demo: table region created, distributed by r_regionkey (5 rows)")
	envFile := filepath.Join(d.dir, "env")
	// The CLI speaks HTTPS trusting the demo's CA and presents the
	// operator certificate; no cluster token: with TLS on, certificates
	// name every caller, and a token would pass every guard.
	env := fmt.Sprintf("export GPAGENT_ADDR=%s\nexport GPAGENT_CACERT=%s\nexport GPAGENT_CLIENT_CERT=%s\nexport GPAGENT_CLIENT_KEY=%s\nexport PGPASSFILE=%s\n",
		d.hosts[0].apiAddr, d.caFile, d.opCert, d.opKey, filepath.Join(d.dir, "pgpass"))
	if err := os.WriteFile(envFile, []byte(env), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(cio.out, `
demo cluster is up. Agent API: https://%[1]s (any agent's API will do)

In another terminal:
  . %[2]s   # sets GPAGENT_ADDR, GPAGENT_CACERT (the demo's CA) and
            # GPAGENT_CLIENT_CERT/KEY: an operator certificate (%[3]s/tls);
            # a change without it gets 401
  gpagent state            # summary (gpstate)
  gpagent state -s         # every instance
  gpagent members          # agents, gossip status, Raft roles
  gpagent addmirrors -a    # (started with --no-mirrors) add mirrors (gpaddmirrors)
  gpagent history          # every topology change
  psql "$(gpagent connstr --content 0)"   # follows the primary of content 0
  gpagent pause / resume   # automatic failover off / on
  gpagent switchover --content 0        # planned, lossless role swap
  gpagent recoverseg -a / recoverseg -r -a   # recover failed instances / rebalance
  gpagent initstandby -P %[4]d -a       # a standby coordinator (gpinitstandby)

Agent logs: %[3]s/<host>/agent.log. Press Ctrl-C to stop the demo and every instance it started.
`, d.hosts[0].apiAddr, envFile, d.dir, d.standbyPort)
	<-ctx.Done()
	fmt.Fprintln(cio.out, "demo: stopping")
	if err := stopAll(procs); err != nil {
		return err
	}
	procs = nil
	fmt.Fprintln(cio.out, "demo: stopped")
	return nil
}

// stopAll stops every agent at once (each stops its own instances).
func stopAll(procs []*agentProcess) error {
	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Go(func() { errs[i] = p.stop() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// waitMesh waits until a leader is elected and every agent is alive in
// the mesh.
func waitMesh(ctx context.Context, c *api.Client, hosts int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := meshReady(ctx, c, hosts)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func meshReady(ctx context.Context, c *api.Client, hosts int) error {
	s, err := c.State(ctx)
	if err != nil {
		return err
	}
	if s.Leader == "" {
		return errors.New("no Raft leader elected yet")
	}
	m, err := c.Members(ctx)
	if err != nil {
		return err
	}
	alive, inRaft := 0, 0
	for _, x := range m.Members {
		if x.Status == "alive" {
			alive++
		}
		if x.RaftRole != "none" {
			inRaft++
		}
	}
	if alive < hosts || inRaft < hosts {
		return fmt.Errorf("%d of %d agents alive, %d in Raft", alive, hosts, inRaft)
	}
	return nil
}

// agentProcess runs one agent as a child process and restarts it when it
// dies, as systemd would on a real host. The postmasters it starts are in
// their own sessions, so they outlive a killed agent and are adopted by
// the next one.
type agentProcess struct {
	dir  string
	name string
	log  io.Writer

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
	stopping bool
}

func (p *agentProcess) start() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	logFile, err := os.OpenFile(filepath.Join(p.dir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, "agent", "--config", filepath.Join(p.dir, "agent.yaml"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group: Ctrl-C in the terminal reaches the demo,
	// which then stops the agent in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start agent: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logFile.Close(); close(exited) }()
	if err := os.WriteFile(filepath.Join(p.dir, "agent.pid"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		return err
	}
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	return nil
}

// keepRunning restarts the agent whenever it exits, until stop.
func (p *agentProcess) keepRunning(ctx context.Context) {
	for {
		p.mu.Lock()
		exited := p.exited
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-exited:
		}
		p.mu.Lock()
		stopping := p.stopping
		p.mu.Unlock()
		if stopping {
			return
		}
		fmt.Fprintf(p.log, "demo: agent %s exited; restarting it\n", p.name)
		// A short pause keeps a crash loop from spinning.
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
		if err := p.start(); err != nil {
			fmt.Fprintf(p.log, "demo: restart agent: %v\n", err)
			return
		}
	}
}

// stop asks the agent to stop (SIGTERM: it stops its instances too, as
// the demo config says) and waits for it.
func (p *agentProcess) stop() error {
	p.mu.Lock()
	p.stopping = true
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-exited:
		return nil
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return nil
	case <-time.After(90 * time.Second):
		_ = cmd.Process.Kill()
		return errors.New("agent did not stop within 90s; killed it")
	}
}
