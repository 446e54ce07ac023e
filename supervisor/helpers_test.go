package supervisor

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Test passwords carry a space, a quote and a backslash, so every layer of
// quoting (conninfo, configuration file, SQL) is exercised.
const (
	testSuperPassword = `s3cret pw'q\x`
	testReplPassword  = `r'epl\ pw`
	testCluster       = "test-cluster-1"
)

func testConfig() Config {
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		// Not t.Log: watchers may log after a test has returned.
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return Config{
		SuperUser:     "gpadmin",
		SuperPassword: testSuperPassword,
		ReplUser:      "replicator",
		ReplPassword:  testReplPassword,
		WalKeepSize:   "64MB",
		ProbeTimeout:  5 * time.Second, // generous: the race detector slows the client
		Logger:        log,
	}
}

// newSup returns a Supervisor for real PostgreSQL. The tests run as root
// (here and in CI), so PostgreSQL runs as the "postgres" OS user; missing
// binaries or user fail the test, never skip it.
func newSup(t *testing.T) *Supervisor {
	t.Helper()
	s, err := New(testConfig())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	s.noSync = true
	t.Cleanup(s.Close)
	return s
}

// testRoot makes a directory the OS user can traverse: t.TempDir's parents
// may be 0700. It is removed after everything registered later (instance
// stops) has run.
func testRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "gpagent-sup-*")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// freePort returns a port that is free now. It is not taken from ":0":
// that hands out ports of the ephemeral range, which the tests' own client
// connections use as source ports, so one could steal an instance's port
// between the pick and PostgreSQL's bind. Ports below that range, checked
// by listening on them, do not have this problem.
func freePort(t *testing.T) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	for range 1000 {
		p := 10000 + rand.IntN(ephemeralMin()-10000)
		if portsGiven[p] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		ln.Close()
		portsGiven[p] = true
		return p
	}
	t.Fatal("no free port found")
	return 0
}

var (
	portMu     sync.Mutex
	portsGiven = map[int]bool{}
)

// ephemeralMin is the start of the kernel's ephemeral port range.
func ephemeralMin() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(data)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 11000 {
				return n
			}
		}
	}
	return 32768
}

func testInstance(t *testing.T, root string, dbid, content int) Instance {
	return Instance{
		DBID: dbid, Content: content,
		Address: "127.0.0.1", Port: freePort(t),
		DataDir: filepath.Join(root, "data", "gpseg"+strconv.Itoa(content)+"-dbid"+strconv.Itoa(dbid)),
	}
}

// stopOnCleanup stops inst when the test ends, whatever happened.
func stopOnCleanup(t *testing.T, s *Supervisor, inst Instance) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Stop(ctx, inst); err != nil {
			t.Errorf("cleanup: stop %s: %v", inst, err)
		}
	})
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it holds or the deadline passes, then fails
// with what cond last reported.
func waitFor(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var seen string
	for {
		var ok bool
		ok, seen = cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %v; last seen: %s", what, d, seen)
		}
		<-tick.C
	}
}

// waitExit waits for dbid on exits.
func waitExit(t *testing.T, exits <-chan int, dbid int, d time.Duration) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case got := <-exits:
			if got == dbid {
				return
			}
		case <-timeout:
			t.Fatalf("dbid %d not reported on Exits within %v", dbid, d)
		}
	}
}

func drain(ch <-chan int) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func listen(t *testing.T, port int) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
