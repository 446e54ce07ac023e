package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// notifier speaks systemd's notify protocol (sd_notify(3)): one datagram
// of NAME=value lines to the socket named by $NOTIFY_SOCKET. It is a few
// lines, so the agent does not take a library for it.
type notifier struct {
	addr     string        // "" outside a Type=notify unit: notify does nothing
	watchdog time.Duration // WATCHDOG_USEC when it is meant for this process
}

// newNotifier reads the notify variables and removes them from the
// environment: the postmasters the agent starts must not take the
// agent's socket for their own (Debian's PostgreSQL speaks the protocol).
func newNotifier() *notifier {
	n := &notifier{addr: os.Getenv("NOTIFY_SOCKET")}
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	pid := os.Getenv("WATCHDOG_PID")
	if err == nil && usec > 0 && (pid == "" || pid == strconv.Itoa(os.Getpid())) {
		n.watchdog = time.Duration(usec) * time.Microsecond
	}
	for _, v := range []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} {
		os.Unsetenv(v)
	}
	return n
}

// notify sends state, such as "READY=1".
func (n *notifier) notify(state string) error {
	if n.addr == "" {
		return nil
	}
	name := n.addr
	if name[0] == '@' {
		name = "\x00" + name[1:] // the abstract namespace
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("NOTIFY_SOCKET %s: %w", n.addr, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("NOTIFY_SOCKET %s: %w", n.addr, err)
	}
	return nil
}

// reloading is the message that opens a reload: systemd wants the
// monotonic time with it (Type=notify-reload requires it).
func reloading() string {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", ts.Nano()/1000)
}

// keepWatchdog pets the service manager's watchdog at half its period
// until ctx ends, so that a hung agent is restarted.
func (n *notifier) keepWatchdog(ctx context.Context) {
	if n.addr == "" || n.watchdog <= 0 {
		return
	}
	tick := time.NewTicker(n.watchdog / 2)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			_ = n.notify("WATCHDOG=1")
		}
	}
}
