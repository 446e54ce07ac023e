package e2e

import (
	"context"
	"crypto/tls"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestDemo_RefusesAnonymousChanges: on the demo as the README starts it
// (TLS, an operator certificate in the env file), an anonymous
// `curl -k -X POST https://.../v1/pause` (and one with a made-up token,
// and the CLI without the operator certificate) gets 401 and the cluster
// does not change; reads stay open; the CLI of the shell that sourced
// the env file is obeyed.
func TestDemo_RefusesAnonymousChanges(t *testing.T) {
	d := startDemo(t, "--hosts", "1", "--no-mirrors")
	before := d.state()
	if plain, err := (&http.Client{Timeout: 30 * time.Second}).Get("http://" + d.addr + "/v1/state"); err == nil {
		if plain.StatusCode < 400 {
			t.Errorf("plain HTTP GET /v1/state: %d, want the demo to speak HTTPS only", plain.StatusCode)
		}
		plain.Body.Close()
	}
	// curl -k: TLS without checking the server, no client certificate.
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // an anonymous caller's curl -k
	post := func(path, token string) int {
		req, err := http.NewRequest(http.MethodPost, "https://"+d.addr+path, strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, path := range []string{"/v1/pause", "/v1/switchover", "/v1/recover", "/v1/report", "/v1/init"} {
		if got := post(path, ""); got != http.StatusUnauthorized {
			t.Errorf("anonymous POST %s: %d, want 401", path, got)
		}
		if got := post(path, "made-up"); got != http.StatusUnauthorized {
			t.Errorf("POST %s with a made-up token: %d, want 401", path, got)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "pause")
	cmd.Env = append(d.environ(), "GPAGENT_CLIENT_CERT=", "GPAGENT_CLIENT_KEY=", "GPAGENT_TOKEN=")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "credential") {
		t.Errorf("gpagent pause without the operator certificate: %v %q, want a refusal that asks for a credential", err, out)
	}
	after := d.state()
	if after.Paused || after.ConfigVersion != before.ConfigVersion {
		t.Fatalf("the cluster changed after refused calls: paused %v, config version %d -> %d", after.Paused, before.ConfigVersion, after.ConfigVersion)
	}
	resp, err := hc.Get("https://" + d.addr + "/v1/state")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("anonymous GET /v1/state: %v %v, want 200 (reads stay open)", resp, err)
	}
	resp.Body.Close()
	d.mustGpagent("pause")
	if s := d.state(); !s.Paused {
		t.Fatalf("gpagent pause with the operator certificate was not obeyed")
	}
	d.mustGpagent("resume")
	if s := d.state(); s.Paused {
		t.Fatalf("gpagent resume with the operator certificate was not obeyed")
	}
}
