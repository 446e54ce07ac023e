package e2e

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

// TestDemo_AddMirrorsAndAgentRestart is the one-host flow an operator
// follows: a mirrorless demo, addmirrors, data reaching the mirrors, and
// an agent killed with -9 that comes back without touching PostgreSQL.
func TestDemo_AddMirrorsAndAgentRestart(t *testing.T) {
	d := startDemo(t, "--hosts", "1", "--no-mirrors")

	s := d.state()
	if len(s.Segments) != 3 {
		t.Fatalf("mirrorless demo: want coordinator + 2 primaries, got %d instances: %+v", len(s.Segments), s.Segments)
	}
	for _, seg := range s.Segments {
		if seg.Role != topology.RolePrimary || seg.Status != topology.StatusUp {
			t.Errorf("before addmirrors: %s: role %s status %s, want p u", seg, seg.Role, seg.Status)
		}
	}
	if out := d.mustGpagent("state"); !strings.Contains(out, "Segment mirrors") || !strings.Contains(out, "none") {
		t.Errorf("state summary does not say there are no mirrors:\n%s", out)
	}

	d.mustGpagent("addmirrors", "-a")

	s = d.state()
	checkMirrored(t, s)

	t.Run("rows reach the mirrors", func(t *testing.T) {
		d := d.in(t)
		cfg := d.config()
		for _, c := range []int{0, 1} {
			p, m := pair(t, s, c)
			table := fmt.Sprintf("e2e_rows_%d", c)
			execSQL(t, cfg.SuperUser, cfg.SuperPassword, p,
				"CREATE TABLE "+table+" (id int primary key)",
				"INSERT INTO "+table+" SELECT generate_series(1, 1000)")
			waitUntil(t, 30*time.Second, fmt.Sprintf("content %d mirror has 1000 rows", c), func() (bool, string) {
				n, err := count(cfg.SuperUser, cfg.SuperPassword, m, table)
				return err == nil && n == 1000, fmt.Sprintf("count=%d err=%v", n, err)
			})
		}
	})

	t.Run("kill -9 of the agent leaves postgres running", func(t *testing.T) {
		d := d.in(t)
		pids := map[int]int{}
		for _, seg := range s.Segments {
			pids[seg.DBID] = postmasterPID(seg.DataDir)
			if !alive(pids[seg.DBID]) {
				t.Fatalf("%s: postmaster %d not running before the agent kill", seg, pids[seg.DBID])
			}
		}
		old := d.agentPID()
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatalf("kill agent %d: %v", old, err)
		}
		var after api.State
		waitUntil(t, 60*time.Second, "a new agent answers with every instance adopted", func() (bool, string) {
			if pid := d.agentPID(); pid == old || !alive(pid) {
				return false, fmt.Sprintf("agent pid %d (old %d)", pid, old)
			}
			out, err := d.gpagent("state", "-s", "--json")
			if err != nil {
				return false, err.Error()
			}
			after = api.State{}
			if err := jsonUnmarshal(out, &after); err != nil {
				return false, err.Error()
			}
			if len(after.Instances) != len(s.Segments) {
				return false, fmt.Sprintf("%d instance reports", len(after.Instances))
			}
			for _, r := range after.Instances {
				if r.PID != pids[r.DBID] || !r.Up {
					return false, fmt.Sprintf("dbid %d: pid %d up %v", r.DBID, r.PID, r.Up)
				}
			}
			return true, ""
		})
		for _, seg := range s.Segments {
			if pid := postmasterPID(seg.DataDir); pid != pids[seg.DBID] || !alive(pid) {
				t.Errorf("%s: postmaster pid %d after the agent restart, want %d still running", seg, pid, pids[seg.DBID])
			}
		}
		if after.ConfigVersion != s.ConfigVersion {
			t.Errorf("config version %d after the agent restart, want %d unchanged", after.ConfigVersion, s.ConfigVersion)
		}
		if !sameSegments(after.Segments, s.Segments) {
			t.Errorf("topology changed across the agent restart:\nbefore %+v\nafter  %+v", s.Segments, after.Segments)
		}
	})

	t.Run("history records init and addmirrors", func(t *testing.T) {
		d := d.in(t)
		out := d.mustGpagent("history", "--json")
		var h api.History
		if err := jsonUnmarshal(out, &h); err != nil {
			t.Fatal(err)
		}
		var inits, adds int
		for _, e := range h {
			inits += b2i(strings.HasPrefix(e.Desc, "gpinitsystem"))
			adds += b2i(strings.HasPrefix(e.Desc, "gpaddmirrors"))
		}
		if inits != 3 || adds != 2 {
			t.Errorf("history: %d gpinitsystem rows (want 3), %d gpaddmirrors rows (want 2):\n%s", inits, adds, out)
		}
	})

	segs := s.Segments
	d.stop()
	for _, seg := range segs {
		if pid := postmasterPID(seg.DataDir); alive(pid) {
			t.Errorf("%s: postmaster %d still running after the demo stopped", seg, pid)
		}
	}
}

// checkMirrored asserts the picture after addmirrors: 5 instances,
// contents 0 and 1 each with one p and one m, all up and in sync.
func checkMirrored(t *testing.T, s api.State) {
	t.Helper()
	if len(s.Segments) != 5 {
		t.Fatalf("after addmirrors: %d instances, want 5: %+v", len(s.Segments), s.Segments)
	}
	for _, c := range []int{0, 1} {
		p, m := pair(t, s, c)
		for _, seg := range []topology.Segment{p, m} {
			if seg.Status != topology.StatusUp || seg.Mode != topology.ModeSynced {
				t.Errorf("content %d: %s: status %s mode %s, want u s", c, seg, seg.Status, seg.Mode)
			}
		}
		if p.Hostname == m.Hostname && p.Port == m.Port {
			t.Errorf("content %d: mirror on its primary's port", c)
		}
	}
}

func pair(t *testing.T, s api.State, content int) (p, m topology.Segment) {
	t.Helper()
	var np, nm int
	for _, seg := range s.Segments {
		if seg.Content != content {
			continue
		}
		switch seg.Role {
		case topology.RolePrimary:
			p, np = seg, np+1
		case topology.RoleMirror:
			m, nm = seg, nm+1
		}
	}
	if np != 1 || nm != 1 {
		t.Fatalf("content %d: %d primaries and %d mirrors, want 1 and 1", content, np, nm)
	}
	return p, m
}

func connect(user, password string, seg topology.Segment) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dsn := fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=postgres sslmode=disable", seg.Address, seg.Port, user, password)
	return pgx.Connect(ctx, dsn)
}

func execSQL(t *testing.T, user, password string, seg topology.Segment, stmts ...string) {
	t.Helper()
	conn, err := connect(user, password, seg)
	if err != nil {
		t.Fatalf("connect to %s: %v", seg, err)
	}
	defer conn.Close(context.Background())
	for _, q := range stmts {
		if _, err := conn.Exec(context.Background(), q); err != nil {
			t.Fatalf("%s on %s: %v", q, seg, err)
		}
	}
}

func count(user, password string, seg topology.Segment, table string) (int, error) {
	conn, err := connect(user, password, seg)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	var n int
	err = conn.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n)
	return n, err
}

func sameSegments(a, b []topology.Segment) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
