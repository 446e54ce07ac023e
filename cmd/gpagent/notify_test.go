package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAgent_NotifiesServiceManager: a `gpagent agent` under a fake
// systemd notify socket says READY=1, pets the watchdog, wraps a reload
// in RELOADING=1 / READY=1, and says STOPPING=1 on SIGTERM.
func TestAgent_NotifiesServiceManager(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	path := filepath.Join(dir, "agent.yaml")
	doc := fmt.Sprintf(`name: sd
address: 127.0.0.1
data_dir: %s
api_addr: 127.0.0.1:0
raft_addr: 127.0.0.1:0
gossip_addr: 127.0.0.1:0
bootstrap: true
log_level: warn
postgres: {superuser_password: a, replication_password: b}
`, filepath.Join(dir, "data")) + secretFiles(t, dir)
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := helperGPAgent("agent", "--config", path)
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=200000")
	log := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
	}()

	// next returns the next message that is not a watchdog ping (and
	// counts those).
	pings := 0
	next := func(what string) string {
		t.Helper()
		buf := make([]byte, 4096)
		for {
			_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("no %s on the notify socket: %v; agent log:\n%s", what, err, log)
			}
			if msg := string(buf[:n]); msg != "WATCHDOG=1" {
				return msg
			}
			pings++
		}
	}
	if msg := next("READY=1"); msg != "READY=1" {
		t.Fatalf("first message %q, want READY=1", msg)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if msg := next("RELOADING=1"); !strings.HasPrefix(msg, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Fatalf("message %q, want RELOADING=1 with MONOTONIC_USEC", msg)
	}
	if msg := next("READY=1 after the reload"); msg != "READY=1" {
		t.Fatalf("message %q, want READY=1 after the reload", msg)
	}
	// The watchdog period is 200 ms: pings come every 100 ms.
	deadline := time.Now().Add(30 * time.Second)
	for pings < 2 {
		_ = conn.SetReadDeadline(deadline)
		buf := make([]byte, 64)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("%d watchdog pings, want 2: %v", pings, err)
		}
		if string(buf[:n]) != "WATCHDOG=1" {
			t.Fatalf("unexpected message %q", buf[:n])
		}
		pings++
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if msg := next("STOPPING=1"); msg != "STOPPING=1" {
		t.Fatalf("message %q, want STOPPING=1", msg)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Errorf("agent exited with %v after SIGTERM; log:\n%s", err, log)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("agent did not exit within 60 s of SIGTERM")
	}
}

// TestUnitFile: the shipped unit keeps postmasters across an agent
// restart and restarts a failed agent; systemd-analyze accepts it where
// it is installed.
func TestUnitFile(t *testing.T) {
	unit, err := os.ReadFile("../../deploy/gpagent.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "KillMode=process", "Restart=on-failure", "LimitNOFILE=", "ExecReload=/bin/kill -HUP $MAINPID", "ExecStart=/usr/bin/gpagent agent --config "} {
		if !strings.Contains(string(unit), "\n"+want) {
			t.Errorf("unit has no %q line", want)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: the unit's syntax is not verified")
		return
	}
	// verify checks that ExecStart's binary exists: point it at this one.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "gpagent.service")
	if err := os.WriteFile(path, []byte(strings.Replace(string(unit), "/usr/bin/gpagent", self, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestNewNotifier: the notify variables are the agent's alone (removed,
// so postmasters do not inherit them), and a watchdog meant for another
// process is not petted.
func TestNewNotifier(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "@gpagent-test")
	t.Setenv("WATCHDOG_USEC", "1000000")
	t.Setenv("WATCHDOG_PID", "1")
	n := newNotifier()
	if n.addr != "@gpagent-test" || n.watchdog != 0 {
		t.Errorf("notifier %+v, want the socket and no watchdog (WATCHDOG_PID is not ours)", n)
	}
	for _, v := range []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} {
		if _, set := os.LookupEnv(v); set {
			t.Errorf("%s is still in the environment", v)
		}
	}
	t.Setenv("WATCHDOG_USEC", "1000000")
	t.Setenv("WATCHDOG_PID", fmt.Sprint(os.Getpid()))
	if n := newNotifier(); n.watchdog != time.Second {
		t.Errorf("watchdog %s, want 1s", n.watchdog)
	}
}
