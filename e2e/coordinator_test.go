package e2e

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

// TestCoordinator_OneHost and TestCoordinator_ThreeHosts run the seed's
// story through the coordinator: the catalog in SQL follows gpagent state,
// region's count(*) stays right across a kill -9 of a segment primary, a
// session opened before the kill reads again after the promotion, and the
// catalog refuses hand writes.
func TestCoordinator_OneHost(t *testing.T)    { coordinatorStory(t, startDemo(t, "--hosts", "1")) }
func TestCoordinator_ThreeHosts(t *testing.T) { coordinatorStory(t, startDemo(t)) }

func coordinatorStory(t *testing.T, d *demo) {
	cfg := d.config()
	s := d.state()
	var coord topology.Segment
	for _, x := range s.Segments {
		if x.Content == topology.CoordinatorContent && x.Role == topology.RolePrimary {
			coord = x
		}
	}
	dial := func() (*pgx.Conn, error) { return connect(cfg.SuperUser, cfg.SuperPassword, coord) }
	ctx := context.Background()

	// catalogMatches waits until gp.gp_segment_configuration equals
	// gpagent state --json at its config version.
	catalogMatches := func(t *testing.T, what string) {
		t.Helper()
		waitUntil(t, 30*time.Second, "catalog equals gpagent state "+what, func() (bool, string) {
			st := d.state()
			c, err := dial()
			if err != nil {
				return false, err.Error()
			}
			defer c.Close(ctx)
			var v int64
			if err := c.QueryRow(ctx, "SELECT config_version FROM gp.gp_catalog_version").Scan(&v); err != nil {
				return false, err.Error()
			}
			rows, err := c.Query(ctx, "SELECT dbid, content, role, preferred_role, mode, status, port, hostname, address, datadir FROM gp.gp_segment_configuration ORDER BY dbid")
			if err != nil {
				return false, err.Error()
			}
			got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (topology.Segment, error) {
				var s topology.Segment
				var role, pref, mode, status string
				err := r.Scan(&s.DBID, &s.Content, &role, &pref, &mode, &status, &s.Port, &s.Hostname, &s.Address, &s.DataDir)
				s.Role, s.PreferredRole, s.Mode, s.Status = topology.Role(role), topology.Role(pref), topology.Mode(mode), topology.Status(status)
				return s, err
			})
			if err != nil {
				return false, err.Error()
			}
			want := slices.Clone(st.Segments)
			slices.SortFunc(want, func(a, b topology.Segment) int { return a.DBID - b.DBID })
			return uint64(v) == st.ConfigVersion && sameSegments(got, want),
				fmt.Sprintf("catalog version %d rows %+v; state version %d %+v", v, got, st.ConfigVersion, want)
		})
		// The lag: the last commit's time (the leader stamps it) to the
		// catalog's write. Logged, and bounded loosely: timings are for
		// the benchmark, but a catalog seconds behind is a bug.
		var hist api.History
		if err := jsonUnmarshal(d.mustGpagent("history", "--json"), &hist); err != nil || len(hist) == 0 {
			t.Fatalf("history --json: %v", err)
		}
		c, err := dial()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		var synced time.Time
		if err := c.QueryRow(ctx, "SELECT synced_at FROM gp.gp_catalog_version").Scan(&synced); err != nil {
			t.Fatal(err)
		}
		lag := synced.Sub(hist[len(hist)-1].Time)
		t.Logf("catalog %s: written %s after the last commit", what, lag.Round(time.Millisecond))
		if lag > 5*time.Second {
			t.Errorf("catalog %s: written %s after the last commit; want well within a second", what, lag.Round(time.Millisecond))
		}
	}
	countRegion := func(c *pgx.Conn) (int, error) {
		var n int
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		err := c.QueryRow(cctx, "SELECT count(*) FROM region").Scan(&n)
		return n, err
	}

	catalogMatches(t, "after init")
	before, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close(ctx)
	if n, err := countRegion(before); err != nil || n != 5 {
		t.Fatalf("region through the coordinator: %d rows, %v; want 5", n, err)
	}

	t.Run("hand writes to the catalog are refused", func(t *testing.T) {
		for _, q := range []string{
			"UPDATE gp.gp_segment_configuration SET status = 'd'",
			"DELETE FROM gp.gp_configuration_history",
			"INSERT INTO gp.gp_catalog_version VALUES (999, 'x', now())",
		} {
			if _, err := before.Exec(ctx, q); err == nil || !strings.Contains(err.Error(), "kept by gpagent") {
				t.Errorf("%s: %v, want refused", q, err)
			}
		}
	})

	p0, m0 := pair(t, s, 0)
	killPostmaster(t, p0)
	killed := time.Now()
	// From the moment the promotion is committed, new sessions: the
	// mirror's agent runs pg_promote only once it sees the commit, so
	// there is a short window in which the content has no writable
	// instance and the coordinator's query fails. It is measured, not
	// asserted: a new session must succeed once the promotion is done.
	waitSegment(t, d, m0.DBID, "promotion committed", func(x topology.Segment) bool { return x.Role == topology.RolePrimary })
	committed := time.Now()
	var firstErr error
	failures := 0
	waitUntil(t, 30*time.Second, "a new coordinator session counts region after the promotion commit", func() (bool, string) {
		c, err := dial()
		if err == nil {
			var n int
			n, err = countRegion(c)
			c.Close(ctx)
			if err == nil && n != 5 {
				t.Errorf("region through the coordinator after the promotion: %d rows, want 5", n)
			}
		}
		if err != nil {
			failures++
			if firstErr == nil {
				firstErr = err
			}
			return false, err.Error()
		}
		return true, ""
	})
	t.Logf("kill -9 to the promotion commit seen by state: %s; from there to the first new coordinator session that counted region: %s (%d failed sessions before, first error: %v)",
		committed.Sub(killed).Round(time.Millisecond), time.Since(committed).Round(time.Millisecond), failures, firstErr)
	waitFailedOver(t, d, p0, m0)
	// The new primary answers: a new session counts right at once (no
	// retry), and so does the session opened before the kill, without
	// reconnecting.
	fresh, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close(ctx)
	if n, err := countRegion(fresh); err != nil || n != 5 {
		t.Errorf("a new session after the promotion: %d rows, %v; want 5", n, err)
	}
	waitUntil(t, 30*time.Second, "the session opened before the kill reads region again", func() (bool, string) {
		n, err := countRegion(before)
		return err == nil && n == 5, fmt.Sprintf("%d rows, %v", n, err)
	})
	catalogMatches(t, "after the failover")
	var hist int
	if err := fresh.QueryRow(ctx, `SELECT count(*) FROM gp.gp_configuration_history WHERE "desc" LIKE '%promoted%'`).Scan(&hist); err != nil || hist == 0 {
		t.Errorf("gp_configuration_history has %d promotion rows, %v", hist, err)
	}

	d.mustGpagent("recoverseg", "-a")
	waitSegment(t, d, p0.DBID, "recovered as a mirror in sync", func(x topology.Segment) bool {
		return x.Status == topology.StatusUp && x.Mode == topology.ModeSynced
	})
	catalogMatches(t, "after recoverseg")
	d.mustGpagent("recoverseg", "-r", "-a")
	waitSegment(t, d, p0.DBID, "primary again after the rebalance", func(x topology.Segment) bool {
		return x.Role == topology.RolePrimary && x.Status == topology.StatusUp && x.Mode == topology.ModeSynced
	})
	catalogMatches(t, "after recoverseg -r")
	waitUntil(t, 30*time.Second, "region through the coordinator after the rebalance", func() (bool, string) {
		n, err := countRegion(before)
		return err == nil && n == 5, fmt.Sprintf("%d rows, %v", n, err)
	})

	t.Run("coordinator failover: the new coordinator's agent keeps the catalog", func(t *testing.T) {
		d := d.in(t)
		m := regexp.MustCompile(`initstandby -P (\d+)`).FindStringSubmatch(d.out.String())
		if m == nil {
			t.Fatalf("the demo's output names no standby port:\n%s", d.out)
		}
		d.mustGpagent("initstandby", "-P", m[1], "-a")
		pc, mc := pair(t, d.state(), topology.CoordinatorContent)
		waitSegment(t, d, mc.DBID, "the standby coordinator in sync", func(x topology.Segment) bool {
			return x.Status == topology.StatusUp && x.Mode == topology.ModeSynced
		})
		catalogMatches(t, "with a standby coordinator")
		killPostmaster(t, pc)
		waitFailedOver(t, d, pc, mc)
		coord = mc
		catalogMatches(t, "on the new coordinator")
		c, err := dial()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		if n, err := countRegion(c); err != nil || n != 5 {
			t.Errorf("region through the new coordinator: %d rows, %v; want 5", n, err)
		}
		if _, err := c.Exec(ctx, "DELETE FROM gp.gp_configuration_history"); err == nil || !strings.Contains(err.Error(), "kept by gpagent") {
			t.Errorf("a hand write on the new coordinator: %v, want refused", err)
		}
	})
}
