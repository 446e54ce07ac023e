package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// runTool runs a PostgreSQL program (initdb, pg_basebackup, ...) as the OS
// user, in its own session, and waits for it. onLine, if set, sees every
// line it prints (stdout and stderr, split at \n or \r). A failure carries
// the last lines of output, which is where these programs say why.
//
// On cancellation the whole process group gets SIGTERM, not just the
// program: pg_basebackup forks a WAL streamer that would otherwise live on.
func (s *Supervisor) runTool(ctx context.Context, name string, args, env []string, onLine func(string)) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, s.bins[name], args...)
	cmd.Dir = "/" // the agent's own cwd may be closed to the OS user
	cmd.Env = s.user.env(env...)
	cmd.SysProcAttr = s.user.sysProcAttr()
	cmd.Stdout, cmd.Stderr = w, w
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return fmt.Errorf("%s: %w", name, err)
	}
	w.Close()

	const keep = 8
	var last []string
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(r)
		sc.Split(scanLinesCR)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" {
				continue
			}
			if onLine != nil {
				onLine(line)
			}
			if len(last) == keep {
				last = append(last[:0], last[1:]...)
			}
			last = append(last, line)
		}
	}()
	werr := cmd.Wait()
	// Whatever the program left in its process group goes with it. The
	// group id cannot have been reused while any member lives.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-readDone:
	case <-time.After(5 * time.Second):
		r.Close() // someone outside the group holds the pipe
		<-readDone
	}
	r.Close()
	if werr != nil {
		if ctx.Err() != nil {
			werr = fmt.Errorf("%w (%w)", ctx.Err(), werr)
		}
		return fmt.Errorf("%s failed: %w: %s", name, werr, strings.Join(last, " | "))
	}
	return nil
}

// scanLinesCR splits at \n or \r: progress reports rewrite one line with
// \r on a terminal.
func scanLinesCR(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}
