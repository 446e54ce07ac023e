// Command gpbench measures a PostgreSQL high-availability setup under
// faults: by default a gpagent demo cluster it starts itself, or any
// existing setup (Patroni, ...) reached through a multi-host connection
// string.
//
// Progress goes to stderr; results to stdout, whose last line is one JSON
// object.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: gpbench <command> [flags]

commands:
  failover   inject a fault into the acting primary (kill -9 or a hang) trial
             after trial, while a client writes every 10 ms; report write
             unavailability, lost acknowledged writes and split-brain events
  recover    time gpagent recoverseg on pgbench-loaded segments: incremental
             (pg_rewind) after ~10 MB of changes, and a full copy against
             cp -a
  rebalance  write unavailability, lost writes and split brain during
             gpagent recoverseg -r (switchover back to preferred roles)
  chaos      random faults for --minutes on a three-host cluster in network
             namespaces (root), a writer on every content; report lost
             acknowledged writes, split brain and stranded contents
  scale      grow a cluster of simulated-instance agents (3 Raft server
             processes, the segment hosts many to a process) and time host
             loss, instance crash and gpagent state at each size

Run 'gpbench <command> -h' for flags.
`

// errUsage marks an error the flag package has already explained.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole program, callable in-process by tests.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	// The netns and scale clusters gpbench starts take $GPAGENT_TOKEN as
	// their cluster token, and the gpagent commands it runs send it: one
	// secret for the run, made here unless given. (A demo runs TLS: its
	// commands present the operator certificate of its env file.)
	if os.Getenv("GPAGENT_TOKEN") == "" {
		tok := make([]byte, 32)
		_, _ = rand.Read(tok)
		os.Setenv("GPAGENT_TOKEN", base64.StdEncoding.EncodeToString(tok))
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "failover":
		err = cmdFailover(ctx, rest, stdout, stderr)
	case "recover":
		err = cmdRecover(ctx, rest, stdout, stderr)
	case "rebalance":
		err = cmdRebalance(ctx, rest, stdout, stderr)
	case "chaos":
		err = cmdChaos(ctx, rest, stdout, stderr)
	case "scale":
		err = cmdScale(ctx, rest, stdout, stderr)
	case "scale-node": // gpbench scale's child; not for people
		err = cmdScaleNode(ctx, rest, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "gpbench: unknown command %q\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintf(stderr, "gpbench %s: %v\n", args[0], err)
	return 1
}

// parseFlags parses a subcommand's flags: -h is flag.ErrHelp, a bad flag
// or a stray argument is errUsage (after a one-line message).
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gpbench %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return errUsage
	}
	return nil
}
