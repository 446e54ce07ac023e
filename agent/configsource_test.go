package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestConfigDir_Merge: the files of a config dir are laid over each other
// in lexical order; a later file's field wins, nested mappings merge.
func TestConfigDir_Merge(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"10-base.yaml":  "name: sdw1\naddress: 127.0.0.1\ndata_dir: /var/lib/gpagent\nprobe_interval: 2s\njoin: [a:1, b:1]\npostgres:\n  superuser_password: s3cret\n  replication_password: r3pl\n",
		"90-site.yaml":  "probe_interval: 500ms\njoin: [c:1]\npostgres:\n  replication_user: repl\n",
		"50-empty.yaml": "# nothing here yet\n",
		"README":        "not yaml: [\n", // not *.yaml: not read
	})
	cfg, err := ConfigSource{Dir: dir}.Load()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ProbeInterval != 500*time.Millisecond {
		t.Errorf("probe_interval %s, want the later file's 500ms", cfg.ProbeInterval)
	}
	if len(cfg.Join) != 1 || cfg.Join[0] != "c:1" {
		t.Errorf("join %v, want the later file's list whole", cfg.Join)
	}
	if cfg.SuperPassword != "s3cret" || cfg.ReplUser != "repl" || cfg.ReplPassword != "r3pl" {
		t.Errorf("postgres not merged: %q %q %q", cfg.SuperPassword, cfg.ReplUser, cfg.ReplPassword)
	}
}

// TestConfigDir_Errors: every error names the file, and the line or the
// field, in words.
func TestConfigDir_Errors(t *testing.T) {
	base := "name: sdw1\naddress: 127.0.0.1\ndata_dir: /var/lib/gpagent\npostgres:\n  superuser_password: s3cret\n  replication_password: r3pl\n"
	cases := []struct {
		name  string
		files map[string]string
		want  string // with DIR for the folder
	}{
		{"unknown field", map[string]string{"10-base.yaml": base, "20-typo.yaml": "\nprobe_intervall: 2s\n"},
			`config DIR/20-typo.yaml: line 2: unknown field "probe_intervall"`},
		{"bad value", map[string]string{"10-base.yaml": base, "20-x.yaml": "lease: soon\n"},
			`config DIR/20-x.yaml: line 1: lease: "soon" is not a duration such as 500ms, 2s or 1m`},
		{"invalid after merge names the file that set it", map[string]string{"10-base.yaml": base, "20-x.yaml": "voters: 4\n"},
			`config DIR/20-x.yaml: voters: 4 is not 1, 3 or 5`},
		{"missing field names the folder", map[string]string{"10-base.yaml": strings.Replace(base, "data_dir: /var/lib/gpagent\n", "", 1)},
			`config DIR: data_dir: required`},
		{"no yaml files", map[string]string{"agent.yml": base},
			`config dir DIR: no *.yaml files in it`},
		{"secret twice", map[string]string{"10-base.yaml": base, "20-x.yaml": "postgres:\n  superuser_password_file: pw\n"},
			`config DIR/20-x.yaml: postgres.superuser_password_file: postgres.superuser_password is given too; give one`},
		{"secret file missing", map[string]string{"10-base.yaml": strings.Replace(base, "superuser_password: s3cret", "superuser_password_file: nope", 1)},
			`config DIR/10-base.yaml: postgres.superuser_password_file: open DIR/nope: no such file or directory`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tc.files)
			_, err := ConfigSource{Dir: dir}.Load()
			want := strings.ReplaceAll(tc.want, "DIR", dir)
			if err == nil || err.Error() != want {
				t.Errorf("error\n %v\nwant\n %s", err, want)
			}
		})
	}
}

// TestConfig_SecretFiles: passwords and gossip keys read from files, the
// paths taken relative to the file that names them.
func TestConfig_SecretFiles(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "conf.d")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, dir, map[string]string{
		"agent.yaml": "name: sdw1\naddress: 127.0.0.1\ndata_dir: /var/lib/gpagent\npostgres:\n  superuser_password_file: su.pw\n",
		"su.pw":      "s3cret\n",
	})
	writeFiles(t, sub, map[string]string{
		"secrets.yaml": "gossip_key_file: gossip.keys\npostgres:\n  replication_password_file: repl.pw\n",
		"repl.pw":      "r3pl",
		"gossip.keys":  "MDEyMzQ1Njc4OWFiY2RlZg==\n",
	})
	cfg, err := ConfigSource{File: filepath.Join(dir, "agent.yaml"), Dir: sub}.Load()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SuperPassword != "s3cret" || cfg.ReplPassword != "r3pl" {
		t.Errorf("passwords %q %q, want s3cret r3pl (no newline)", cfg.SuperPassword, cfg.ReplPassword)
	}
	if len(cfg.GossipKeys) != 1 || string(cfg.GossipKeys[0]) != "0123456789abcdef" {
		t.Errorf("gossip keys %q", cfg.GossipKeys)
	}
}
