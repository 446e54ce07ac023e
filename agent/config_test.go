package agent

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const goodConfig = `
name: sdw1
address: 127.0.0.1
data_dir: /var/lib/gpagent
postgres:
  superuser_password: s3cret
  replication_password: r3pl
`

func TestParseConfig_Defaults(t *testing.T) {
	cfg, err := ParseConfig([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.APIAddr != DefaultAPIAddr || cfg.RaftAddr != DefaultRaftAddr {
		t.Errorf("addresses %s %s, want defaults", cfg.APIAddr, cfg.RaftAddr)
	}
	if cfg.ProbeInterval != time.Second || cfg.ProbeTimeout != 500*time.Millisecond || cfg.ProbeRetries != 3 {
		t.Errorf("probe settings %s %s %d, want 1s 500ms 3", cfg.ProbeInterval, cfg.ProbeTimeout, cfg.ProbeRetries)
	}
	if cfg.RemoveLeftAfter != time.Hour {
		t.Errorf("remove_left_after %s, want 1h: a restart must never remove an agent", cfg.RemoveLeftAfter)
	}
	if cfg.Client {
		t.Error("an agent is a server unless its config says server: false")
	}
	if cfg, err := ParseConfig([]byte(goodConfig + "server: false\njoin: [10.0.0.1:7072]\n")); err != nil || !cfg.Client {
		t.Errorf("server: false: client %v, err %v", cfg != nil && cfg.Client, err)
	}
	if cfg.RaftSnapshotThreshold != 8192 || cfg.RaftSnapshotInterval != 120*time.Second {
		t.Errorf("raft snapshot threshold %d interval %s, want raft's 8192 and 2m0s", cfg.RaftSnapshotThreshold, cfg.RaftSnapshotInterval)
	}
	if cfg, err := ParseConfig([]byte(goodConfig + "raft_snapshot_threshold: 64\nraft_snapshot_interval: 5s\n")); err != nil || cfg.RaftSnapshotThreshold != 64 || cfg.RaftSnapshotInterval != 5*time.Second {
		t.Errorf("raft_snapshot_threshold: 64, raft_snapshot_interval: 5s: got %+v, err %v", cfg, err)
	}
	if cfg.SuperUser != "gpadmin" || cfg.ReplUser != "replicator" {
		t.Errorf("users %q %q, want gpadmin replicator", cfg.SuperUser, cfg.ReplUser)
	}
}

func TestParseConfig_Errors(t *testing.T) {
	cases := []struct {
		name, doc, want string
	}{
		{"empty", "", "empty config"},
		{"unknown field", goodConfig + "colour: blue\n", "colour"},
		{"unknown nested field", strings.Replace(goodConfig, "postgres:", "postgres:\n  port: 5", 1), "port"},
		{"no data dir", strings.Replace(goodConfig, "data_dir: /var/lib/gpagent", "", 1), "data_dir: required"},
		{"relative data dir", strings.Replace(goodConfig, "/var/lib/gpagent", "var/lib", 1), "data_dir"},
		{"bad duration", goodConfig + "probe_interval: soon\n", "soon"},
		{"negative retries", goodConfig + "probe_retries: -1\n", "probe_retries"},
		{"bad api addr", goodConfig + "api_addr: nowhere\n", "api_addr"},
		{"no superuser password", strings.Replace(goodConfig, "superuser_password: s3cret", "", 1), "postgres.superuser_password"},
		{"bad log level", goodConfig + "log_level: loud\n", "log_level"},
		{"not yaml", "name: [", "did not find"},
		{"bad log format", goodConfig + "log_format: xml\n", "log_format"},
		{"negative remove_left_after", goodConfig + "remove_left_after: -1s\n", "remove_left_after"},
		{"client that bootstraps", goodConfig + "server: false\nbootstrap: true\n", "server: false"},
		{"client without join", goodConfig + "server: false\n", "join) or by their API addresses (servers); give one"},
		{"servers on a server", goodConfig + "servers: [\"10.0.0.1:7000\"]\n", "servers: only a client"},
		{"servers not host:port", goodConfig + "server: false\nservers: [\"10.0.0.1\"]\n", `servers[0]: "10.0.0.1" is not host:port`},
		{"server not a bool", goodConfig + "server: maybe\n", "maybe"},
		{"zero snapshot threshold", goodConfig + "raft_snapshot_threshold: 0\n", "raft_snapshot_threshold: 0 is not a positive number"},
		{"negative snapshot threshold", goodConfig + "raft_snapshot_threshold: -5\n", "raft_snapshot_threshold: -5 is not a positive number"},
		{"snapshot threshold not a number", goodConfig + "raft_snapshot_threshold: many\n", `raft_snapshot_threshold: "many" is not a whole number`},
		{"zero snapshot interval", goodConfig + "raft_snapshot_interval: 0s\n", "raft_snapshot_interval: 0s is not a positive duration"},
		{"negative snapshot interval", goodConfig + "raft_snapshot_interval: -1s\n", "raft_snapshot_interval: -1s is not a positive duration"},
		{"snapshot interval not a duration", goodConfig + "raft_snapshot_interval: often\n", `raft_snapshot_interval: "often" is not a duration`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.doc))
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.doc)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestLoadConfig_NamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(goodConfig+"bogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(path)
	if err == nil || err.Error() != "config "+path+": line 8: unknown field \"bogus\"" {
		t.Errorf("error %v does not start with the file name", err)
	}
	_, err = LoadConfig(path + ".missing")
	if err == nil || !strings.Contains(err.Error(), path+".missing") {
		t.Errorf("missing file error %v does not name it", err)
	}
}

// TestParseConfig_PlainWords: decoding errors say the line and the field
// in the config's words, not Go's type names.
func TestParseConfig_PlainWords(t *testing.T) {
	cases := []struct {
		name, doc, want string
	}{
		{"misspelt field", goodConfig + "probe_intervall: 2s\n", `line 8: unknown field "probe_intervall"`},
		{"misspelt nested field", strings.Replace(goodConfig, "postgres:", "postgres:\n  superusr: x", 1), `line 6: unknown field "postgres.superusr"`},
		{"two mistakes", goodConfig + "colour: blue\nprobe_retries: many\n", `line 8: unknown field "colour"; line 9: probe_retries: "many" is not a whole number`},
		{"bad duration", goodConfig + "lease: soon\n", `line 8: lease: "soon" is not a duration such as 500ms, 2s or 1m`},
		{"bad nested value", strings.Replace(goodConfig, "superuser_password: s3cret", "superuser_password: [a, b]", 1), `line 6: postgres.superuser_password: this value is not a single value`},
		{"bad bool", goodConfig + "bootstrap: maybe\n", `line 8: bootstrap: "maybe" is not true or false`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.doc))
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error %q, want %q", err, tc.want)
			}
		})
	}
}

func TestParseConfig_LogFormat(t *testing.T) {
	for doc, want := range map[string]string{"": LogFormatText, "log_format: text\n": LogFormatText, "log_format: JSON\n": LogFormatJSON} {
		cfg, err := ParseConfig([]byte(goodConfig + doc))
		if err != nil || cfg.LogFormat != want {
			t.Errorf("%q: format %q, err %v; want %q", doc, cfg.LogFormat, err, want)
		}
	}
	var out bytes.Buffer
	cfg, err := ParseConfig([]byte(goodConfig + "log_format: json\nlog_level: debug\n"))
	if err != nil {
		t.Fatal(err)
	}
	log, _ := NewLogger(&out, cfg)
	log.Debug("hello", "dbid", 2)
	var line map[string]any
	if err := json.Unmarshal(out.Bytes(), &line); err != nil || line["msg"] != "hello" || line["dbid"] != float64(2) {
		t.Errorf("not a JSON line: %q (%v)", out.String(), err)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte("name: x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data)
		if err == nil && (cfg.DataDir == "" || cfg.ProbeInterval <= 0 || cfg.SuperPassword == "") {
			t.Fatalf("accepted an incomplete config: %+v", cfg)
		}
	})
}
