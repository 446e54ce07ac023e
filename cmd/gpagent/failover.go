package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

func cmdPause(ctx context.Context, io cmdIO, args []string, paused bool) error {
	name := "resume"
	if paused {
		name = "pause"
	}
	fs := newFlags(io, name, "")
	addr := addrFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	s, err := client(*addr).SetPaused(ctx, paused)
	if err != nil {
		return err
	}
	if s.Paused {
		fmt.Fprintf(io.out, "automatic failover paused (config version %d); gpagent resume restarts it\n", s.ConfigVersion)
	} else {
		fmt.Fprintf(io.out, "automatic failover on (config version %d)\n", s.ConfigVersion)
	}
	return nil
}

// cmdConnstr prints a libpq connection string that lists every instance of
// a content, so a client reconnecting after a failover finds the new
// primary: target_session_attrs=read-write skips the standbys. The
// password comes from the libpq password file ($PGPASSFILE; the demo's
// env file sets it).
func cmdConnstr(ctx context.Context, io cmdIO, args []string) error {
	fs := newFlags(io, "connstr", "[--content C] [--dbname NAME]")
	addr := addrFlag(fs)
	content := fs.Int("content", -1, "content id (-1, the coordinator, by default)")
	dbname := fs.String("dbname", "", "database (default postgres)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ci, err := client(*addr).ConnInfo(ctx, *content)
	if err != nil {
		return err
	}
	hosts := make([]string, 0, len(ci.Hosts))
	ports := make([]string, 0, len(ci.Hosts))
	for _, h := range ci.Hosts {
		hosts = append(hosts, h.Address)
		ports = append(ports, strconv.Itoa(h.Port))
	}
	db := ci.DBName
	if *dbname != "" {
		db = *dbname
	}
	fmt.Fprintf(io.out, "host=%s port=%s user=%s dbname=%s target_session_attrs=read-write connect_timeout=2\n",
		strings.Join(hosts, ","), strings.Join(ports, ","), ci.User, db)
	return nil
}

// cmdSwitchover swaps the roles of one in-sync pair without losing a
// commit, and returns once the old primary follows the new one in sync.
func cmdSwitchover(ctx context.Context, cio cmdIO, args []string) error {
	fs := newFlags(cio, "switchover", "--content C [-a]")
	addr := addrFlag(fs)
	content := fs.Int("content", -2, "content id whose primary and mirror swap roles (-1 is the coordinator)")
	yes := fs.Bool("a", false, "do not ask for confirmation")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for the swap and the resync")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *content < -1 {
		return errors.New("--content: required")
	}
	c := client(*addr)
	s, err := c.State(ctx)
	if err != nil {
		return err
	}
	p, okP := find(s.Segments, func(x topology.Segment) bool { return x.Content == *content && x.Role == topology.RolePrimary })
	m, okM := find(s.Segments, func(x topology.Segment) bool { return x.Content == *content && x.Role == topology.RoleMirror })
	if !okP || !okM {
		return fmt.Errorf("--content %d: no primary and mirror pair", *content)
	}
	fmt.Fprintf(cio.out, "content %d: primary dbid %d (%s:%d) shuts down cleanly; mirror dbid %d (%s:%d) becomes primary\n",
		*content, p.DBID, p.Hostname, p.Port, m.DBID, m.Hostname, m.Port)
	if !*yes {
		if err := confirm(cio, "Continue with switchover"); err != nil {
			return err
		}
	}
	if _, err := c.Switchover(ctx, *content); err != nil {
		return err
	}
	swapped := func(s *api.State) bool {
		np, _ := s.Segment(m.DBID)
		nm, _ := s.Segment(p.DBID)
		return np.Role == topology.RolePrimary && np.Status == topology.StatusUp &&
			nm.Role == topology.RoleMirror && nm.Status == topology.StatusUp && nm.Mode == topology.ModeSynced
	}
	if err := waitFor(ctx, cio.out, c, *timeout, []int{p.DBID, m.DBID}, swapped); err != nil {
		return err
	}
	fmt.Fprintf(cio.out, "content %d: dbid %d is primary, dbid %d its mirror in sync\n", *content, m.DBID, p.DBID)
	return nil
}

// cmdInitStandby adds a standby coordinator (gpinitstandby) and waits
// until it is in sync.
func cmdInitStandby(ctx context.Context, cio cmdIO, args []string) error {
	fs := newFlags(cio, "initstandby", "[-s HOST] [-P PORT] [-S DATADIR] [-a]")
	addr := addrFlag(fs)
	host := fs.String("s", "", "standby host (default: the coordinator's)")
	port := fs.Int("P", 0, "standby port (default: the coordinator's; required on the coordinator's host)")
	datadir := fs.String("S", "", "standby data directory (default: beside the coordinator's, under standby/)")
	yes := fs.Bool("a", false, "do not ask for confirmation")
	timeout := fs.Duration("timeout", 30*time.Minute, "how long to wait for the standby to be in sync")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *port < 0 || *port > 65535 {
		return fmt.Errorf("-P: %d is not a port", *port)
	}
	if !*yes {
		if err := confirm(cio, "Add a standby coordinator"); err != nil {
			return err
		}
	}
	c := client(*addr)
	s, err := c.InitStandby(ctx, api.StandbyRequest{Host: *host, Port: *port, DataDir: *datadir})
	if err != nil {
		return err
	}
	sb, _ := find(s.Segments, func(x topology.Segment) bool {
		return x.Content == topology.CoordinatorContent && x.Role == topology.RoleMirror
	})
	fmt.Fprintf(cio.out, "standby coordinator dbid %d on %s:%d %s; building it\n", sb.DBID, sb.Hostname, sb.Port, sb.DataDir)
	if err := waitFor(ctx, cio.out, c, *timeout, []int{sb.DBID}, allUp([]int{sb.DBID}, true)); err != nil {
		return err
	}
	fmt.Fprintln(cio.out, "standby coordinator is up and in sync")
	return nil
}
