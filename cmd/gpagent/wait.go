package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

// waitFor polls the state until done reports true, printing each
// instance's progress line whenever it changes. On timeout it names what
// was still missing.
func waitFor(ctx context.Context, out io.Writer, c *api.Client, timeout time.Duration, dbids []int, done func(*api.State) bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := map[int]string{}
	live := isTerminal(out)
	drawn := 0
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var s *api.State
	for {
		var err error
		began := time.Now()
		s, err = c.State(ctx)
		// Asked again no sooner than five times what the answer took: a
		// thousand hosts' state is megabytes for the leader to encode.
		tick.Reset(max(100*time.Millisecond, 5*time.Since(began)))
		var ix *stateIndex
		if err == nil {
			ix = newStateIndex(s)
			if live {
				// On a terminal: one line per instance, redrawn in place.
				if drawn > 0 {
					fmt.Fprintf(out, "\x1b[%dA", drawn)
				}
				for _, dbid := range dbids {
					fmt.Fprintf(out, "\x1b[2K%s\n", progressLine(ix, dbid))
				}
				drawn = len(dbids)
			} else {
				// Otherwise (a log, a pipe): a line whenever one changes.
				for _, dbid := range dbids {
					line := progressLine(ix, dbid)
					if line != last[dbid] {
						fmt.Fprintln(out, line)
						last[dbid] = line
					}
				}
			}
			if done(s) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if s == nil {
				return fmt.Errorf("gave up after %s: %w", timeout, err)
			}
			var missing []string
			ix := newStateIndex(s)
			for _, dbid := range dbids {
				missing = append(missing, progressLine(ix, dbid))
			}
			return fmt.Errorf("gave up after %s; still: %s", timeout, strings.Join(missing, "; "))
		case <-tick.C:
		}
	}
}

// progressLine is one instance's state in a short line.
func progressLine(ix *stateIndex, dbid int) string {
	seg := ix.seg[dbid]
	line := fmt.Sprintf("  dbid %d content %d %s %s:%d: status %s mode %s", dbid, seg.Content, roleName(seg.Role), seg.Hostname, seg.Port, seg.Status, seg.Mode)
	if r, ok := ix.report(dbid); ok {
		line += ", " + r.Phase
		if p := r.Progress; p != nil && p.Total > 0 {
			line += fmt.Sprintf(" %s %d%% (%s of %s%s)", p.Step, p.Done*100/p.Total, bytesString(p.Done), bytesString(p.Total), rateWords(p))
		}
		if r.Error != "" {
			line += ": " + r.Error
		}
	}
	return line
}

// allUp: every listed instance is recorded up, and every pair of them in
// sync when wantSync.
func allUp(dbids []int, wantSync bool) func(*api.State) bool {
	return func(s *api.State) bool {
		ix := newStateIndex(s)
		for _, dbid := range dbids {
			seg, ok := ix.seg[dbid]
			if !ok {
				continue
			}
			if seg.Status != topology.StatusUp {
				return false
			}
			if wantSync && seg.Mode != topology.ModeSynced && ix.hasMirror(seg.Content) {
				return false
			}
		}
		return true
	}
}

func roleName(r topology.Role) string {
	if r == topology.RolePrimary {
		return "primary"
	}
	return "mirror"
}

func bytesString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func dbidsOf(segs []topology.Segment) []int {
	out := make([]int, 0, len(segs))
	for _, s := range segs {
		out = append(out, s.DBID)
	}
	return out
}

// rateWords is the rate and time left of a step, from its report.
func rateWords(p *api.Progress) string {
	elapsed := time.Since(p.Started).Seconds()
	if elapsed < 1 || p.Done == 0 {
		return ""
	}
	rate := float64(p.Done) / elapsed
	left := time.Duration(float64(p.Total-p.Done) / rate * float64(time.Second)).Round(time.Second)
	return fmt.Sprintf(", %s/s, %s left", bytesString(int64(rate)), left)
}

// isTerminal reports whether w is a terminal, where progress is redrawn.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
