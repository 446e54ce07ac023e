package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

func cmdInit(ctx context.Context, io cmdIO, args []string) error {
	fs := newFlags(io, "init", "--config SPEC [--no-mirrors]")
	addr := addrFlag(fs)
	specPath := fs.String("config", "", "cluster spec file (YAML)")
	noMirrors := fs.Bool("no-mirrors", false, "create primaries only; add mirrors later with addmirrors")
	timeout := fs.Duration("timeout", 10*time.Minute, "how long to wait for every instance to be up")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *specPath == "" {
		return errors.New("--config: required (the cluster spec)")
	}
	spec, err := loadSpec(*specPath)
	if err != nil {
		return err
	}
	c := client(*addr)
	s, err := c.Init(ctx, api.InitRequest{Spec: *spec, NoMirrors: *noMirrors})
	if err != nil {
		return err
	}
	fmt.Fprintf(io.out, "cluster %s: %d instances placed (config version %d); waiting for them\n", s.ClusterID, len(s.Segments), s.ConfigVersion)
	if err := waitFor(ctx, io.out, c, *timeout, dbidsOf(s.Segments), allUp(dbidsOf(s.Segments), true)); err != nil {
		return err
	}
	fmt.Fprintln(io.out, "cluster initialized: every instance is up")
	return nil
}

// loadSpec reads and validates a cluster spec; errors name the file.
func loadSpec(path string) (*topology.Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("spec %s: %w", path, err)
	}
	spec, err := topology.ParseSpec(data)
	if err != nil {
		return nil, fmt.Errorf("spec %s: %w", path, err)
	}
	return spec, nil
}
