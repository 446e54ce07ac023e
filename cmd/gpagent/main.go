// Command gpagent is the high-availability agent of a Greenplum-style
// cluster of PostgreSQL instances: the daemon (gpagent agent) and the
// operator subcommands, which all talk to an agent's HTTP API.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: gpagent <command> [flags]

commands:
  agent       run the agent daemon on this host (--config FILE, --config-dir DIR)
  demo        run a local demo cluster in the foreground
  init        create the coordinator and segments of a cluster spec (gpinitsystem)
  state       show the cluster state (gpstate)
  addmirrors  add mirrors to a mirrorless cluster (gpaddmirrors)
  history     show every topology change (gp_configuration_history)
  pause       stop automatic failover (maintenance)
  resume      restart automatic failover
  connstr     print a libpq multi-host connection string for a content
  switchover  planned, lossless role swap of one content's pair
  initstandby add a standby coordinator (gpinitstandby)
  recoverseg  recover failed instances as mirrors; -r rebalance (gprecoverseg)
  members     agents, their gossip status and Raft roles
  reload      make the agent at --addr re-read its config file (as SIGHUP)
  table       create or list distributed tables (through the coordinator)
  keyring     list or rotate the gossip encryption keys of every agent
  version     print the version of this gpagent binary
  tls         make the cluster CA and agent or operator certificates (tls ca create, tls cert create)
  keygen      print a new random gossip key or cluster token
  watchdog    the fence watchdog that gpagent agent starts (not run by hand)

Subcommands other than agent, demo and version talk to the agent at --addr, or
$GPAGENT_ADDR (default 127.0.0.1:7070); over HTTPS when $GPAGENT_CACERT
names the cluster CA, presenting $GPAGENT_CLIENT_CERT and
$GPAGENT_CLIENT_KEY when set (an operator certificate: gpagent tls cert create
--operator NAME), or else sending $GPAGENT_TOKEN, the cluster token of the
agents' token_file. Run 'gpagent <command> -h' for flags.
`

// errUsage marks an error already explained by the flag package.
var errUsage = errors.New("usage")

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	io := cmdIO{in: stdin, out: stdout, err: stderr}
	if args[0] != "agent" && args[0] != "watchdog" && args[0] != "demo" && args[0] != "version" && args[0] != "tls" && args[0] != "keygen" {
		// Every other command calls an agent: refuse TLS files it
		// cannot use before it falls back to something else.
		if _, err := clientTLS(); err != nil {
			fmt.Fprintf(stderr, "gpagent %s: %v\n", args[0], err)
			return 1
		}
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "watchdog":
		err = cmdWatchdog(ctx, io, rest)
	case "agent":
		err = cmdAgent(ctx, io, rest)
	case "demo":
		err = cmdDemo(ctx, io, rest)
	case "init":
		err = cmdInit(ctx, io, rest)
	case "state":
		err = cmdState(ctx, io, rest)
	case "addmirrors":
		err = cmdAddMirrors(ctx, io, rest)
	case "history":
		err = cmdHistory(ctx, io, rest)
	case "pause":
		err = cmdPause(ctx, io, rest, true)
	case "resume":
		err = cmdPause(ctx, io, rest, false)
	case "connstr":
		err = cmdConnstr(ctx, io, rest)
	case "switchover":
		err = cmdSwitchover(ctx, io, rest)
	case "initstandby":
		err = cmdInitStandby(ctx, io, rest)
	case "recoverseg":
		err = cmdRecoverseg(ctx, io, rest)
	case "members":
		err = cmdMembers(ctx, io, rest)
	case "reload":
		err = cmdReload(ctx, io, rest)
	case "keyring":
		err = cmdKeyring(ctx, io, rest)
	case "table":
		err = cmdTable(ctx, io, rest)
	case "version":
		err = cmdVersion(ctx, io, rest)
	case "tls":
		err = cmdTLS(io, rest)
	case "keygen":
		err = cmdKeygen(io, rest)
	default:
		fmt.Fprintf(stderr, "gpagent: unknown command %q\n%s", cmd, usage)
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
	fmt.Fprintf(stderr, "gpagent %s: %v\n", args[0], err)
	return 1
}

type cmdIO struct {
	in       io.Reader
	out, err io.Writer
}

// newFlags returns a flag set whose errors are reported once, by run.
func newFlags(io cmdIO, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.err)
	fs.Usage = func() {
		fmt.Fprintf(io.err, "usage: gpagent %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "gpagent %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return errUsage
	}
	return nil
}
