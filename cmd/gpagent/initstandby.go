package main

import (
	"context"
	"fmt"
	"time"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

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
