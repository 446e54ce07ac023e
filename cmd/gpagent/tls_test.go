package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpagent/gpagent/internal/testcerts"
)

// TestCLI_TLSFiles: a TLS file the CLI cannot use is an error naming the
// variable and the file, never a silent fall back to no certificate.
func TestCLI_TLSFiles(t *testing.T) {
	ca := testcerts.New(t)
	dir := t.TempDir()
	caFile, certFile, keyFile := ca.WriteFiles(t, dir, ca.Issue(t, "127.0.0.1"))
	_, otherCert, _ := ca.WriteFiles(t, t.TempDir(), ca.Issue(t, "127.0.0.1"))
	notPEM := writeFile(t, "ca.txt", "not a certificate\n")
	missing := filepath.Join(dir, "missing.pem")
	cases := []struct {
		name          string
		ca, cert, key string
		want          []string // all in the one-line error; nil: no TLS error
	}{
		{"missing CA", missing, "", "", []string{"GPAGENT_CACERT", missing}},
		{"CA not PEM", notPEM, "", "", []string{"GPAGENT_CACERT", notPEM, "no PEM"}},
		{"missing client certificate", caFile, missing, keyFile, []string{"GPAGENT_CLIENT_CERT", missing}},
		{"missing client key", caFile, certFile, missing, []string{"GPAGENT_CLIENT_KEY", missing}},
		{"certificate without key", caFile, certFile, "", []string{"GPAGENT_CLIENT_KEY", "both"}},
		{"certificate without CA", "", certFile, keyFile, []string{"GPAGENT_CACERT"}},
		{"key of another certificate", caFile, otherCert, keyFile, []string{"GPAGENT_CLIENT_CERT", otherCert, keyFile}},
		{"good files", caFile, certFile, keyFile, nil},
		{"CA alone", caFile, "", "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GPAGENT_CACERT", tc.ca)
			t.Setenv("GPAGENT_CLIENT_CERT", tc.cert)
			t.Setenv("GPAGENT_CLIENT_KEY", tc.key)
			code, _, stderr := runCLI(t, "", "state", "--addr", deadAddr(t))
			if code == 0 {
				t.Fatalf("exit 0 with no agent; stderr %q", stderr)
			}
			if tc.want == nil {
				// The files were fine: the error is about the agent.
				if strings.Contains(stderr, "GPAGENT_") || !strings.Contains(stderr, "agent at") {
					t.Errorf("stderr %q: want only the unreachable agent", stderr)
				}
				return
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q does not name %q", stderr, w)
				}
			}
			if strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Errorf("error is not one line: %q", stderr)
			}
		})
	}
}
