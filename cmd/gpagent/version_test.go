package main

import (
	"strings"
	"testing"

	"github.com/gpagent/gpagent/agent"
)

// TestCLI_Version: version needs no agent and no TLS files, even when
// the CLI's TLS variables name files that do not exist.
func TestCLI_Version(t *testing.T) {
	t.Setenv("GPAGENT_CACERT", "/nonexistent/ca.pem")
	code, out, errOut := runCLI(t, "", "version")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if !strings.HasPrefix(out, "gpagent "+agent.Version+" (") {
		t.Errorf("version printed %q, want it to start with gpagent %s", out, agent.Version)
	}
}
