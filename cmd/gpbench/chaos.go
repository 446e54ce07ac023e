package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gpagent/gpagent/internal/netns"
	"github.com/gpagent/gpagent/topology"
)

// widenSpec rewrites the netns cluster spec with dirs primaries per
// segment host (and as many mirrors, grouped on the other host), so that
// the chaos run has 2*dirs contents.
func widenSpec(files *netns.Cluster, n *netns.Network, dir string, dirs int) error {
	data := filepath.Join(dir, "data")
	coord := n.Hosts[0]
	spec := topology.Spec{
		SegPrefix:   topology.DefaultSegPrefix,
		Coordinator: topology.CoordinatorSpec{Hostname: coord.Name, Address: coord.Addr, Port: netns.CoordPort, DataDir: filepath.Join(data, "coordinator")},
		Primary:     topology.PortDirs{PortBase: netns.PrimaryBase},
		Mirror:      &topology.MirrorSpec{PortDirs: topology.PortDirs{PortBase: netns.MirrorBase}, Placement: string(topology.PlacementGroup)},
	}
	for i := range dirs {
		spec.Primary.DataDirs = append(spec.Primary.DataDirs, filepath.Join(data, "primary"+strconv.Itoa(i)))
		spec.Mirror.DataDirs = append(spec.Mirror.DataDirs, filepath.Join(data, "mirror"+strconv.Itoa(i)))
	}
	for _, h := range n.Hosts[1:] {
		spec.SegmentHosts = append(spec.SegmentHosts, topology.Host{Hostname: h.Name, Address: h.Addr})
	}
	y, err := spec.YAML()
	if err != nil {
		return err
	}
	return os.WriteFile(files.Spec, append([]byte("# gpagent chaos cluster over network namespaces\n"), y...), 0o644)
}

// chaosWriter inserts rows on one content through its multi-host
// connection string and keeps every insert's outcome: ok, failed (the
// server refused it, or no connection: it did not happen) or
// indeterminate (no answer, a lost connection, or a success carrying
// "canceling wait for synchronous replication": committed locally, maybe
// not on the mirror).
type chaosWriter struct {
	content int
	cfg     *pgx.ConnConfig
	ids     *atomic.Int64

	mu          sync.Mutex
	acked       []int64
	failed      int
	indet       []int64
	lastAck     time.Time
	lastErr     string
	cancelNotes atomic.Int64
}

func (w *chaosWriter) run(ctx context.Context) {
	var conn *pgx.Conn
	defer func() { closeConn(conn) }()
	cfg := w.cfg.Copy()
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		if strings.Contains(n.Message, "canceling wait for synchronous replication") {
			w.cancelNotes.Add(1)
		}
	}
	for ctx.Err() == nil {
		if conn == nil {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			c, err := pgx.ConnectConfig(cctx, cfg)
			cancel()
			if err != nil {
				w.note(err)
				sleepCtx(ctx, 100*time.Millisecond)
				continue
			}
			conn = c
		}
		id := w.ids.Add(1)
		before := w.cancelNotes.Load()
		octx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := conn.Exec(octx, insertRow, id)
		cancel()
		if ctx.Err() != nil {
			w.mu.Lock()
			w.indet = append(w.indet, id)
			w.mu.Unlock()
			return
		}
		var pgErr *pgconn.PgError
		w.mu.Lock()
		switch {
		case err == nil && w.cancelNotes.Load() == before:
			w.acked, w.lastAck = append(w.acked, id), time.Now()
		case err == nil:
			w.indet = append(w.indet, id)
		case errors.As(err, &pgErr):
			w.failed++
		default:
			w.indet = append(w.indet, id)
		}
		w.mu.Unlock()
		if err != nil {
			w.note(err)
			closeConn(conn)
			conn = nil
		}
		sleepCtx(ctx, 20*time.Millisecond)
	}
}

func (w *chaosWriter) note(err error) {
	w.mu.Lock()
	w.lastErr = oneLine(err.Error())
	w.mu.Unlock()
}

func (w *chaosWriter) ackedSince(t0 time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastAck.After(t0)
}

// chaosResult is the last line of gpbench chaos.
type chaosResult struct {
	Seed          uint64         `json:"seed"`
	Minutes       float64        `json:"minutes"`
	Faults        int            `json:"faults"`
	Acked         int            `json:"acked"`
	Lost          int            `json:"lost"`
	LostAcked     int            `json:"lost_acked_writes"`
	SplitBrain    int            `json:"split_brain"`
	SplitEvents   int            `json:"split_brain_events"`
	Stranded      int            `json:"stranded"`
	StrandedC     int            `json:"stranded_contents"`
	Indeterminate int            `json:"indeterminate"`
	Failed        int            `json:"failed"`
	ByFault       map[string]int `json:"by_fault"`
}

func cmdChaos(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	minutes := fs.Float64("minutes", 3, "how long to inject faults")
	seed := fs.Uint64("seed", 1, "seed of the fault schedule")
	gpagent := fs.String("gpagent", "", "gpagent binary (default: next to gpbench, or on PATH)")
	build := fs.Bool("build", false, "build gpagent from this source tree first")
	keep := fs.Bool("keep", false, "keep the cluster's folder")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *minutes <= 0 {
		fmt.Fprintf(stderr, "gpbench chaos: --minutes must be positive, not %v\n", *minutes)
		return errUsage
	}
	if err := netns.Available(); err != nil {
		return fmt.Errorf("chaos needs network namespaces (root): %w", err)
	}
	bin, cleanup, err := resolveGpagent(ctx, *gpagent, *build, stderr)
	if err != nil {
		return err
	}
	defer cleanup()
	o := failoverOptions{startTimeout: 5 * time.Minute, timeout: 2 * time.Minute, recoverTimeout: 5 * time.Minute, keep: *keep}
	t := newPartitionTarget(o, bin, stderr)
	t.segDirs = 2
	defer func() {
		if *keep && t.cur != nil {
			t.kept[t.cur.dir] = true
		}
		if cerr := t.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if err := t.start(ctx); err != nil {
		return err
	}
	c := t.cur
	if _, err := c.d.gpagentWithin(ctx, 5*time.Minute, "initstandby", "-s", "sdw1", "-P", strconv.Itoa(netns.CoordPort), "-a"); err != nil {
		return fmt.Errorf("initstandby: %w", err)
	}
	st, err := c.d.state(ctx)
	if err != nil {
		return err
	}
	var contents []int
	for _, s := range st.Segments {
		if s.Content >= 0 && s.Role == "p" {
			contents = append(contents, s.Content)
		}
	}
	sort.Ints(contents)
	fmt.Fprintf(stderr, "gpbench: chaos on %d contents and a standby coordinator, seed %d, %.1f minutes\n", len(contents), *seed, *minutes)

	var ids atomic.Int64
	ids.Store(time.Now().UnixNano() / 1000)
	wctx, stopWriters := context.WithCancel(ctx)
	defer stopWriters()
	var wg sync.WaitGroup
	writers := map[int]*chaosWriter{}
	watchers := map[int]*watcher{}
	for _, ct := range contents {
		cfg, insts, err := contentTarget(ctx, c.d, st, ct)
		if err != nil {
			return err
		}
		if err := prepareTable(ctx, cfg, &ids); err != nil {
			return fmt.Errorf("content %d: %w", ct, err)
		}
		w := &chaosWriter{content: ct, cfg: cfg, ids: &ids}
		watchCfg := cfg.Copy()
		watchCfg.AfterConnect = c.refuseFenced
		wa := &watcher{base: watchCfg, instances: insts, interval: 100 * time.Millisecond, timeout: 300 * time.Millisecond}
		writers[ct], watchers[ct] = w, wa
		wg.Add(2)
		go func() { defer wg.Done(); w.run(wctx) }()
		go func() { defer wg.Done(); wa.run(wctx) }()
	}

	rnd := rand.New(rand.NewPCG(*seed, 0x6368616f73))
	res := chaosResult{Seed: *seed, Minutes: *minutes, ByFault: map[string]int{}}
	end := time.Now().Add(time.Duration(*minutes * float64(time.Minute)))
	var stopped []int // SIGSTOPped pids
	agentDown := map[string]bool{}
	resumeAll := func() {
		for _, pid := range stopped {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
		stopped = nil
	}
	for time.Now().Before(end) && ctx.Err() == nil {
		st, err := c.d.state(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "gpbench: state: %v\n", err)
			sleepCtx(ctx, time.Second)
			continue
		}
		kinds := []string{"kill9", "sigstop_postgres", "sigstop_agent", "host_kill", "host_cut", "leader_cut", "agent_restart", "operator"}
		kind := kinds[rnd.IntN(len(kinds))]
		host := nsHosts[rnd.IntN(len(nsHosts))]
		// Faults on instances hit one recorded up: a demoted one is
		// already down until recoverseg.
		var up []segment
		for _, x := range st.Segments {
			if x.Status == "u" {
				up = append(up, x)
			}
		}
		if len(up) == 0 {
			up = st.Segments
		}
		seg := up[rnd.IntN(len(up))]
		desc := kind
		var undo func()
		switch kind {
		case "kill9", "sigstop_postgres":
			pid, perr := postmasterPID(seg.DataDir)
			if perr != nil {
				desc += " (not running: " + seg.DataDir + ")"
				break
			}
			if kind == "kill9" {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			} else {
				_ = syscall.Kill(pid, syscall.SIGSTOP)
				stopped = append(stopped, pid)
				undo = resumeAll
			}
			desc += fmt.Sprintf(" dbid %d (%s) on %s", seg.DBID, seg.Role, seg.Hostname)
		case "sigstop_agent":
			a := c.agentOn(host)
			if a == nil || agentDown[host] {
				break
			}
			_ = syscall.Kill(a.Pid(), syscall.SIGSTOP)
			stopped = append(stopped, a.Pid())
			undo = resumeAll
			desc += " " + host
		case "host_kill", "agent_restart":
			if agentDown[host] {
				break
			}
			if err := c.stopAgent(host, kind == "host_kill"); err != nil {
				fmt.Fprintf(stderr, "gpbench: %s %s: %v\n", kind, host, err)
			}
			agentDown[host] = true
			h := host
			undo = func() {
				if err := c.startAgent(t.bin, h); err != nil {
					fmt.Fprintf(stderr, "gpbench: restart agent %s: %v\n", h, err)
				}
				delete(agentDown, h)
			}
			desc += " " + host
		case "host_cut", "leader_cut":
			if kind == "leader_cut" {
				if m, err := c.members(ctx); err == nil && m.Leader != "" {
					host = m.Leader
				}
			}
			c.mu.Lock()
			c.victim, c.cutNow = host, true
			c.mu.Unlock()
			if err := c.net.Partition(ctx, host); err != nil {
				fmt.Fprintf(stderr, "gpbench: cut %s: %v\n", host, err)
			}
			undo = func() { _ = c.heal(context.WithoutCancel(ctx)) }
			desc += " " + host
		case "operator":
			cmds := [][]string{{"recoverseg", "-a"}, {"recoverseg", "-F", "-a"}, {"recoverseg", "-r", "-a"},
				{"switchover", "--content", strconv.Itoa(contents[rnd.IntN(len(contents))]), "-a"}, {"pause"}, {"resume"}}
			cmd := cmds[rnd.IntN(len(cmds))]
			_, cerr := c.d.gpagentWithin(ctx, 30*time.Second, cmd...)
			desc += fmt.Sprintf(" %s: %v", strings.Join(cmd, " "), cerr)
		}
		res.Faults++
		res.ByFault[kind]++
		fmt.Fprintf(stderr, "gpbench: chaos %s: %s\n", time.Now().Format("15:04:05"), desc)
		sleepCtx(ctx, time.Duration(2+rnd.IntN(10))*time.Second)
		if rnd.IntN(4) == 0 {
			_, cerr := c.d.gpagentWithin(ctx, 30*time.Second, "recoverseg", "-a")
			fmt.Fprintf(stderr, "gpbench: chaos operator during the fault: recoverseg -a: %v\n", cerr)
		}
		if undo != nil {
			undo()
		}
		sleepCtx(ctx, time.Duration(1+rnd.IntN(5))*time.Second)
	}

	// Final heal: network, stopped processes, agents, failover on.
	fmt.Fprintf(stderr, "gpbench: final heal\n")
	_ = c.heal(context.WithoutCancel(ctx))
	resumeAll()
	for h := range agentDown {
		if err := c.startAgent(t.bin, h); err != nil {
			fmt.Fprintf(stderr, "gpbench: restart agent %s: %v\n", h, err)
		}
	}
	healed := time.Now()
	_, _ = c.d.gpagentWithin(ctx, 30*time.Second, "resume")
	// Stranded: every content takes writes within the bound.
	bound := 2 * time.Minute
	for _, ct := range contents {
		for !writers[ct].ackedSince(healed) && time.Since(healed) < bound && ctx.Err() == nil {
			sleepCtx(ctx, 200*time.Millisecond)
		}
		if !writers[ct].ackedSince(healed) {
			res.Stranded++
			fmt.Fprintf(stderr, "gpbench: content %d STRANDED: no write acknowledged within %s of the final heal; last error: %s\n", ct, bound, writers[ct].lastErr)
		}
	}
	// Every pair back in sync: recoverseg, -F if that is not enough.
	inSync := func(st *clusterState) bool {
		for _, s := range st.Segments {
			if s.Status != "u" || s.Mode != "s" {
				return false
			}
		}
		return len(st.Segments) > 0
	}
	for i, args := range [][]string{{"recoverseg", "-a"}, {"recoverseg", "-a"}, {"recoverseg", "-F", "-a"}} {
		if st, err := c.d.state(ctx); err == nil && inSync(st) {
			break
		}
		_, rerr := c.d.gpagentWithin(ctx, 5*time.Minute, args...)
		fmt.Fprintf(stderr, "gpbench: after the heal, %s (%d): %v\n", strings.Join(args, " "), i+1, rerr)
		_, _ = waitState(ctx, c.d, time.Minute, "every pair in sync", inSync)
	}
	if st, err := c.d.state(ctx); err != nil || !inSync(st) {
		fmt.Fprintf(stderr, "gpbench: warning: not every pair in sync after recoverseg (%v)\n", err)
	}
	sleepCtx(ctx, 2*time.Second)
	stopWriters()
	wg.Wait()

	for _, ct := range contents {
		w := writers[ct]
		res.Acked += len(w.acked)
		res.Indeterminate += len(w.indet)
		res.Failed += w.failed
		if n := watchers[ct].splitBrain(); n > 0 {
			res.SplitBrain += n
			fmt.Fprintf(stderr, "gpbench: content %d: SPLIT BRAIN: %s\n", ct, watchers[ct].splitDetail())
		}
		missing, err := missingIDs(ctx, w.cfg, w.acked)
		if err != nil {
			fmt.Fprintf(stderr, "gpbench: content %d: reading back: %v\n", ct, err)
			res.Lost += len(w.acked)
			continue
		}
		res.Lost += len(missing)
		if len(missing) > 0 {
			fmt.Fprintf(stderr, "gpbench: content %d: %d acknowledged writes LOST, first %v\n", ct, len(missing), missing[:min(5, len(missing))])
		}
	}
	res.LostAcked, res.SplitEvents, res.StrandedC = res.Lost, res.SplitBrain, res.Stranded
	line, _ := json.Marshal(res)
	fmt.Fprintln(stdout, string(line))
	if res.Lost > 0 || res.SplitBrain > 0 || res.Stranded > 0 {
		return fmt.Errorf("safety: %d lost, %d split brain polls, %d stranded contents (seed %d)", res.Lost, res.SplitBrain, res.Stranded, *seed)
	}
	return nil
}

func (c *nsCluster) agentOn(host string) *netns.Agent {
	for _, a := range c.agents {
		if a.Host.Name == host && !a.Exited() {
			return a
		}
	}
	return nil
}

// stopAgent stops host's agent: a kill -9 of it and of its postmasters
// when whole is set (the host dies), else a plain stop (an agent
// restart; its instances stop with it as the config says).
func (c *nsCluster) stopAgent(host string, whole bool) error {
	a := c.agentOn(host)
	if a == nil {
		return nil
	}
	if whole {
		_ = syscall.Kill(a.Pid(), syscall.SIGKILL)
		st, err := c.d.state(context.Background())
		if err != nil {
			return err
		}
		for _, s := range st.Segments {
			if s.Hostname != host {
				continue
			}
			if pid, err := postmasterPID(s.DataDir); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		return nil
	}
	return a.Stop(30 * time.Second)
}

func (c *nsCluster) startAgent(bin, host string) error {
	h := c.net.Host(host)
	a, err := c.files.StartAgent(bin, h)
	if a != nil {
		c.agents = append(c.agents, a)
	}
	return err
}

// splitDetail names the polls at which two instances answered writable:
// how many, the first and last, and which instances.
func (w *watcher) splitDetail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var first, last time.Time
	n := 0
	who := map[string]bool{}
	for _, p := range w.polls {
		if count(p.primary) < 2 {
			continue
		}
		if n == 0 {
			first = p.at
		}
		last = p.at
		n++
		for i, prim := range p.primary {
			if prim {
				who[w.instances[i].String()] = true
			}
		}
	}
	var names []string
	for k := range who {
		names = append(names, k)
	}
	sort.Strings(names)
	return fmt.Sprintf("%d polls from %s to %s: %s answered out of recovery and writable", n, first.Format("15:04:05.000"), last.Format("15:04:05.000"), strings.Join(names, " and "))
}
