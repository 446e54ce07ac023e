package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

func cmdAddMirrors(ctx context.Context, cio cmdIO, args []string) error {
	fs := newFlags(cio, "addmirrors", "[--spread] [-i FILE] [-a]")
	addr := addrFlag(fs)
	spread := fs.Bool("spread", false, "spread the mirrors of each host over the other hosts (default: group)")
	file := fs.String("i", "", "mirror config file in gpaddmirrors format (content|address|port|datadir per line)")
	yes := fs.Bool("a", false, "do not ask for confirmation")
	timeout := fs.Duration("timeout", 30*time.Minute, "how long to wait for every mirror to be in sync")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	req := api.MirrorPlanRequest{Spread: *spread}
	if *file != "" {
		data, err := os.ReadFile(*file)
		if err != nil {
			return fmt.Errorf("-i %s: %w", *file, err)
		}
		if req.Entries, err = topology.ParseMirrorFile(data); err != nil {
			return fmt.Errorf("-i %s: %w", *file, err)
		}
	}
	c := client(*addr)
	plan, err := c.PlanMirrors(ctx, req)
	if err != nil {
		return err
	}
	if len(plan.Mirrors) == 0 {
		return attachMirrors(ctx, cio.out, c, *timeout)
	}
	printMirrorPlan(cio.out, plan)
	if !*yes {
		if err := confirm(cio, "Continue with add mirrors procedure"); err != nil {
			return err
		}
	}
	if _, err := c.AddMirrors(ctx, *plan); err != nil {
		return err
	}
	fmt.Fprintf(cio.out, "%d mirrors added to the topology; building them\n", len(plan.Mirrors))
	dbids := dbidsOf(plan.Mirrors)
	if err := waitFor(ctx, cio.out, c, *timeout, dbids, allUp(dbids, true)); err != nil {
		return err
	}
	fmt.Fprintln(cio.out, "every mirror is up and in sync")
	return nil
}

// attachMirrors handles a re-run: mirrors already placed are waited for.
func attachMirrors(ctx context.Context, out io.Writer, c *api.Client, timeout time.Duration) error {
	s, err := c.State(ctx)
	if err != nil {
		return err
	}
	var dbids []int
	for _, seg := range s.Segments {
		if seg.Role == topology.RoleMirror || (seg.Content != topology.CoordinatorContent && seg.Mode != topology.ModeSynced) {
			dbids = append(dbids, seg.DBID)
		}
	}
	if allUp(dbids, true)(s) {
		fmt.Fprintln(out, "every segment already has a mirror in sync; nothing to do")
		return nil
	}
	fmt.Fprintln(out, "every segment already has a mirror; waiting for them to be up and in sync")
	if err := waitFor(ctx, out, c, timeout, dbids, allUp(dbids, true)); err != nil {
		return err
	}
	fmt.Fprintln(out, "every mirror is up and in sync")
	return nil
}

func printMirrorPlan(out io.Writer, plan *api.MirrorPlan) {
	fmt.Fprintf(out, "Mirrors to add (config version %d):\n", plan.BaseVersion)
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "  content\tdbid\tmirror host\taddress\tport\tdatadir")
	for _, m := range plan.Mirrors {
		fmt.Fprintf(w, "  %d\t%d\t%s\t%s\t%d\t%s\n", m.Content, m.DBID, m.Hostname, m.Address, m.Port, m.DataDir)
	}
	w.Flush()
}

// confirm asks on stdin, as Greenplum's utilities do; anything but y/yes
// (including no terminal and no answer) cancels.
func confirm(cio cmdIO, question string) error {
	fmt.Fprintf(cio.out, "%s Yy|Nn (default=N): ", question)
	line, err := bufio.NewReader(cio.in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read answer: %w", err)
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	if !strings.HasSuffix(line, "\n") {
		fmt.Fprintln(cio.out)
	}
	return errors.New("cancelled: not confirmed (pass -a to skip the question); nothing was changed")
}
