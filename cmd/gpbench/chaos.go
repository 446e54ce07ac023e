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
	acked       []chaosAck // with when each was acknowledged
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
			now := time.Now()
			w.acked, w.lastAck = append(w.acked, chaosAck{id: id, at: now}), now
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
	Seed          uint64                    `json:"seed"`
	Minutes       float64                   `json:"minutes"`
	Faults        int                       `json:"faults"`
	Acked         int                       `json:"acked"`
	Lost          int                       `json:"lost"`
	LostAcked     int                       `json:"lost_acked_writes"`
	SplitBrain    int                       `json:"split_brain"`
	SplitEvents   int                       `json:"split_brain_events"`
	Stranded      int                       `json:"stranded"`
	StrandedC     int                       `json:"stranded_contents"`
	Indeterminate int                       `json:"indeterminate"`
	Failed        int                       `json:"failed"`
	ByFault       map[string]chaosKindStats `json:"by_fault"`
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
	writersStart := time.Now()
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
	res := chaosResult{Seed: *seed, Minutes: *minutes}
	var faults []chaosFault
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
		// The fault's window opens before it is carried out: a write
		// cut by it is its doing.
		faults = append(faults, chaosFault{kind: kind, at: time.Now()})
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
			if cmd[0] == "pause" {
				// An operator's maintenance window: failover stays off for
				// this fault's window only. Left paused, every later
				// fault would be a double fault with no failover, and the
				// run would measure the pause rather than the faults.
				undo = func() {
					_, rerr := c.d.gpagentWithin(ctx, 30*time.Second, "resume")
					fmt.Fprintf(stderr, "gpbench: chaos: the pause ends: resume: %v\n", rerr)
				}
			}
		}
		res.Faults++
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
	stranded := map[int]bool{}
	for _, ct := range contents {
		for !writers[ct].ackedSince(healed) && time.Since(healed) < bound && ctx.Err() == nil {
			sleepCtx(ctx, 200*time.Millisecond)
		}
		if !writers[ct].ackedSince(healed) {
			res.Stranded++
			stranded[ct] = true
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
	writersStop := time.Now()

	var records []chaosContentRecord
	for _, ct := range contents {
		w := writers[ct]
		rec := chaosContentRecord{content: ct, acks: w.acked, split: watchers[ct].splitTimes(), stranded: stranded[ct]}
		ids := make([]int64, len(w.acked))
		for i, a := range w.acked {
			ids[i] = a.id
		}
		res.Acked += len(w.acked)
		res.Indeterminate += len(w.indet)
		res.Failed += w.failed
		if n := watchers[ct].splitBrain(); n > 0 {
			res.SplitBrain += n
			fmt.Fprintf(stderr, "gpbench: content %d: SPLIT BRAIN: %s\n", ct, watchers[ct].splitDetail())
		}
		missing, err := missingIDs(ctx, w.cfg, ids)
		if err != nil {
			fmt.Fprintf(stderr, "gpbench: content %d: reading back: %v\n", ct, err)
			missing = ids // unread is unproven: count every one lost
		}
		rec.lost = missing
		records = append(records, rec)
		res.Lost += len(missing)
		if len(missing) > 0 {
			fmt.Fprintf(stderr, "gpbench: content %d: %d acknowledged writes LOST, first %v\n", ct, len(missing), missing[:min(5, len(missing))])
		}
	}
	res.LostAcked, res.SplitEvents, res.StrandedC = res.Lost, res.SplitBrain, res.Stranded
	var figures []chaosFaultFigure
	res.ByFault, figures = attributeChaos(faults, writersStart, healed, writersStop, records)
	for i, f := range faults {
		fmt.Fprintf(stderr, "gpbench: fault %d %s\n", i+1, chaosFaultLine(f, figures[i]))
	}
	fmt.Fprint(stdout, chaosTable(res.ByFault))
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

// splitTimes: when the polls at which two instances answered writable
// were taken.
func (w *watcher) splitTimes() []time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	var at []time.Time
	for _, p := range w.polls {
		if count(p.primary) >= 2 {
			at = append(at, p.at)
		}
	}
	return at
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

// The attribution of gpbench chaos's outcomes to the fault kinds.
//
// Every fault injected opens a window: from its injection to the next
// fault's injection, the last one to the final heal. Outcomes are charged
// to a window, and so to its fault's kind:
//
//   - a lost acknowledged write, to the window in which it was
//     acknowledged;
//   - a split-brain poll (two instances of one content out of recovery
//     and writable), to the window in which it was taken;
//   - write unavailability and stranded contents, to the fault that owns
//     the stretch without acknowledged writes (below).
//
// Write unavailability, what an operator means by "writes were
// unavailable for X ms after that fault": on one content, a stretch is
// the time between two consecutive acknowledged writes (failed and
// indeterminate writes do not count; a content that never takes a write
// again has its stretch run to the end of the records). A stretch belongs
// to the first fault injected while it was under way if writes were still
// flowing then (the last acknowledged write came at most
// chaosAvailableGrace before the injection: the fault stopped the writes),
// and is measured from that injection; otherwise to the fault in whose
// window it began (it was already under way at the later injections,
// which did not cause it), measured from its beginning or that fault's
// injection, whichever is later. A fault's write unavailability is its
// longest stretch, the maximum over every content; each stretch counts for
// one fault only. A fault that owns no stretch on any content (it came in
// the middle of an outage of every content, and none came back in its
// window) is unmeasured: counted apart, not as 0 ms. A fault that disturbed nothing shows the writers'
// ordinary spacing (some tens of ms). A stranded content (no write
// acknowledged within the bound after the final heal) is charged to the
// owner of the stretch under way at the final heal.
//
// Outcomes before the first fault or after the final heal go to the
// pseudo-kinds chaosBeforeFaults and chaosAfterHeal, shown only when they
// hold something: so every total of the JSON line is the sum of its
// by_fault column.

// chaosAvailableGrace: a content whose last acknowledged write is at most
// this old at an injection was taking writes then. The writers write
// every ~20 ms plus the insert's round trip; a second is far above that
// even on a loaded machine, and far below any failover.
const chaosAvailableGrace = time.Second

const (
	chaosBeforeFaults = "before_faults"
	chaosAfterHeal    = "after_final_heal"
)

// chaosFault is one injected fault: its kind and when it was injected.
type chaosFault struct {
	kind string
	at   time.Time
}

// chaosAck is one acknowledged write.
type chaosAck struct {
	id int64
	at time.Time
}

// chaosContentRecord is what the writer and the watcher of one content
// recorded, and what the checks found.
type chaosContentRecord struct {
	content  int
	acks     []chaosAck  // in acknowledgement order
	lost     []int64     // acknowledged ids not read back
	split    []time.Time // polls at which two instances were writable
	stranded bool
}

// chaosFaultFigure is one fault's write unavailability: by content, its
// longest stretch (contents with none are absent), and the max of them.
// A fault that owns no stretch at all (no content took a write in its
// window, nor had taken one in the second before it) is unmeasured: it
// came in the middle of an outage it did not cause, on every content.
type chaosFaultFigure struct {
	byContent   map[int]time.Duration
	unavailable time.Duration
	content     int // the content of the max
}

func (f chaosFaultFigure) measured() bool { return len(f.byContent) > 0 }

// chaosMS is the p50 and the max of a fault kind's write unavailability,
// over its faults, in ms.
type chaosMS struct {
	P50 int64 `json:"p50"`
	Max int64 `json:"max"`
}

// chaosKindStats is one entry of by_fault.
type chaosKindStats struct {
	Count         int     `json:"count"`
	UnavailableMS chaosMS `json:"unavailable_ms"` // over the measured faults
	// Unmeasured: faults of the kind that owned no stretch (see
	// chaosFaultFigure), left out of UnavailableMS rather than counted as 0.
	Unmeasured int `json:"unmeasured,omitempty"`
	Lost       int `json:"lost"`
	Split      int `json:"split"`
	Stranded   int `json:"stranded"`
}

// chaosWindows finds a moment's window among faults (sorted by
// injection, ending at healed).
type chaosWindows struct {
	faults []chaosFault
	healed time.Time
}

// index is the fault whose window holds t: -1 before the first fault,
// len(faults) at or after the final heal.
func (w chaosWindows) index(t time.Time) int {
	if !t.Before(w.healed) {
		return len(w.faults)
	}
	// The first fault injected after t, minus one: the last at or before.
	return sort.Search(len(w.faults), func(i int) bool { return w.faults[i].at.After(t) }) - 1
}

func (w chaosWindows) kind(i int) string {
	switch {
	case i < 0:
		return chaosBeforeFaults
	case i >= len(w.faults):
		return chaosAfterHeal
	}
	return w.faults[i].kind
}

// owner is the fault that owns the stretch without acknowledged writes
// from begin to end (see the comment at the top), and the length charged
// to it; -1 or len(faults) for none.
func (w chaosWindows) owner(begin, end time.Time) (int, time.Duration) {
	// The first fault injected while the stretch was under way...
	first := sort.Search(len(w.faults), func(i int) bool { return w.faults[i].at.After(begin) })
	if first < len(w.faults) && w.faults[first].at.Before(end) && w.faults[first].at.Sub(begin) <= chaosAvailableGrace {
		// ...while writes were still flowing: it stopped them.
		return first, end.Sub(w.faults[first].at)
	}
	i := w.index(begin)
	if i < 0 || i >= len(w.faults) {
		return i, end.Sub(begin)
	}
	return i, end.Sub(laterOf(begin, w.faults[i].at))
}

func laterOf(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// attributeChaos charges the run's outcomes to the fault kinds. faults are
// in injection order; healed is the final heal, start and stop when the
// writers started and stopped.
func attributeChaos(faults []chaosFault, start, healed, stop time.Time, records []chaosContentRecord) (map[string]chaosKindStats, []chaosFaultFigure) {
	w := chaosWindows{faults: faults, healed: healed}
	stats := map[string]chaosKindStats{}
	add := func(kind string, f func(*chaosKindStats)) {
		s := stats[kind]
		f(&s)
		stats[kind] = s
	}
	for _, f := range faults {
		add(f.kind, func(s *chaosKindStats) { s.Count++ })
	}
	figures := make([]chaosFaultFigure, len(faults))
	for i := range figures {
		figures[i] = chaosFaultFigure{byContent: map[int]time.Duration{}, content: -1}
	}
	for _, r := range records {
		ackedAt := make(map[int64]time.Time, len(r.acks))
		strandedBy := len(faults) // the owner of the stretch under way at the heal
		stretch := func(begin, end time.Time) {
			i, d := w.owner(begin, end)
			if i >= 0 && i < len(faults) {
				f := &figures[i]
				if old, ok := f.byContent[r.content]; !ok || d > old {
					f.byContent[r.content] = d
				}
				if f.content < 0 || d > f.unavailable {
					f.unavailable, f.content = d, r.content
				}
			}
			if begin.Before(healed) && !end.Before(healed) {
				strandedBy = i
			}
		}
		prev := start
		for _, a := range r.acks {
			ackedAt[a.id] = a.at
			stretch(prev, a.at)
			prev = a.at
		}
		// The last stretch, to the end of the records: the ordinary
		// spacing after the heal, or the whole outage of a content that
		// never came back.
		stretch(prev, stop)
		if r.stranded {
			// Stranded: no write within the bound after the heal, so the
			// stretch under way at the heal is the one that did not end.
			add(w.kind(strandedBy), func(s *chaosKindStats) { s.Stranded++ })
		}
		for _, id := range r.lost {
			at, ok := ackedAt[id]
			if !ok {
				// Not among the acknowledged writes: cannot happen, but
				// a loss must never vanish from the table.
				at = start
			}
			add(w.kind(w.index(at)), func(s *chaosKindStats) { s.Lost++ })
		}
		for _, at := range r.split {
			add(w.kind(w.index(at)), func(s *chaosKindStats) { s.Split++ })
		}
	}
	byKind := map[string][]int64{}
	for i, f := range faults {
		if !figures[i].measured() {
			add(f.kind, func(s *chaosKindStats) { s.Unmeasured++ })
			continue
		}
		byKind[f.kind] = append(byKind[f.kind], ms(figures[i].unavailable))
	}
	for kind, v := range byKind {
		add(kind, func(s *chaosKindStats) { s.UnavailableMS = chaosMS{P50: nearestRank(v, 50), Max: nearestRank(v, 100)} })
	}
	return stats, figures
}

// chaosFaultLine is one fault's write unavailability for the log: the
// max and its content, then every content's.
func chaosFaultLine(f chaosFault, fig chaosFaultFigure) string {
	if !fig.measured() {
		return fmt.Sprintf("%s at %s: unmeasured (no content was taking writes at its injection or took one in its window)", f.kind, f.at.Format("15:04:05.000"))
	}
	var cs []int
	for c := range fig.byContent {
		cs = append(cs, c)
	}
	sort.Ints(cs)
	var parts []string
	for _, c := range cs {
		parts = append(parts, fmt.Sprintf("%d: %d", c, ms(fig.byContent[c])))
	}
	return fmt.Sprintf("%s at %s: writes unavailable %d ms (content %d); by content, ms: %s", f.kind, f.at.Format("15:04:05.000"), ms(fig.unavailable), fig.content, strings.Join(parts, ", "))
}

// chaosTable is the per-kind table that gpbench chaos prints before its
// JSON line, kinds by name, the pseudo-kinds last.
func chaosTable(stats map[string]chaosKindStats) string {
	var kinds []string
	for k := range stats {
		if k != chaosBeforeFaults && k != chaosAfterHeal {
			kinds = append(kinds, k)
		}
	}
	sort.Strings(kinds)
	for _, k := range []string{chaosBeforeFaults, chaosAfterHeal} {
		if _, ok := stats[k]; ok {
			kinds = append(kinds, k)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-18s %5s %10s %16s %16s %5s %6s %8s\n", "fault", "count", "unmeasured", "unavail p50 ms", "unavail max ms", "lost", "split", "stranded")
	for _, k := range kinds {
		s := stats[k]
		fmt.Fprintf(&b, "%-18s %5d %10d %16d %16d %5d %6d %8d\n", k, s.Count, s.Unmeasured, s.UnavailableMS.P50, s.UnavailableMS.Max, s.Lost, s.Split, s.Stranded)
	}
	return b.String()
}
