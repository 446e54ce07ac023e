package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/gpagent/gpagent/agent"
)

// cmdVersion prints the agent's version, the commit it was built from
// when the build recorded one, and the Go toolchain: what a package
// install is checked with, and what an operator quotes in a bug report.
func cmdVersion(_ context.Context, io cmdIO, args []string) error {
	fs := newFlags(io, "version", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	commit := "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				commit = s.Value[:12]
			}
		}
	}
	fmt.Fprintf(io.out, "gpagent %s (commit %s, %s %s/%s)\n", agent.Version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
