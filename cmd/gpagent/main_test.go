package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs the binary's entry point in-process.
func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// deadAddr is an address where no agent listens.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestCLI_BadInput(t *testing.T) {
	goodSpec := `
coordinator: {hostname: sdw1, address: 127.0.0.1, port: 6000, datadir: /data/coordinator}
segment_hosts: [{hostname: sdw1, address: 127.0.0.1}]
primary: {port_base: 6001, datadirs: [/data/primary]}
`
	cases := []struct {
		name string
		args func(t *testing.T) []string
		want string // in the one-line error
	}{
		{"unknown command", func(*testing.T) []string { return []string{"frobnicate"} }, "unknown command"},
		{"agent without config", func(*testing.T) []string { return []string{"agent"} }, "--config or --config-dir: required"},
		{"agent config dir unknown field", func(t *testing.T) []string {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "50-site.yaml"), []byte("data_dir: /x\nprobe_intervall: 1s\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return []string{"agent", "--config-dir", dir}
		}, `50-site.yaml: line 2: unknown field "probe_intervall"`},
		{"keyring without an op", func(t *testing.T) []string { return []string{"keyring", "--addr", deadAddr(t)} }, "give one of"},
		{"keyring with two ops", func(t *testing.T) []string { return []string{"keyring", "--list", "--use", "x", "--addr", deadAddr(t)} }, "give one of"},
		{"keyring key from empty stdin", func(t *testing.T) []string { return []string{"keyring", "--install", "-", "--addr", deadAddr(t)} }, "no key on standard input"},
		{"agent config missing", func(*testing.T) []string { return []string{"agent", "--config", "/nonexistent/agent.yaml"} }, "/nonexistent/agent.yaml"},
		{"agent config unknown field", func(t *testing.T) []string {
			return []string{"agent", "--config", writeFile(t, "agent.yaml", "data_dir: /x\nwhat: 1\n")}
		}, "what"},
		{"init without spec", func(*testing.T) []string { return []string{"init"} }, "--config: required"},
		{"init spec unknown field", func(t *testing.T) []string {
			return []string{"init", "--config", writeFile(t, "cluster.yaml", goodSpec+"extra: 1\n")}
		}, "cluster.yaml"},
		{"init spec bad port", func(t *testing.T) []string {
			return []string{"init", "--config", writeFile(t, "cluster.yaml", strings.Replace(goodSpec, "port_base: 6001", "port_base: 70000", 1))}
		}, "port_base"},
		{"addmirrors bad -i file", func(t *testing.T) []string {
			return []string{"addmirrors", "--addr", deadAddr(t), "-i", writeFile(t, "mirrors", "0|127.0.0.1|notaport|/data/m\n")}
		}, "line 1"},
		{"state with no agent", func(t *testing.T) []string { return []string{"state", "--addr", deadAddr(t)} }, "agent at"},
		{"state with two views", func(t *testing.T) []string { return []string{"state", "-s", "-m", "--addr", deadAddr(t)} }, "at most one"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, "", tc.args(t)...)
			if code == 0 {
				t.Fatalf("exit 0, want non-zero; stderr %q", stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q does not mention %q", stderr, tc.want)
			}
		})
	}
}

func TestConfirm(t *testing.T) {
	cases := map[string]bool{"y\n": true, "YES\n": true, "n\n": false, "\n": false, "": false, "maybe\n": false}
	for in, want := range cases {
		var out bytes.Buffer
		err := confirm(cmdIO{in: strings.NewReader(in), out: &out}, "Go on")
		if (err == nil) != want {
			t.Errorf("answer %q: err %v, want accepted=%v", in, err, want)
		}
	}
}
