package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/gpagent/gpagent/agent"
	"github.com/gpagent/gpagent/api"
)

func cmdAgent(ctx context.Context, io cmdIO, args []string) error {
	// Caught before anything else: Go's default for SIGHUP is to exit,
	// and config management sends it after every config push.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	fs := newFlags(io, "agent", "--config FILE")
	configPath := fs.String("config", "", "agent config file (YAML)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *configPath == "" {
		return errors.New("--config: required")
	}
	cfg, err := agent.LoadConfig(*configPath)
	if err != nil {
		return err
	}
	log, level := agent.NewLogger(io.err, cfg)
	a, err := agent.New(cfg, log)
	if err != nil {
		return err
	}
	a.WatchConfig(*configPath, level)
	go reloadOnHangup(ctx, a, hup)
	return a.Run(ctx)
}

// reloadOnHangup re-reads the config file on each SIGHUP until ctx ends.
// The outcome, applied or refused, is logged by the agent.
func reloadOnHangup(ctx context.Context, a *agent.Agent, hup <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			_, _ = a.ReloadFile()
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

// client talks to the agent at addr. With $GPAGENT_CACERT set it speaks
// HTTPS, trusting that CA, and presents $GPAGENT_CLIENT_CERT and
// $GPAGENT_CLIENT_KEY when both are set.
func client(addr string) *api.Client {
	caFile := os.Getenv("GPAGENT_CACERT")
	if caFile == "" {
		return api.NewClient(addr)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca, err := os.ReadFile(caFile); err == nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		cfg.RootCAs = pool
	}
	if cert, key := os.Getenv("GPAGENT_CLIENT_CERT"), os.Getenv("GPAGENT_CLIENT_KEY"); cert != "" && key != "" {
		if pair, err := tls.LoadX509KeyPair(cert, key); err == nil {
			cfg.Certificates = []tls.Certificate{pair}
		}
	}
	return api.NewTLSClient(addr, cfg)
}
