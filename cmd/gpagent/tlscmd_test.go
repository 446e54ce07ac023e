package main

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpagent/gpagent/membership"
)

// TestCLI_TLSAndKeygen: the files gpagent tls and gpagent keygen make are
// what the agents take: a CA, an agent certificate (CN agent.HOST, for
// server and client) and an operator's (CN operator.NAME) that verify
// against it, and a key that is a gossip key.
func TestCLI_TLSAndKeygen(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if code, out, errOut := runCLI(t, "", "tls", "ca", "create"); code != 0 {
		t.Fatalf("tls ca create: %d %s %s", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, "", "tls", "ca", "create"); code == 0 || !strings.Contains(errOut, "exists") {
		t.Fatalf("a second tls ca create overwrote the CA: %d %s", code, errOut)
	}
	if code, out, errOut := runCLI(t, "", "tls", "cert", "create", "--agent", "sdw1", "--ip", "10.0.0.5"); code != 0 {
		t.Fatalf("tls cert create --agent: %d %s %s", code, out, errOut)
	}
	if code, out, errOut := runCLI(t, "", "tls", "cert", "create", "--operator", "alice"); code != 0 {
		t.Fatalf("tls cert create --operator: %d %s %s", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, "", "tls", "cert", "create"); code == 0 || !strings.Contains(errOut, "--agent") {
		t.Fatalf("tls cert create without a kind: %d %s", code, errOut)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "gpagent-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	for cn, usage := range map[string]x509.ExtKeyUsage{"agent.sdw1": x509.ExtKeyUsageServerAuth, "operator.alice": x509.ExtKeyUsageClientAuth} {
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, cn+".pem"), filepath.Join(dir, cn+"-key.pem"))
		if err != nil {
			t.Fatalf("%s: %v", cn, err)
		}
		leaf, _ := x509.ParseCertificate(pair.Certificate[0])
		if leaf.Subject.CommonName != cn {
			t.Errorf("CN %q, want %q", leaf.Subject.CommonName, cn)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("%s does not verify against the CA for %v: %v", cn, usage, err)
		}
		if cn == "agent.sdw1" && leaf.VerifyHostname("10.0.0.5") != nil {
			t.Errorf("agent certificate lacks its --ip")
		}
	}
	code, out, errOut := runCLI(t, "", "keygen")
	if code != 0 {
		t.Fatalf("keygen: %d %s", code, errOut)
	}
	keyFile := filepath.Join(dir, "gossip.key")
	if err := os.WriteFile(keyFile, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	if keys, err := membership.LoadKeyFile(keyFile); err != nil || len(keys) != 1 || len(keys[0]) != 32 {
		t.Errorf("keygen's output as a gossip key file: %v, %v", keys, err)
	}
}
