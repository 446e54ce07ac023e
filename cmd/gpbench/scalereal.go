package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/internal/netns"
	"github.com/gpagent/gpagent/topology"
)

// realHosts are the segment hosts of a mixed scale run (--real K) that
// run as real `gpagent agent` processes with real PostgreSQL, clients of
// the same 3 Raft servers as the simulated ones: the simulated agents are
// the same product, and a kill -9 of a real postmaster must fail over as
// in any cluster. Started and stopped as the netns cluster's agents are
// (netns.Cluster.StartAgent), in the root namespace on 127.N.x.y.
type realHosts struct {
	files   *netns.Cluster
	hosts   []*netns.Host
	agents  []*netns.Agent
	names   map[string]bool
	superPW string
}

// startRealHosts writes each real host's agent.yaml under dir/<name> and
// starts its agent. The token and the gossip key are the run's (the key
// derived from the token, as scale-node derives it), so the real agents
// join the simulated ones' gossip. A realHosts returned with an error
// holds whatever started: stop it.
func startRealHosts(o scaleOptions, dir, bin string, names, ips, join []string) (*realHosts, error) {
	token := os.Getenv("GPAGENT_TOKEN")
	rh := &realHosts{files: &netns.Cluster{Dir: dir, Token: token}, names: map[string]bool{}, superPW: netnsSecret()}
	// The instances run as the postgres OS user when we are root: it
	// must reach the data dirs below this folder.
	if err := os.Chmod(dir, 0o755); err != nil {
		return rh, err
	}
	key := sha256.Sum256([]byte("gpbench gossip key: " + token))
	keyFile := filepath.Join(dir, "gossip.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key[:])+"\n"), 0o600); err != nil {
		return rh, err
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		return rh, err
	}
	replPW := netnsSecret()
	for i, name := range names {
		h := &netns.Host{Name: name, Addr: ips[i]}
		hdir := rh.files.HostDir(h)
		if err := os.MkdirAll(hdir, 0o755); err != nil {
			return rh, err
		}
		cfg := fmt.Sprintf(`# gpbench scale: real segment host %[1]s (client of the 3 servers)
name: %[1]s
address: %[2]s
data_dir: %[3]s
api_addr: %[2]s:%[4]d
raft_addr: %[2]s:%[5]d
gossip_addr: %[2]s:%[6]d
gossip_key_file: %[7]s
token_file: %[8]s
server: false
voters: 3
join: [%[9]s]
stop_instances_on_exit: true
postgres:
  superuser_password: %[10]s
  replication_password: %[11]s
  wal_keep_size: 64MB
`, name, ips[i], filepath.Join(hdir, "agent"), scaleAPIPort, scaleRaftPort, scaleGossipPort,
			keyFile, tokenFile, strings.Join(join, ", "), rh.superPW, replPW)
		if err := os.WriteFile(filepath.Join(hdir, "agent.yaml"), []byte(cfg), 0o600); err != nil {
			return rh, err
		}
		a, err := rh.files.StartAgent(bin, h)
		if a != nil {
			rh.agents = append(rh.agents, a)
		}
		if err != nil {
			return rh, err
		}
		rh.hosts = append(rh.hosts, h)
		rh.names[name] = true
	}
	return rh, nil
}

// netnsSecret is a random password for the real instances.
func netnsSecret() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// stop stops every real agent (SIGTERM: it stops its instances), then
// kills whatever PostgreSQL is left under the run's folder.
func (rh *realHosts) stop(log io.Writer) {
	if rh == nil {
		return
	}
	for _, a := range rh.agents {
		if err := a.Stop(30 * time.Second); err != nil {
			fmt.Fprintf(log, "gpbench scale: %v\n", err)
		}
	}
	if n := netns.KillProcessesUnder(rh.files.Dir); n > 0 {
		fmt.Fprintf(log, "gpbench scale: killed %d PostgreSQL processes the real agents left\n", n)
	}
}

// exited names a real agent that is no longer running, if any.
func (rh *realHosts) exited() string {
	for _, a := range rh.agents {
		if a.Exited() {
			return a.Host.Name
		}
	}
	return ""
}

// logs is the end of each real agent's log, for an error message.
func (rh *realHosts) logs() string {
	var b strings.Builder
	for _, h := range rh.hosts {
		raw, _ := os.ReadFile(filepath.Join(rh.files.HostDir(h), "agent.log"))
		fmt.Fprintf(&b, "[%s: %s] ", h.Name, oneLine(lastLines(string(raw), 3)))
	}
	return b.String()
}

// mixedMirrors places every mirror of a mixed run: the simulated hosts'
// as init would among the simulated hosts only (spread when there are
// more of them than primaries per host, else group), each real host's one
// mirror on the next real host (group), so that a real primary's mirror
// is a real PostgreSQL standby and a simulated one streams in simpg.
// hosts are the segment hosts in init order, the real ones last, each
// holding primaries[i] contents numbered in that order.
func mixedMirrors(hosts []topology.Host, primaries []int, real map[string]bool, placement topology.Placement, mirrorDir string, portBase int) []topology.MirrorEntry {
	var sim, rl []int // indexes into hosts
	for i, h := range hosts {
		if real[h.Hostname] {
			rl = append(rl, i)
		} else {
			sim = append(sim, i)
		}
	}
	placed := map[int]int{}
	var out []topology.MirrorEntry
	content := 0
	first := map[int]int{}
	for i := range hosts {
		first[i] = content
		content += primaries[i]
	}
	place := func(group []int) {
		for gi, hi := range group {
			for j := range primaries[hi] {
				target := (gi + 1) % len(group)
				if placement == topology.PlacementSpread {
					target = (gi + 1 + j) % len(group)
				}
				th := group[target]
				n := placed[th]
				placed[th]++
				c := first[hi] + j
				out = append(out, topology.MirrorEntry{Content: c, Address: hosts[th].Address, Port: portBase + n,
					DataDir: filepath.Join(mirrorDir, fmt.Sprintf("gpseg%d", c))})
			}
		}
	}
	place(sim)
	// Real hosts hold one primary each: group is the only placement.
	placement = topology.PlacementGroup
	place(rl)
	return out
}

// addMirrors plans and commits the mirrors, again when the plan is stale
// (init's entries go on committing while it is made), within ctx.
func addMirrors(ctx context.Context, cl *api.Client, entries []topology.MirrorEntry, log io.Writer) error {
	return waitFor(ctx, "mirrors added", func() (bool, string) {
		plan, err := cl.PlanMirrors(ctx, api.MirrorPlanRequest{Entries: entries})
		if err == nil {
			_, err = cl.AddMirrors(ctx, *plan)
		}
		if err != nil {
			// A stale plan is expected while init's instances report;
			// anything else is worth a line.
			if !errors.Is(err, api.ErrStale) {
				fmt.Fprintf(log, "gpbench scale: addmirrors: %v (again)\n", err)
			}
			return false, err.Error()
		}
		return true, ""
	})
}

// scaleRealKills kill -9s the postmaster of a real primary whose pair is in
// sync, per trial (each on a pair no trial touched), times until its
// mirror's promotion is committed, as the simulated kill trial does, then
// checks the promoted mirror takes a write and returns it, as a user
// would.
func scaleRealKills(ctx context.Context, o scaleOptions, r *sizeResult, cl *api.Client, rh *realHosts, log io.Writer) {
	var v, prop []int64
	writes := 0
	used := map[string]bool{}
	for trial := range o.trials {
		s, err := cl.Segments(ctx)
		if err != nil {
			r.why("real_kill_ms", err.Error())
			break
		}
		var p, m topology.Segment
		found := false
		for c := r.Contents - 1; c >= 0 && !found; c-- {
			p, m, found = pairOK(s, c, nil)
			found = found && rh.names[p.Hostname] && !used[p.Hostname] && !used[m.Hostname]
		}
		if !found {
			if trial == 0 {
				r.why("real_kill_ms", "no real pair in sync to kill")
			}
			break
		}
		used[p.Hostname], used[m.Hostname] = true, true
		pid, err := postmasterPID(p.DataDir)
		if err != nil {
			r.why("real_kill_ms", err.Error())
			break
		}
		t0 := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			r.why("real_kill_ms", fmt.Sprintf("kill -9 %d (%s's postmaster): %v", pid, p.Hostname, err))
			break
		}
		seen, stamped, err := waitPromoted(ctx, o, cl, []int{m.DBID}, t0)
		if err != nil {
			r.why("real_kill_ms", fmt.Sprintf("trial %d: %v; real agents: %s", trial+1, err, rh.logs()))
			break
		}
		d := seen.Sub(t0)
		v = append(v, ms(d))
		prop = append(prop, ms(stamped.Sub(t0)))
		fmt.Fprintf(log, "gpbench scale: %d agents: real kill trial %d: postmaster %d of content %d dbid %d on %s killed, mirror dbid %d on %s promotion seen committed after %s\n",
			r.Agents, trial+1, pid, p.Content, p.DBID, p.Hostname, m.DBID, m.Hostname, d.Round(time.Millisecond))
		if err := writeOnPromoted(ctx, o, m, rh.superPW, trial); err != nil {
			fmt.Fprintf(log, "gpbench scale: %d agents: real kill trial %d: the promoted mirror dbid %d: %v\n", r.Agents, trial+1, m.DBID, err)
			r.why("real_promoted_writes", fmt.Sprintf("trial %d: %v", trial+1, err))
			continue
		}
		writes++
	}
	r.RealKillMS = newP50Max(v)
	if len(v) > 0 {
		r.RealPromotedWrites = &writes
		r.note("real_kill_ms", fmt.Sprintf("kill -9 of a real PostgreSQL primary's postmaster until the parent saw its real mirror's promotion committed (polled every 10 ms); the leader proposed it after p50 %d ms", nearestRank(prop, 50)))
		r.note("real_promoted_writes", "real kill trials whose promoted mirror, on a fresh connection, was out of recovery, acknowledged an INSERT and returned the row")
	}
}

// writeOnPromoted inserts a row on the promoted mirror m and reads it back
// on another connection, retrying until --trial-timeout: the instance
// leaves recovery, and its commits stop waiting for the lost standby, a
// moment after the promotion is committed.
func writeOnPromoted(ctx context.Context, o scaleOptions, m topology.Segment, password string, trial int) error {
	ctx, cancel := context.WithTimeout(ctx, o.trialTimeout)
	defer cancel()
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d dbname=postgres user=gpadmin connect_timeout=5", m.Address, m.Port))
	if err != nil {
		return err
	}
	cfg.Password = password
	mark := fmt.Sprintf("trial %d dbid %d", trial+1, m.DBID)
	attempt := func(sql string, args ...any) (bool, error) {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		conn, err := pgx.ConnectConfig(actx, cfg)
		if err != nil {
			return false, err
		}
		defer conn.Close(context.Background())
		var inRecovery bool
		if err := conn.QueryRow(actx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
			return false, err
		}
		if inRecovery {
			return false, errors.New("still in recovery")
		}
		if sql == "" {
			var n int
			err := conn.QueryRow(actx, "SELECT count(*) FROM gpbench_mixed WHERE mark = $1", mark).Scan(&n)
			return n >= 1, err // a retried INSERT may have committed twice
		}
		_, err = conn.Exec(actx, sql, args...)
		return err == nil, err
	}
	for _, step := range []struct {
		what string
		sql  string
		args []any
	}{
		{"create the table", "CREATE TABLE IF NOT EXISTS gpbench_mixed (mark text, at timestamptz DEFAULT now())", nil},
		{"insert", "INSERT INTO gpbench_mixed (mark) VALUES ($1)", []any{mark}},
		{"read the row back", "", nil},
	} {
		if err := waitFor(ctx, step.what, func() (bool, string) {
			ok, err := attempt(step.sql, step.args...)
			if err != nil {
				return false, err.Error()
			}
			return ok, "row not found"
		}); err != nil {
			return err
		}
	}
	return nil
}
