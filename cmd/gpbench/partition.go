package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gpagent/gpagent/internal/netns"
)

// nsSeq numbers the partition clusters of this process, so that each has
// namespaces, links and a subnet of its own.
var nsSeq atomic.Int32

// nsHosts are the hosts of a partition cluster, as in the e2e netns
// harness: mdw holds the coordinator (and, having bootstrapped the
// cluster, normally the Raft leader), sdw1 and sdw2 one primary each with
// its mirror on the other.
var nsHosts = []string{"mdw", "sdw1", "sdw2"}

// nsCluster is a gpagent cluster with one agent per network namespace.
type nsCluster struct {
	dir    string
	net    *netns.Network
	files  *netns.Cluster
	agents []*netns.Agent
	// d runs the gpagent CLI against mdw's API; it is not a `gpagent
	// demo` process (d.cmd is nil): only its CLI helpers are used.
	d *demo
	// dirty: a trial ran on it since it was last balanced and in sync.
	dirty bool

	mu       sync.Mutex
	victim   string    // the host cut off in the latest trial
	cutNow   bool      // and not healed yet
	cutAt    time.Time // when its routes were in place
	oldDBID  int       // the primary on it when it was cut off
	healedAt time.Time
	// fenced counts the watcher's connections refused because the
	// instance was out of recovery but read-only: a fenced primary.
	fenced atomic.Int64
}

// partitionTarget runs trials on nsClusters it builds itself: the fault
// cuts the host of the measured content's acting primary off from the
// other hosts, while the workload and the watcher, in the root namespace,
// still reach every host through the bridge.
type partitionTarget struct {
	o   failoverOptions
	bin string
	log io.Writer

	// segDirs: primaries (and mirrors) per segment host; 0 or 1 is one.
	segDirs int

	cur  *nsCluster
	all  []*nsCluster
	kept map[string]bool
	errs []string
}

func newPartitionTarget(o failoverOptions, bin string, log io.Writer) *partitionTarget {
	return &partitionTarget{o: o, bin: bin, log: log, kept: map[string]bool{}}
}

func (t *partitionTarget) setup(ctx context.Context, trial int) (*trialSetup, error) {
	content := trial % 2
	if c := t.cur; c != nil && c.dirty {
		if err := t.restore(ctx, c); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			// Measured trials stay honest: the next one needs every pair in
			// sync, and a fresh cluster gives it that. The failed recovery
			// is reported, and its folder kept.
			fmt.Fprintf(t.log, "gpbench: warning: could not bring the cluster in %s back to balanced and in sync (%v); starting a fresh one\n", c.dir, err)
			t.kept[c.dir] = true
			t.stopCurrent()
		}
	}
	fresh := false
	if t.cur == nil {
		if err := t.start(ctx); err != nil {
			return nil, err
		}
		fresh = true
	}
	st, err := t.cur.d.state(ctx)
	if err != nil {
		return nil, err
	}
	if !nsBalanced(st) {
		if fresh {
			return nil, fmt.Errorf("a fresh cluster (%s) is not balanced and in sync", t.cur.dir)
		}
		return nil, fmt.Errorf("the cluster in %s is not balanced and in sync after its recovery", t.cur.dir)
	}
	return t.setupOn(ctx, st, content)
}

// nsBalanced: every instance up, each in its preferred role, every pair
// in sync.
func nsBalanced(st *clusterState) bool {
	if !balancedInSync(st) {
		return false
	}
	for _, x := range st.Segments {
		if x.Status != "u" {
			return false
		}
	}
	return len(st.Segments) > 0
}

// start builds the network, writes the files, starts the agents, runs
// gpagent init and waits until every pair is in sync.
func (t *partitionTarget) start(ctx context.Context) error {
	begin := time.Now()
	seq := int(nsSeq.Add(1) - 1)
	dir, err := os.MkdirTemp("", "gpbench-netns-")
	if err != nil {
		return err
	}
	c := &nsCluster{dir: dir}
	// Tracked at once, so that close() removes whatever was made even if
	// the start fails halfway.
	t.cur = c
	t.all = append(t.all, c)
	// The instances run as the postgres OS user: it must reach the data
	// dirs below this folder.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	c.net, err = netns.Build(ctx, netns.Options{
		Prefix: netns.Prefix("gpb", seq),
		Hosts:  nsHosts,
		Seed:   os.Getpid() + 7*seq,
		Logf:   func(format string, args ...any) { fmt.Fprintf(t.log, "gpbench: "+format+"\n", args...) },
	})
	if err != nil {
		return err
	}
	if c.files, err = netns.WriteCluster(dir, c.net); err != nil {
		return err
	}
	if t.segDirs > 1 {
		if err := widenSpec(c.files, c.net, dir, t.segDirs); err != nil {
			return err
		}
	}
	// libpq's password file: pgx reads $PGPASSFILE when it parses a
	// connection string, and gpagent connstr prints no password.
	if err := os.Setenv("PGPASSFILE", c.files.PassFile); err != nil {
		return err
	}
	c.d = &demo{bin: t.bin, dir: dir, addr: netns.APIAddr(c.net.Hosts[0]), passfile: c.files.PassFile}
	fmt.Fprintf(t.log, "gpbench: starting a 3-host cluster on %s.0/24, one agent per network namespace (%sh1..3, bridge %s); files in %s\n",
		c.net.Subnet, c.net.Prefix, c.net.Bridge, dir)
	for _, h := range c.net.Hosts {
		a, err := c.files.StartAgent(t.bin, h)
		if a != nil {
			c.agents = append(c.agents, a)
		}
		if err != nil {
			return err
		}
	}
	if err := c.waitMesh(ctx, t.o.startTimeout); err != nil {
		return err
	}
	if _, err := c.d.gpagentWithin(ctx, t.o.startTimeout, "init", "--config", c.files.Spec); err != nil {
		return fmt.Errorf("%w; agent logs: %s", err, c.agentLogs())
	}
	if _, err := waitState(ctx, c.d, t.o.startTimeout, "every instance up, every pair in sync", nsBalanced); err != nil {
		return fmt.Errorf("%w; agent logs: %s", err, c.agentLogs())
	}
	fmt.Fprintf(t.log, "gpbench: cluster up in %s (agent logs %s/<host>/agent.log)\n", time.Since(begin).Round(100*time.Millisecond), dir)
	return nil
}

// members is `gpagent members --json`.
type members struct {
	Leader  string `json:"leader"`
	Members []struct {
		Name     string `json:"name"`
		Status   string `json:"status"`
		RaftRole string `json:"raft_role"`
	} `json:"members"`
}

func (c *nsCluster) members(ctx context.Context) (*members, error) {
	out, err := c.d.gpagentWithin(ctx, 10*time.Second, "members", "--json")
	if err != nil {
		return nil, err
	}
	var m members
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return nil, fmt.Errorf("gpagent members --json: %w", err)
	}
	return &m, nil
}

// waitMesh waits until a leader is elected and every agent is alive in
// gossip and a Raft member.
func (c *nsCluster) waitMesh(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := "no answer yet"
	for {
		for _, a := range c.agents {
			if a.Exited() {
				return fmt.Errorf("agent %s exited: %s", a.Host.Name, c.agentLogs())
			}
		}
		m, err := c.members(ctx)
		if err != nil {
			last = err.Error()
		} else {
			alive, inRaft := 0, 0
			for _, x := range m.Members {
				if x.Status == "alive" {
					alive++
				}
				if x.RaftRole != "" && x.RaftRole != "none" {
					inRaft++
				}
			}
			if m.Leader != "" && alive == len(nsHosts) && inRaft == len(nsHosts) {
				return nil
			}
			last = fmt.Sprintf("leader %q, %d alive, %d in Raft", m.Leader, alive, inRaft)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the agents did not form a cluster within %s (%s): %s", timeout, last, c.agentLogs())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// agentLogs is the end of every agent's log, on one line.
func (c *nsCluster) agentLogs() string {
	var parts []string
	for _, h := range nsHosts {
		b, err := os.ReadFile(c.dir + "/" + h + "/agent.log")
		if err == nil {
			parts = append(parts, h+"/agent.log: "+lastLines(string(b), 3))
		}
	}
	return strings.Join(parts, "; ")
}

// instanceReports is what `gpagent state -s --json` adds: each instance's
// latest report by its own agent.
type instanceReports struct {
	Stale     bool `json:"stale"`
	Instances []struct {
		DBID int       `json:"dbid"`
		Host string    `json:"host"`
		Seen time.Time `json:"seen"`
		Up   bool      `json:"up"`
	} `json:"instances"`
}

func (c *nsCluster) reports(ctx context.Context) (*instanceReports, error) {
	out, err := c.d.gpagent(ctx, "state", "-s", "--json")
	if err != nil {
		return nil, err
	}
	var r instanceReports
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return nil, fmt.Errorf("gpagent state -s --json: %w", err)
	}
	return &r, nil
}

// caughtUp says whether the healed host's agent is back: the state is
// the leader's, every instance on host has been reported since the heal,
// and the old primary is reported down (its agent stopped it once it
// learned it was demoted).
func (c *nsCluster) caughtUp(ctx context.Context, host string, oldDBID int, healed time.Time) (bool, string) {
	r, err := c.reports(ctx)
	if err != nil {
		return false, err.Error()
	}
	if r.Stale {
		return false, "the state is stale"
	}
	n := 0
	for _, x := range r.Instances {
		if x.Host != host {
			continue
		}
		n++
		if !x.Seen.After(healed) {
			return false, fmt.Sprintf("dbid %d last reported %s before the heal", x.DBID, healed.Sub(x.Seen).Round(time.Millisecond))
		}
		if x.DBID == oldDBID && x.Up {
			return false, fmt.Sprintf("the old primary dbid %d is still up", oldDBID)
		}
	}
	return n > 0, fmt.Sprintf("%d instances reported on %s", n, host)
}

// waitCaughtUp polls caughtUp until it holds or ctx ends.
func (c *nsCluster) waitCaughtUp(ctx context.Context, host string, oldDBID int, healed time.Time) error {
	last := ""
	for {
		ok, seen := c.caughtUp(ctx, host, oldDBID, healed)
		if ok {
			return nil
		}
		last = seen
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s's agent not caught up after the heal: %s", host, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (t *partitionTarget) setupOn(ctx context.Context, st *clusterState, content int) (*trialSetup, error) {
	c := t.cur
	p, m, _, _ := st.pair(content)
	host := p.Hostname
	cfg, insts, err := contentTarget(ctx, c.d, st, content)
	if err != nil {
		return nil, err
	}
	leader := "?"
	if mm, err := c.members(ctx); err == nil {
		leader = mm.Leader
	}
	fmt.Fprintf(t.log, "gpbench: content %d: will cut off %s (primary dbid %d; mirror dbid %d on %s; Raft leader %s)\n",
		content, host, p.DBID, m.DBID, m.Hostname, leader)

	// A fenced primary (the cut-off host's agent fences its primaries
	// once its lease runs out) still answers pg_is_in_recovery() = false,
	// but every commit on it waits for a standby that does not exist and
	// new sessions are read-only: it cannot acknowledge a write, which is
	// what split brain is about. The watcher's sessions therefore skip an
	// instance that is out of recovery but read-only, as a client asking
	// for target_session_attrs=read-write does; two instances that are
	// out of recovery and writable at once are still counted.
	watchCfg := cfg.Copy()
	watchCfg.AfterConnect = c.refuseFenced
	ts := &trialSetup{
		name:      fmt.Sprintf("content %d host %s", content, host),
		cfg:       cfg,
		watchCfg:  watchCfg,
		instances: insts,
		keep:      func() { t.kept[c.dir] = true },
	}
	ts.inject = func() error {
		c.dirty = true
		c.fenced.Store(0)
		c.mu.Lock()
		// Marked cut before the first route goes in: a heal must remove
		// whatever part of the cut is in place.
		c.victim, c.cutNow, c.oldDBID = host, true, p.DBID
		c.mu.Unlock()
		err := c.net.Partition(ctx, host)
		c.mu.Lock()
		c.cutAt = time.Now()
		c.mu.Unlock()
		return err
	}
	// The heal comes while the workload and the watcher still run, and
	// waits (at most --timeout) until the healed host's agent has caught
	// up and stopped its demoted primary: the watcher sees the whole time
	// in which that old primary could come back as a second one.
	ts.resume = func() error {
		// Not cancelled with ctx: a Ctrl-C mid-trial still heals before
		// the agents are stopped.
		if err := c.heal(context.WithoutCancel(ctx)); err != nil {
			return err
		}
		c.mu.Lock()
		healed, cutAt := c.healedAt, c.cutAt
		c.mu.Unlock()
		wctx, cancel := context.WithTimeout(ctx, t.o.timeout)
		defer cancel()
		werr := c.waitCaughtUp(wctx, host, p.DBID, healed)
		switch {
		case werr != nil && ctx.Err() == nil:
			fmt.Fprintf(t.log, "gpbench: warning: %v (within %s); recovery waits for it\n", werr, t.o.timeout)
		case werr == nil:
			fmt.Fprintf(t.log, "gpbench: %s healed %d ms after the cut; its agent caught up and stopped the old primary dbid %d %d ms after the heal; the watcher found it fenced (out of recovery, read-only) %d times\n",
				host, ms(healed.Sub(cutAt)), p.DBID, ms(time.Since(healed)), c.fenced.Load())
		}
		return nil
	}
	return ts, nil
}

// errFenced marks a watcher connection refused by refuseFenced.
var errFenced = errors.New("out of recovery but read-only: a fenced primary, writes refused")

// refuseFenced is the watcher's AfterConnect: it fails the connection to
// an instance out of recovery whose new transactions are read-only.
func (c *nsCluster) refuseFenced(ctx context.Context, pc *pgconn.PgConn) error {
	rr := pc.ExecParams(ctx, "SELECT pg_is_in_recovery(), current_setting('transaction_read_only')", nil, nil, nil, nil).Read()
	if rr.Err != nil {
		return rr.Err
	}
	if len(rr.Rows) != 1 || len(rr.Rows[0]) != 2 {
		return fmt.Errorf("fence check: %d rows", len(rr.Rows))
	}
	inRecovery, readOnly := string(rr.Rows[0][0]) == "t", string(rr.Rows[0][1]) == "on"
	if !inRecovery && readOnly {
		c.fenced.Add(1)
		return errFenced
	}
	return nil
}

// heal removes the cut, if one is in place.
func (c *nsCluster) heal(ctx context.Context) error {
	c.mu.Lock()
	host, cut := c.victim, c.cutNow
	c.mu.Unlock()
	if !cut {
		return nil
	}
	err := c.net.Heal(ctx, host)
	c.mu.Lock()
	c.cutNow, c.healedAt = false, time.Now()
	c.mu.Unlock()
	return err
}

// restore brings the cluster back after a trial: the cut healed, the old
// primary recovered as a mirror (recoverseg -a: pg_rewind), every content
// back in its preferred roles (recoverseg -r -a), every pair in sync.
func (t *partitionTarget) restore(ctx context.Context, c *nsCluster) error {
	begin := time.Now()
	if err := c.heal(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	host, oldDBID, healed := c.victim, c.oldDBID, c.healedAt
	c.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, t.o.recoverTimeout)
	defer cancel()
	if host != "" {
		if err := c.waitCaughtUp(rctx, host, oldDBID, healed); err != nil {
			return err
		}
	}
	t1 := time.Now()
	if _, err := c.d.gpagentWithin(rctx, t.o.recoverTimeout, "recoverseg", "-a"); err != nil {
		return err
	}
	t2 := time.Now()
	if _, err := c.d.gpagentWithin(rctx, t.o.recoverTimeout, "recoverseg", "-r", "-a"); err != nil {
		return err
	}
	t3 := time.Now()
	if _, err := waitState(rctx, c.d, t.o.recoverTimeout, "every instance up in its preferred role, every pair in sync", nsBalanced); err != nil {
		return err
	}
	c.dirty = false
	fmt.Fprintf(t.log, "gpbench: cluster balanced and in sync again in %s (recoverseg -a %s, recoverseg -r -a %s)\n",
		time.Since(begin).Round(100*time.Millisecond), t2.Sub(t1).Round(100*time.Millisecond), t3.Sub(t2).Round(100*time.Millisecond))
	return nil
}

// stopCurrent stops the current cluster's agents (each stops its
// instances), kills whatever they left, and removes the network.
func (t *partitionTarget) stopCurrent() {
	c := t.cur
	t.cur = nil
	if c == nil {
		return
	}
	var errs []error
	if c.net != nil {
		if err := c.heal(context.Background()); err != nil {
			errs = append(errs, err)
		}
	}
	errCh := make(chan error, len(c.agents))
	var wg sync.WaitGroup
	for _, a := range c.agents {
		wg.Go(func() { errCh <- a.Stop(time.Minute) })
	}
	wg.Wait()
	close(errCh)
	for err := range errCh {
		if err != nil {
			errs = append(errs, err)
		}
	}
	c.agents = nil
	if n := netns.KillProcessesUnder(c.dir); n > 0 {
		errs = append(errs, fmt.Errorf("killed %d processes the agents left under %s", n, c.dir))
	}
	if c.net != nil {
		if err := c.net.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		msg := oneLine(err.Error())
		t.errs = append(t.errs, msg)
		t.kept[c.dir] = true
		fmt.Fprintf(t.log, "gpbench: warning: %s\n", msg)
	}
}

func (t *partitionTarget) close() error {
	t.stopCurrent()
	for _, c := range t.all {
		if t.o.keep || t.kept[c.dir] {
			fmt.Fprintf(t.log, "gpbench: kept %s\n", c.dir)
			continue
		}
		if err := os.RemoveAll(c.dir); err != nil {
			fmt.Fprintf(t.log, "gpbench: warning: %v\n", err)
		}
	}
	if len(t.errs) > 0 {
		return errors.New(strings.Join(t.errs, "; "))
	}
	return nil
}

var _ target = (*partitionTarget)(nil)
