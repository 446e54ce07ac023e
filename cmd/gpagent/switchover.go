package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

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
	began, err := c.Switchover(ctx, *content)
	if err != nil {
		return err
	}
	swapped := func(s *api.State) bool {
		np, _ := s.Segment(m.DBID)
		nm, _ := s.Segment(p.DBID)
		return np.Role == topology.RolePrimary && np.Status == topology.StatusUp &&
			nm.Role == topology.RoleMirror && nm.Status == topology.StatusUp && nm.Mode == topology.ModeSynced
	}
	// The switchover may also end without the swap (abandoned: its
	// mirror was lost, or did not reach the shutdown checkpoint within
	// its deadline): then waiting on would hang until the timeout.
	var ended bool
	done := func(s *api.State) bool {
		ended = switchoverAbandoned(s, *content, m.DBID, began.ConfigVersion)
		return ended || swapped(s)
	}
	if err := waitFor(ctx, cio.out, c, *timeout, []int{p.DBID, m.DBID}, done); err != nil {
		return err
	}
	if ended {
		return fmt.Errorf("content %d: switchover failed: %s; dbid %d stays primary (it restarts in place if it was stopped), dbid %d mirror",
			*content, switchoverFailure(ctx, c, *content), p.DBID, m.DBID)
	}
	fmt.Fprintf(cio.out, "content %d: dbid %d is primary, dbid %d its mirror in sync\n", *content, m.DBID, p.DBID)
	return nil
}

// switchoverAbandoned: the switchover of content, begun at version
// began, is no longer in progress and its mirror to was not promoted.
// A state older than began may not show the switchover yet.
func switchoverAbandoned(s *api.State, content, to int, began uint64) bool {
	if s.ConfigVersion < began || slices.ContainsFunc(s.Switchovers, func(sw topology.Switchover) bool { return sw.Content == content }) {
		return false
	}
	seg, ok := s.Segment(to)
	return ok && seg.Role != topology.RolePrimary
}

// switchoverFailure finds why content's switchover was abandoned, in the
// history.
func switchoverFailure(ctx context.Context, c *api.Client, content int) string {
	h, err := c.History(ctx)
	if err != nil {
		return "abandoned (history unavailable: " + err.Error() + ")"
	}
	prefix := fmt.Sprintf("content %d: switchover abandoned", content)
	for i := len(h) - 1; i >= 0; i-- {
		if strings.HasPrefix(h[i].Desc, prefix) {
			return h[i].Desc
		}
	}
	return "abandoned (see gpagent history)"
}
