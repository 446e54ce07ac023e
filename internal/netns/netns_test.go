package netns

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// helperEnv makes the test binary, run inside a namespace, a tiny TCP
// tool instead of a test run: "listen ADDR" accepts and closes connections
// until killed; "dial ADDR" exits 0 if it connects within a second.
const helperEnv = "GPAGENT_NETNS_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode))
	}
	os.Exit(m.Run())
}

func helper(mode string) int {
	verb, addr, _ := strings.Cut(mode, " ")
	switch verb {
	case "listen":
		l, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("listening") // the parent waits for this line
		for {
			c, err := l.Accept()
			if err != nil {
				return 1
			}
			c.Close()
		}
	case "dial":
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		c.Close()
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown helper mode %q\n", mode)
	return 2
}

func requireRoot(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") == "" && os.Geteuid() != 0 {
			t.Skipf("%v; skipped because CI is not set (CI runs as root and fails here instead)", err)
		}
		t.Fatal(err)
	}
}

// TestPartitionHeal builds three hosts, checks who reaches whom before a
// cut, during it (the cut-off host reaches no other host, the root
// namespace still reaches it) and after the heal, and that Close leaves
// nothing behind.
func TestPartitionHeal(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	prefix := Prefix("gpt", 0)
	var leftovers []string
	n, err := Build(ctx, Options{Prefix: prefix, Hosts: []string{"a", "b", "c"}, Seed: os.Getpid(),
		Logf: func(f string, args ...any) { leftovers = append(leftovers, fmt.Sprintf(f, args...)) }})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			if err := n.Close(); err != nil {
				t.Error(err)
			}
		}
	}()
	if len(leftovers) > 0 {
		t.Logf("removed leftovers: %v", leftovers)
	}
	if n.Host("b") == nil || n.Host("zz") != nil || n.BridgeAddr() != n.Subnet+".254" {
		t.Fatalf("hosts %+v bridge %s", n.Hosts, n.BridgeAddr())
	}
	const port = 9999
	var listeners []*exec.Cmd
	stopListeners := func() {
		for _, cmd := range listeners {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		listeners = nil
	}
	defer stopListeners()
	for _, h := range n.Hosts {
		cmd := h.Command(ctx, os.Args[0])
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=listen %s:%d", helperEnv, h.Addr, port))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		listeners = append(listeners, cmd)
		buf := make([]byte, len("listening"))
		if _, err := io.ReadFull(out, buf); err != nil {
			t.Fatalf("listener in %s: %v", h.NS, err)
		}
	}
	reaches := func(from *Host, to *Host) bool {
		addr := net.JoinHostPort(to.Addr, strconv.Itoa(port))
		if from == nil {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err == nil
		}
		cmd := from.Command(ctx, os.Args[0])
		cmd.Env = append(os.Environ(), helperEnv+"=dial "+addr)
		return cmd.Run() == nil
	}
	check := func(when string, cutOff *Host) {
		t.Helper()
		for _, to := range n.Hosts {
			if !reaches(nil, to) {
				t.Errorf("%s: the root namespace does not reach %s", when, to.Name)
			}
			for _, from := range n.Hosts {
				if from == to {
					continue
				}
				want := cutOff == nil || (from != cutOff && to != cutOff)
				if got := reaches(from, to); got != want {
					t.Errorf("%s: %s reaches %s: %v, want %v", when, from.Name, to.Name, got, want)
				}
			}
		}
	}
	check("before the cut", nil)
	if err := n.Partition(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	check("during a's cut", n.Host("a"))
	if err := n.Heal(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	check("after the heal", nil)
	if err := n.Heal(ctx, "a"); err != nil {
		t.Errorf("a second heal: %v", err)
	}
	if err := n.Partition(ctx, "nosuch"); err == nil {
		t.Error("partition of an unknown host succeeded")
	}

	stopListeners()
	closed = true
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	assertNoneWithPrefix(t, prefix)
}

// TestLeftovers: a prefix too long for Linux's interface names is
// refused before anything is created, and a leftover carrying the prefix
// (as a crashed run leaves it) is removed by the next Build, not failed on.
func TestLeftovers(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prefix := Prefix("gpt", 1)
	if _, err := Build(ctx, Options{Prefix: prefix + "xxxxxxxx", Hosts: []string{"a"}}); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Errorf("an over-long prefix: %v", err)
	}
	if err := ipRun(ctx, "link", "add", prefix+"br", "type", "bridge"); err != nil {
		t.Fatal(err)
	}
	if err := ipRun(ctx, "netns", "add", prefix+"h1"); err != nil {
		t.Fatal(err)
	}
	var removed []string
	n, err := Build(ctx, Options{Prefix: prefix, Hosts: []string{"a"},
		Logf: func(f string, args ...any) { removed = append(removed, fmt.Sprintf(f, args...)) }})
	if err != nil {
		_ = RemoveLeftovers(ctx, prefix, nil)
		t.Fatalf("build over leftovers: %v", err)
	}
	if len(removed) != 2 {
		t.Errorf("removed %q, want the bridge and the namespace", removed)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	assertNoneWithPrefix(t, prefix)
}

func assertNoneWithPrefix(t *testing.T, prefix string) {
	t.Helper()
	out, err := ip(context.Background(), "netns", "list")
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range nsNames(out) {
		if strings.HasPrefix(ns, prefix) {
			t.Errorf("namespace %s left after Close", ns)
		}
	}
	links, err := rootLinks(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if strings.HasPrefix(l, prefix) {
			t.Errorf("link %s left after Close", l)
		}
	}
}
