package main

import (
	"context"
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

func client(addr string) *api.Client { return api.NewClient(addr) }
