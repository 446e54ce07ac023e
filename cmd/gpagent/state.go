package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

func cmdState(ctx context.Context, cio cmdIO, args []string) error {
	fs := newFlags(cio, "state", "[-s | -m | -e | -c] [--json] [--watch [--interval D]]")
	addr := addrFlag(fs)
	details := fs.Bool("s", false, "details of every instance")
	mirrors := fs.Bool("m", false, "mirrors and their sync state")
	problems := fs.Bool("e", false, "pairs with problems, and build/resync progress")
	mapping := fs.Bool("c", false, "primary to mirror mapping")
	asJSON := fs.Bool("json", false, "print JSON (gp_segment_configuration columns and letters)")
	watch := fs.Bool("watch", false, "redraw whenever the state changes, until interrupted (as patronictl list -W)")
	interval := fs.Duration("interval", 2*time.Second, "with --watch, how often to ask the agent")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if n := countTrue(*details, *mirrors, *problems, *mapping); n > 1 {
		return errors.New("-s, -m, -e and -c: give at most one")
	}
	if *watch && *interval <= 0 {
		return errors.New("--interval: must be positive")
	}
	v := stateView{details: *details, mirrors: *mirrors, problems: *problems, mapping: *mapping, json: *asJSON}
	c := client(*addr)
	fetch := c.State
	if !*details && !*mirrors && !*problems {
		// The views that show no instance report ask for none: at a
		// thousand hosts they are most of the state's bytes.
		fetch = c.Segments
	}
	if !*watch && *asJSON && !*details && !*mirrors && !*problems {
		return printRawStateJSON(ctx, cio, c, *addr)
	}
	if !*watch {
		s, err := fetch(ctx)
		if err != nil {
			return err
		}
		if s.Stale {
			fmt.Fprintf(cio.err, "warning: the agent at %s could not confirm it leads; this state may be stale\n", *addr)
		}
		return v.print(cio.out, s)
	}
	return watchState(ctx, cio.out, *interval, func(ctx context.Context) string {
		var b bytes.Buffer
		s, err := fetch(ctx)
		if err != nil {
			// Nothing answers: that is a state too, and the watch goes on.
			fmt.Fprintf(&b, "Database State: %s (%v)\n", topology.StateUnreachable, err)
			return b.String()
		}
		if s.Stale {
			fmt.Fprintf(&b, "warning: the agent at %s could not confirm it leads; this state may be stale\n", *addr)
		}
		if err := v.print(&b, s); err != nil {
			fmt.Fprintf(&b, "error: %v\n", err)
		}
		return b.String()
	})
}

// watchState redraws what fetch returns each time it differs from the
// last drawing (a new config version, a state word, an instance's
// report), asking every interval, until ctx ends. On a terminal the
// screen is cleared first; into a pipe or file each drawing follows the
// last under a time stamp.
func watchState(ctx context.Context, out io.Writer, interval time.Duration, fetch func(context.Context) string) error {
	tty := isTerminal(out)
	last := ""
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if now := fetch(ctx); now != last && ctx.Err() == nil {
			if tty {
				fmt.Fprint(out, "\x1b[H\x1b[2J")
			} else if last != "" {
				fmt.Fprintln(out)
			}
			fmt.Fprintf(out, "%s\n%s", time.Now().Format(time.DateTime), now)
			last = now
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// stateView is which view of the state to print.
type stateView struct {
	details, mirrors, problems, mapping, json bool
}

func (v stateView) print(out io.Writer, s *api.State) error {
	view := s.Segments
	switch {
	case v.mirrors:
		view = filter(s.Segments, func(x topology.Segment) bool {
			return x.Role == topology.RoleMirror || x.PreferredRole == topology.RoleMirror
		})
	case v.problems:
		ix := newStateIndex(s)
		view = filter(s.Segments, func(x topology.Segment) bool { return hasProblem(ix, x) })
	}
	if v.json {
		shown := *s
		shown.Segments = view
		return printStateJSON(out, &shown, v.details || v.problems)
	}
	switch {
	case v.details:
		return printDetails(out, s)
	case v.mirrors:
		return printMirrors(out, s, view)
	case v.problems:
		return printProblems(out, s, view)
	case v.mapping:
		return printMapping(out, s)
	}
	return printSummary(out, s)
}

// printRawStateJSON prints `state --json` from the agent's encoding,
// indented as printStateJSON indents it, without decoding the segments:
// at 16,000 instances decoding and encoding them again was most of the
// command's time.
func printRawStateJSON(ctx context.Context, cio cmdIO, c *api.Client, addr string) error {
	raw, err := c.SegmentsJSON(ctx)
	if err != nil {
		return err
	}
	out, stale, err := indentStateJSON(raw)
	if err != nil {
		return fmt.Errorf("agent at %s: state: %w", addr, err)
	}
	if stale {
		fmt.Fprintf(cio.err, "warning: the agent at %s could not confirm it leads; this state may be stale\n", addr)
	}
	_, err = cio.out.Write(out)
	return err
}

// indentStateJSON is the agent's state encoding as printStateJSON prints
// the decoded state (without reports), and whether it says stale.
//
// An agent indents it itself when asked (SegmentsJSON asks): indenting
// 16,000 segments was half the command's time. An older agent's compact
// answer is indented here.
func indentStateJSON(raw []byte) ([]byte, bool, error) {
	out := raw
	if len(raw) < 2 || raw[1] != '\n' { // compact: no encoding holds a raw newline
		var err error
		if out, err = api.IndentState(raw); err != nil {
			return nil, false, err
		}
	}
	if len(out) == 0 || out[0] != '{' {
		return nil, false, fmt.Errorf("state answer is not a JSON object")
	}
	out = append(out[:len(out):len(out)], '\n')
	return out, api.StaleIndented(out), nil
}

// printStateJSON prints the gpstate --json contract; instance reports are
// added only for -s and -e, which ask for them.
func printStateJSON(out io.Writer, s *api.State, withReports bool) error {
	if !withReports {
		s.Instances = nil
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

func printSummary(out io.Writer, s *api.State) error {
	if len(s.Segments) == 0 {
		fmt.Fprintf(out, "No cluster yet (config version %d): run gpagent init.\n", s.ConfigVersion)
		return nil
	}
	fmt.Fprintln(out, databaseStateLine(s))
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "Cluster %s, config version %d, leader %s\n", s.ClusterID, s.ConfigVersion, orNone(s.Leader))
	coord, ok := find(s.Segments, func(x topology.Segment) bool {
		return x.Content == topology.CoordinatorContent && x.Role == topology.RolePrimary
	})
	if ok {
		fmt.Fprintf(w, "  Coordinator\t%s:%d\t%s\t%s\n", coord.Hostname, coord.Port, coord.DataDir, statusWord(coord.Status))
	}
	standby, ok := find(s.Segments, func(x topology.Segment) bool {
		return x.Content == topology.CoordinatorContent && x.Role == topology.RoleMirror
	})
	if ok {
		fmt.Fprintf(w, "  Standby\t%s:%d\t%s\t%s\n", standby.Hostname, standby.Port, standby.DataDir, statusWord(standby.Status))
	} else {
		fmt.Fprintf(w, "  Standby\tnone\n")
	}
	var pUp, pDown, mUp, mDown, synced, mirrorsTotal int
	for _, x := range s.Segments {
		if x.Content == topology.CoordinatorContent {
			continue
		}
		up := x.Status == topology.StatusUp
		if x.Role == topology.RolePrimary {
			pUp, pDown = pUp+b2i(up), pDown+b2i(!up)
		} else {
			mirrorsTotal++
			mUp, mDown = mUp+b2i(up), mDown+b2i(!up)
			synced += b2i(x.Mode == topology.ModeSynced)
		}
	}
	fmt.Fprintf(w, "  Segment primaries\t%d up, %d down\n", pUp, pDown)
	if mirrorsTotal == 0 {
		fmt.Fprintf(w, "  Segment mirrors\tnone (gpagent addmirrors adds them)\n")
	} else {
		fmt.Fprintf(w, "  Segment mirrors\t%d up, %d down, %d of %d in sync\n", mUp, mDown, synced, mirrorsTotal)
	}
	failover := "on"
	if s.Paused {
		failover = "paused (gpagent resume)"
	}
	fmt.Fprintf(w, "  Automatic failover\t%s\n", failover)
	ix := newStateIndex(s)
	n := len(filter(s.Segments, func(x topology.Segment) bool { return hasProblem(ix, x) }))
	if n == 0 {
		fmt.Fprintf(w, "  Problems\tnone\n")
	} else {
		fmt.Fprintf(w, "  Problems\t%d instances (gpagent state -e)\n", n)
	}
	return w.Flush()
}

// databaseStateLine is the summary's first line: the Database State word
// Greenplum Command Center would show, why, and what to run.
func databaseStateLine(s *api.State) string {
	t := &topology.Topology{Segments: s.Segments, Paused: s.Paused, Pending: s.Pending, Recoveries: s.Recoveries}
	v := topology.Classify(t)
	line := "Database State: " + string(v.State)
	if v.Why != "" {
		line += " (" + v.Why + ")"
	}
	if v.Action != "" {
		line += "; next: " + v.Action
	}
	return line
}

func printDetails(out io.Writer, s *api.State) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "config version %d\n", s.ConfigVersion)
	fmt.Fprintln(w, "dbid\tcontent\trole\tpreferred\tmode\tstatus\thost\taddress\tport\tdatadir\tpid\tphase\twal")
	ix := newStateIndex(s)
	for _, x := range s.Segments {
		r, _ := ix.report(x.DBID)
		fmt.Fprintf(w, "%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", x.DBID, x.Content, x.Role, x.PreferredRole, x.Mode, x.Status,
			x.Hostname, x.Address, x.Port, x.DataDir, pidString(r.PID), orNone(r.Phase), orNone(r.LSN))
	}
	return w.Flush()
}

func printMirrors(out io.Writer, s *api.State, mirrors []topology.Segment) error {
	if len(mirrors) == 0 {
		fmt.Fprintln(out, "No mirrors: gpagent addmirrors adds them.")
		return nil
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "content\tmirror\tdatadir\tstatus\tdata state\trole\tflush lag")
	ix := newStateIndex(s)
	for _, m := range mirrors {
		acting := "Passive"
		if m.Role == topology.RolePrimary {
			acting = "Acting as primary"
		}
		state := "Not in sync"
		if m.Mode == topology.ModeSynced {
			state = "Synchronized"
		}
		fmt.Fprintf(w, "%d\t%s:%d\t%s\t%s\t%s\t%s\t%s\n", m.Content, m.Hostname, m.Port, m.DataDir, statusWord(m.Status), state, acting, flushLag(ix, m))
	}
	return w.Flush()
}

func printProblems(out io.Writer, s *api.State, problems []topology.Segment) error {
	if len(problems) == 0 {
		fmt.Fprintln(out, "No segments with problems.")
		return nil
	}
	fmt.Fprintln(out, "Segments with problems:")
	ix := newStateIndex(s)
	for _, x := range problems {
		fmt.Fprintln(out, progressLine(ix, x.DBID)+problemWords(ix, x))
	}
	return nil
}

func printMapping(out io.Writer, s *api.State) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "content\tprimary\tstatus\tmirror\tstatus\tmode")
	ix := newStateIndex(s)
	contents := slices.Sorted(maps.Keys(ix.primary))
	for _, c := range contents {
		p := ix.primary[c]
		m, ok := ix.mirror[c]
		mirror, mstatus := "none", "-"
		if ok {
			mirror, mstatus = fmt.Sprintf("%s:%d", m.Hostname, m.Port), statusWord(m.Status)
		}
		fmt.Fprintf(w, "%d\t%s:%d\t%s\t%s\t%s\t%s\n", c, p.Hostname, p.Port, statusWord(p.Status), mirror, mstatus, p.Mode)
	}
	return w.Flush()
}

// hasProblem: down, a pair not in sync, out of its preferred role, or
// still being built.
func hasProblem(ix *stateIndex, x topology.Segment) bool {
	return x.Status != topology.StatusUp || x.Role != x.PreferredRole || ix.pending[x.DBID] ||
		(x.Mode != topology.ModeSynced && x.Content != topology.CoordinatorContent && ix.hasMirror(x.Content)) ||
		(x.Content == topology.CoordinatorContent && x.Role == topology.RoleMirror && x.Mode != topology.ModeSynced)
}

func problemWords(ix *stateIndex, x topology.Segment) string {
	var words []string
	if ix.pending[x.DBID] {
		words = append(words, "being created")
	} else if x.Status != topology.StatusUp {
		words = append(words, "down")
	}
	if x.Role != x.PreferredRole {
		words = append(words, "not in preferred role")
	}
	if x.Mode != topology.ModeSynced && ix.hasMirror(x.Content) {
		words = append(words, "not in sync")
	}
	if len(words) == 0 {
		return ""
	}
	return " [" + strings.Join(words, ", ") + "]"
}

// flushLag reads the mirror's lag from its primary's pg_stat_replication.
func flushLag(ix *stateIndex, m topology.Segment) string {
	p, ok := ix.primary[m.Content]
	if !ok {
		return "-"
	}
	r, _ := ix.report(p.DBID)
	for _, rep := range r.Replicas {
		if rep.ApplicationName == topology.AppName(m.DBID) {
			return bytesString(rep.FlushLagBytes)
		}
	}
	return "-"
}

func filter(segs []topology.Segment, keep func(topology.Segment) bool) []topology.Segment {
	out := []topology.Segment{}
	for _, x := range segs {
		if keep(x) {
			out = append(out, x)
		}
	}
	return out
}

func find(segs []topology.Segment, match func(topology.Segment) bool) (topology.Segment, bool) {
	i := slices.IndexFunc(segs, match)
	if i < 0 {
		return topology.Segment{}, false
	}
	return segs[i], true
}

func statusWord(st topology.Status) string {
	if st == topology.StatusUp {
		return "up"
	}
	return "down"
}

func pidString(pid int) string {
	if pid == 0 {
		return "-"
	}
	return fmt.Sprint(pid)
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func countTrue(bs ...bool) int {
	n := 0
	for _, b := range bs {
		n += b2i(b)
	}
	return n
}
