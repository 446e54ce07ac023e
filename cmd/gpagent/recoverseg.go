package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

func cmdRecoverseg(ctx context.Context, cio cmdIO, args []string) error {
	fs := newFlags(cio, "recoverseg", "[-F] [-r] [-i FILE] [-p HOST] [-B N] [-a]")
	addr := addrFlag(fs)
	full := fs.Bool("F", false, "full recovery: a fresh copy of the primary (a parallel file copy, or pg_basebackup) instead of pg_rewind")
	rebalance := fs.Bool("r", false, "rebalance: switch every content back to its preferred roles")
	file := fs.String("i", "", "recovery file: failed_host|port|datadir [new_host|port|datadir] per line")
	host := fs.String("p", "", "recover every failed instance onto this host (a full copy)")
	parallel := fs.Int("B", 0, fmt.Sprintf("recoveries at once (default %d)", topology.DefaultRecoveryParallel))
	yes := fs.Bool("a", false, "do not ask for confirmation")
	timeout := fs.Duration("timeout", 2*time.Hour, "how long to wait for the work to finish")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *parallel < 0 {
		return fmt.Errorf("-B: %d is negative", *parallel)
	}
	if *rebalance && (*full || *file != "" || *host != "") {
		return fmt.Errorf("-r: cannot be combined with -F, -i or -p")
	}
	if *file != "" && *host != "" {
		return fmt.Errorf("-i and -p: give one")
	}
	c := client(*addr)
	if *rebalance {
		return rebalanceSegments(ctx, cio, c, *yes, *timeout)
	}
	req := api.RecoverRequest{Full: *full, Host: *host, Parallel: *parallel}
	if *file != "" {
		data, err := os.ReadFile(*file)
		if err != nil {
			return fmt.Errorf("-i %s: %w", *file, err)
		}
		if req.Entries, err = topology.ParseRecoverFile(data); err != nil {
			return fmt.Errorf("-i %s: %w", *file, err)
		}
	}
	plan, err := c.PlanRecovery(ctx, req)
	if err != nil {
		if *file != "" {
			return fmt.Errorf("-i %s: %w", *file, err)
		}
		return err
	}
	if plan.Running != 0 {
		fmt.Fprintf(cio.out, "recovery job %d is in progress; following it\n", plan.Running)
		return waitRecovery(ctx, cio.out, c, *timeout, nil)
	}
	if len(plan.Steps) == 0 {
		fmt.Fprintln(cio.out, "no instance needs recovery")
		return nil
	}
	printRecoverPlan(cio.out, plan)
	if !*yes {
		if err := confirm(cio, "Continue with segment recovery procedure"); err != nil {
			return err
		}
	}
	if _, err := c.Recover(ctx, *plan); err != nil {
		return err
	}
	var dbids []int
	for _, s := range plan.Steps {
		dbids = append(dbids, s.Request.DBID)
	}
	return waitRecovery(ctx, cio.out, c, *timeout, dbids)
}

func printRecoverPlan(out io.Writer, plan *api.RecoverPlan) {
	fmt.Fprintf(out, "Recovery plan (config version %d):\n", plan.BaseVersion)
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "  dbid\tcontent\tkind\tfailed instance\trecovered onto\tsource (acting primary)")
	for _, s := range plan.Steps {
		onto := "same place"
		if s.To != nil {
			onto = fmt.Sprintf("%s:%d %s", s.To.Hostname, s.To.Port, s.To.DataDir)
		}
		fmt.Fprintf(w, "  %d\t%d\t%s\t%s:%d %s\t%s\tdbid %d %s:%d\n", s.Request.DBID, s.Content, s.Request.Kind,
			s.From.Hostname, s.From.Port, s.From.DataDir, onto, s.Source.DBID, s.Source.Hostname, s.Source.Port)
	}
	w.Flush()
}

// waitRecovery follows a recovery job until each instance is up with its
// pair in sync, or its recovery failed; failures are named with their
// reason and how to go on. dbids nil follows the job in progress.
func waitRecovery(ctx context.Context, out io.Writer, c *api.Client, timeout time.Duration, dbids []int) error {
	if dbids == nil {
		s, err := c.State(ctx)
		if err != nil {
			return err
		}
		for _, r := range s.Recoveries {
			dbids = append(dbids, r.DBID)
		}
	}
	settled := func(s *api.State) bool {
		for _, dbid := range dbids {
			seg, _ := s.Segment(dbid)
			if slices.ContainsFunc(s.Recoveries, func(r topology.Recovery) bool { return r.DBID == dbid }) {
				return false
			}
			if seg.Status == topology.StatusUp && !allUp([]int{dbid}, true)(s) {
				return false // up, not yet in sync
			}
		}
		return true
	}
	start := time.Now()
	if err := waitFor(ctx, out, c, timeout, dbids, settled); err != nil {
		return err
	}
	s, err := c.State(ctx)
	if err != nil {
		return err
	}
	var failed []string
	for _, dbid := range dbids {
		if seg, _ := s.Segment(dbid); seg.Status != topology.StatusUp {
			failed = append(failed, fmt.Sprintf("dbid %d: %s", dbid, lastRecoveryFailure(ctx, c, dbid)))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d recoveries failed: %s", len(failed), len(dbids), strings.Join(failed, "; "))
	}
	fmt.Fprintf(out, "recovered %d instances in %s: every pair is in sync\n", len(dbids), time.Since(start).Round(time.Millisecond))
	return nil
}

// lastRecoveryFailure finds why a recovery failed, in the history.
func lastRecoveryFailure(ctx context.Context, c *api.Client, dbid int) string {
	h, err := c.History(ctx)
	if err != nil {
		return "recovery failed (history unavailable: " + err.Error() + ")"
	}
	for i := len(h) - 1; i >= 0; i-- {
		if h[i].DBID == dbid && strings.Contains(h[i].Desc, "recovery of dbid") && strings.Contains(h[i].Desc, "failed") {
			hint := ""
			if strings.Contains(h[i].Desc, "incremental") {
				hint = " (gpagent recoverseg -F recovers it with a full copy)"
			}
			return h[i].Desc + hint
		}
	}
	return "still down"
}

// rebalanceSegments switches every content back to its preferred roles
// (gprecoverseg -r) and waits until each pair is back in sync.
func rebalanceSegments(ctx context.Context, cio cmdIO, c *api.Client, yes bool, timeout time.Duration) error {
	s, err := c.State(ctx)
	if err != nil {
		return err
	}
	var out []topology.Segment
	for _, x := range s.Segments {
		if x.Role != x.PreferredRole && x.Role == topology.RolePrimary {
			out = append(out, x)
		}
	}
	if len(out) == 0 {
		fmt.Fprintln(cio.out, "every instance is in its preferred role; nothing to rebalance")
		return nil
	}
	fmt.Fprintln(cio.out, "Contents to switch back to their preferred primaries:")
	for _, x := range out {
		fmt.Fprintf(cio.out, "  content %d: acting primary dbid %d (%s:%d) hands over to its mirror\n", x.Content, x.DBID, x.Hostname, x.Port)
	}
	if !yes {
		if err := confirm(cio, "Continue with segment rebalance procedure"); err != nil {
			return err
		}
	}
	res, err := c.Rebalance(ctx, api.RebalanceRequest{})
	if err != nil {
		return err
	}
	for _, sk := range res.Skipped {
		fmt.Fprintf(cio.out, "  content %d left alone: %s\n", sk.Content, sk.Reason)
	}
	var dbids []int
	for _, x := range s.Segments {
		if slices.Contains(res.Started, x.Content) {
			dbids = append(dbids, x.DBID)
		}
	}
	inPreferred := func(s *api.State, content int) bool {
		for _, x := range s.Segments {
			if x.Content == content && (x.Role != x.PreferredRole || x.Status != topology.StatusUp || x.Mode != topology.ModeSynced) {
				return false
			}
		}
		return true
	}
	// A content's switchover may end without the swap (abandoned: its
	// mirror was lost, or did not reach the shutdown checkpoint within
	// its deadline): it is settled then too, and reported as failed.
	began := res.ConfigVersion
	if began == 0 {
		// An agent older than the field: each started switchover is one
		// command after the state read above.
		began = s.ConfigVersion + uint64(len(res.Started))
	}
	var failed []int
	settled := func(s *api.State) bool {
		failed = failed[:0]
		for _, ct := range res.Started {
			if inPreferred(s, ct) {
				continue
			}
			to, ok := find(s.Segments, func(x topology.Segment) bool { return x.Content == ct && x.PreferredRole == topology.RolePrimary })
			if !ok || !switchoverAbandoned(s, ct, to.DBID, began) {
				return false
			}
			failed = append(failed, ct)
		}
		return true
	}
	if err := waitFor(ctx, cio.out, c, timeout, dbids, settled); err != nil {
		return err
	}
	if len(failed) > 0 {
		var why []string
		for _, ct := range failed {
			why = append(why, switchoverFailure(ctx, c, ct))
		}
		return fmt.Errorf("%d of %d contents not rebalanced, their switchover failed (they keep their roles): %s", len(failed), len(res.Started), strings.Join(why, "; "))
	}
	if len(res.Skipped) > 0 {
		return fmt.Errorf("%d contents rebalanced, %d left alone (see above)", len(res.Started), len(res.Skipped))
	}
	fmt.Fprintf(cio.out, "%d contents rebalanced: every instance is in its preferred role, pairs in sync\n", len(res.Started))
	return nil
}
