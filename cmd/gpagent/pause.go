package main

import (
	"context"
	"fmt"
)

// cmdPause pauses (gpagent pause) or resumes (gpagent resume) automatic
// failover for maintenance.
func cmdPause(ctx context.Context, io cmdIO, args []string, paused bool) error {
	name := "resume"
	if paused {
		name = "pause"
	}
	fs := newFlags(io, name, "")
	addr := addrFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	s, err := client(*addr).SetPaused(ctx, paused)
	if err != nil {
		return err
	}
	if s.Paused {
		fmt.Fprintf(io.out, "automatic failover paused (config version %d); gpagent resume restarts it\n", s.ConfigVersion)
	} else {
		fmt.Fprintf(io.out, "automatic failover on (config version %d)\n", s.ConfigVersion)
	}
	return nil
}
