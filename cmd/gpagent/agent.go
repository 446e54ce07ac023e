package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gpagent/gpagent/agent"
	"github.com/gpagent/gpagent/api"
)

func cmdAgent(ctx context.Context, io cmdIO, args []string) error {
	// Caught before anything else: Go's default for SIGHUP is to exit,
	// and config management sends it after every config push.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	fs := newFlags(io, "agent", "--config FILE | --config-dir DIR")
	var src agent.ConfigSource
	fs.StringVar(&src.File, "config", "", "agent config file (YAML)")
	fs.StringVar(&src.Dir, "config-dir", "", "directory of agent config files (*.yaml, merged in lexical order, after --config)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if src == (agent.ConfigSource{}) {
		return errors.New("--config or --config-dir: required")
	}
	cfg, err := src.Load()
	if err != nil {
		return err
	}
	log, level := agent.NewLogger(io.err, cfg)
	// First: a primary this agent adopts or starts must never run
	// without someone to fence it when the agent cannot.
	wd, err := startWatchdog(ctx, cfg, log)
	if err != nil {
		return err
	}
	// However the agent ends, the watchdog is asked to end with it: it
	// does only if no primary runs (stop_instances_on_exit, or a failed
	// start that never started one).
	defer wd.release(3 * time.Second)
	sd := newNotifier()
	a, err := agent.New(cfg, log)
	if err != nil {
		return err
	}
	a.WatchConfig(src, level)
	go reloadOnHangup(ctx, a, hup, sd, log)
	go sd.keepWatchdog(ctx)
	// The API listener is bound and Raft is open: connections wait in
	// the backlog until Run serves them.
	if err := sd.notify("READY=1"); err != nil {
		log.Warn("cannot tell the service manager the agent is ready", "err", err)
	}
	go func() {
		<-ctx.Done() // SIGTERM or SIGINT: the agent begins to stop
		_ = sd.notify("STOPPING=1")
	}()
	return a.Run(ctx)
}

// reloadOnHangup re-reads the config file on each SIGHUP until ctx ends.
// The outcome, applied or refused, is logged by the agent; the service
// manager sees the reload begin and end either way.
func reloadOnHangup(ctx context.Context, a *agent.Agent, hup <-chan os.Signal, sd *notifier, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := sd.notify(reloading()); err != nil {
				log.Warn("cannot tell the service manager of the reload", "err", err)
			}
			_, _ = a.ReloadFile()
			_ = sd.notify("READY=1")
		}
	}
}

// cmdReload asks one agent (not the leader) to re-read its config file.
func cmdReload(ctx context.Context, io cmdIO, args []string) error {
	fs := newFlags(io, "reload", "[--addr ADDR]")
	addr := addrFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	res, err := client(*addr).Reload(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(io.out, "applied: %s\n", listOrNone(res.Applied))
	if len(res.NeedRestart) > 0 {
		fmt.Fprintf(io.out, "changed, need a restart (left as they were): %s\n", strings.Join(res.NeedRestart, ", "))
	}
	return nil
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "nothing changed"
	}
	return strings.Join(s, ", ")
}

// addrFlag adds --addr, defaulting to $GPAGENT_ADDR, then the agent's
// default API address.
func addrFlag(fs *flag.FlagSet) *string {
	def := os.Getenv("GPAGENT_ADDR")
	if def == "" {
		def = agent.DefaultAPIAddr
	}
	return fs.String("addr", def, "agent API address (default from $GPAGENT_ADDR)")
}

// client talks to the agent at addr, over HTTPS when $GPAGENT_CACERT is
// set (see clientTLS; run has already refused unreadable files).
func client(addr string) *api.Client {
	cfg, err := clientTLS()
	if err != nil {
		// Not plain HTTP when TLS was asked for: this fails loudly.
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	// The cluster token, for an agent guarded by token_file: sent as a
	// bearer credential with every request.
	return api.NewTLSClient(addr, cfg).WithToken(os.Getenv("GPAGENT_TOKEN"))
}

// clientTLS reads the CLI's TLS files from the environment: with
// $GPAGENT_CACERT set the CLI speaks HTTPS trusting that CA, and presents
// $GPAGENT_CLIENT_CERT and $GPAGENT_CLIENT_KEY when they are set. nil:
// plain HTTP. A file that cannot be read or used is an error naming the
// variable and the file, not a silent fallback.
func clientTLS() (*tls.Config, error) {
	return clientTLSFiles(os.Getenv("GPAGENT_CACERT"), os.Getenv("GPAGENT_CLIENT_CERT"), os.Getenv("GPAGENT_CLIENT_KEY"))
}

// clientTLSFiles is clientTLS on the files the three variables name.
func clientTLSFiles(caFile, certFile, keyFile string) (*tls.Config, error) {
	if caFile == "" {
		if certFile != "" || keyFile != "" {
			return nil, errors.New("GPAGENT_CLIENT_CERT and GPAGENT_CLIENT_KEY are set but GPAGENT_CACERT (the cluster CA) is not: without it the CLI speaks plain HTTP")
		}
		return nil, nil
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("GPAGENT_CACERT: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("GPAGENT_CACERT %s: no PEM certificate in it", caFile)
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if certFile == "" && keyFile == "" {
		return cfg, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("GPAGENT_CLIENT_CERT and GPAGENT_CLIENT_KEY: set both or neither")
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("GPAGENT_CLIENT_CERT: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("GPAGENT_CLIENT_KEY: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("GPAGENT_CLIENT_CERT %s and GPAGENT_CLIENT_KEY %s: %w", certFile, keyFile, err)
	}
	cfg.Certificates = []tls.Certificate{pair}
	return cfg, nil
}
