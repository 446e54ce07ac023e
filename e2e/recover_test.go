package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

// TestRecoverseg_Flow is the seed's flow end to end with writes running:
// a primary dies, its mirror takes over, recoverseg brings the old
// primary back as a mirror in sync (incremental, then full, then onto a
// new place with -i), and recoverseg -r puts every instance back in its
// preferred role. No acknowledged commit is lost on the way.
func TestRecoverseg_Flow(t *testing.T) {
	d := startDemo(t, "--hosts", "1")
	w0, w1 := d.startWriter(0), d.startWriter(1)
	s := d.state()
	p0, m0 := pair(t, s, 0)
	p1, m1 := pair(t, s, 1)

	t.Run("bad -i files are refused before anything changes", func(t *testing.T) {
		d := d.in(t)
		killPostmaster(t, p0)
		waitFailedOver(t, d, p0, m0)
		before := d.state().ConfigVersion
		cases := map[string]string{
			"wrong field count": "sdw1|" + fmt.Sprint(p0.Port) + "\n",
			"unknown instance":  "sdw1|1|/nowhere\n",
			"target in use":     fmt.Sprintf("# comment\nsdw1|%d|%s sdw1|%d|/tmp/elsewhere\n", p0.Port, p0.DataDir, p1.Port),
		}
		for name, content := range cases {
			path := filepath.Join(d.dir, strings.ReplaceAll(name, " ", "_"))
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := d.gpagent("recoverseg", "-i", path, "-a")
			if err == nil || !strings.Contains(err.Error(), "line ") {
				t.Errorf("%s: want a refusal naming the line, got %v", name, err)
			}
		}
		if after := d.state().ConfigVersion; after != before {
			t.Errorf("config version moved from %d to %d on refused input", before, after)
		}
	})

	t.Run("incremental", func(t *testing.T) {
		d := d.in(t)
		out := d.mustGpagent("recoverseg", "-a")
		if !strings.Contains(out, "incremental") {
			t.Errorf("recoverseg output does not say incremental:\n%s", out)
		}
		checkPair(t, d, 0, m0.DBID, p0.DBID)
		if h := d.mustGpagent("history"); !strings.Contains(h, "recovered (incremental)") {
			t.Errorf("history has no incremental recovery row:\n%s", h)
		}
	})

	t.Run("full", func(t *testing.T) {
		d := d.in(t)
		killPostmaster(t, p1)
		waitFailedOver(t, d, p1, m1)
		d.mustGpagent("recoverseg", "-F", "-a")
		checkPair(t, d, 1, m1.DBID, p1.DBID)
	})

	t.Run("rebalance", func(t *testing.T) {
		d := d.in(t)
		d.mustGpagent("recoverseg", "-r", "-a")
		for _, c := range []int{0, 1} {
			p, m := pair(t, d.state(), c)
			if p.PreferredRole != topology.RolePrimary || m.PreferredRole != topology.RoleMirror || p.Mode != topology.ModeSynced {
				t.Errorf("content %d after rebalance: primary %+v mirror %+v", c, p, m)
			}
		}
		if out := d.mustGpagent("state", "-e"); !strings.Contains(out, "No segments with problems") {
			t.Errorf("state -e after rebalance:\n%s", out)
		}
	})

	t.Run("onto a new place with -i", func(t *testing.T) {
		d := d.in(t)
		killPostmaster(t, p0)
		waitFailedOver(t, d, p0, m0)
		newDir := filepath.Join(d.dir, "data", "moved", "gpseg0")
		newPort := freePort(t)
		path := filepath.Join(d.dir, "recover.conf")
		line := fmt.Sprintf("sdw1|%d|%s 127.0.0.1|%d|%s\n", p0.Port, p0.DataDir, newPort, newDir)
		if err := os.WriteFile(path, []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
		d.mustGpagent("recoverseg", "-i", path, "-a")
		checkPair(t, d, 0, m0.DBID, p0.DBID)
		moved, _ := d.state().Segment(p0.DBID)
		if moved.Port != newPort || moved.DataDir != newDir {
			t.Errorf("moved instance recorded at %d %s, want %d %s", moved.Port, moved.DataDir, newPort, newDir)
		}
	})

	for _, w := range []*writer{w0, w1} {
		w.waitAckedAfter(time.Now(), 30*time.Second, w.table+" writes at the end")
		w.checkNoLoss()
	}
}

// TestAutoRecover: with auto_recover on, a killed primary's mirror takes
// over and the old primary comes back as its mirror in sync, unasked.
func TestAutoRecover(t *testing.T) {
	d := startDemo(t, "--hosts", "1", "--auto-recover")
	w := d.startWriter(0)
	p0, m0 := pair(t, d.state(), 0)
	killPostmaster(t, p0)
	// The old primary may be back as a mirror before a poll sees it down:
	// wait for the end state, then check the history for the steps.
	checkPair(t, d, 0, m0.DBID, p0.DBID)
	if h := d.mustGpagent("history"); !strings.Contains(h, "mirror promoted") {
		t.Errorf("history has no promotion:\n%s", h)
	}
	if h := d.mustGpagent("history"); !strings.Contains(h, "auto_recover") {
		t.Errorf("history does not name auto_recover:\n%s", h)
	}
	w.checkNoLoss()
}

// checkPair waits until content's primary is dbid p and its mirror dbid m,
// both up and in sync.
func checkPair(t *testing.T, d *demo, content, p, m int) {
	t.Helper()
	const timeout = 90 * time.Second
	deadline := time.Now().Add(timeout - time.Second)
	waitUntil(t, timeout, fmt.Sprintf("content %d: primary dbid %d, mirror dbid %d, both up and in sync", content, p, m), func() (bool, string) {
		s := d.state()
		ps, _ := s.Segment(p)
		ms, _ := s.Segment(m)
		ok := ps.Role == topology.RolePrimary && ms.Role == topology.RoleMirror &&
			ps.Status == topology.StatusUp && ms.Status == topology.StatusUp &&
			ps.Mode == topology.ModeSynced && ms.Mode == topology.ModeSynced
		detail := fmt.Sprintf("dbid %d %s, dbid %d %s (role, status, mode); switchovers %v, recoveries %v; reports: %s",
			p, rsm(ps), m, rsm(ms), s.Switchovers, s.Recoveries, reportsOf(s, p, m))
		if !ok && time.Now().After(deadline) {
			detail += "\nagent logs:\n" + d.agentLog()
		}
		return ok, detail
	})
}

// rsm is an instance's role, status and mode as gpstate shows them.
func rsm(s topology.Segment) string { return string(s.Role) + string(s.Status) + string(s.Mode) }

// reportsOf is what the agents last reported of some instances.
func reportsOf(s api.State, dbids ...int) string {
	var out []string
	for _, dbid := range dbids {
		if r, ok := report(s, dbid); ok {
			out = append(out, fmt.Sprintf("dbid %d: phase %q up %v recovery %v streaming %v error %q", dbid, r.Phase, r.Up, r.Recovery, r.Streaming, r.Error))
		}
	}
	return strings.Join(out, "; ")
}

// freePort finds a loopback port nobody listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
