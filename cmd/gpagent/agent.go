package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"log/slog"
	"os"

	"github.com/gpagent/gpagent/agent"
	"github.com/gpagent/gpagent/api"
)

func cmdAgent(ctx context.Context, io cmdIO, args []string) error {
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
	log := slog.New(slog.NewTextHandler(io.err, &slog.HandlerOptions{Level: cfg.LogLevel}))
	a, err := agent.New(cfg, log)
	if err != nil {
		return err
	}
	return a.Run(ctx)
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
