package membership

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
)

func TestParseMemberlistLine(t *testing.T) {
	t.Parallel()
	cases := []struct {
		line  string
		level slog.Level
		msg   string
	}{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:1\n", slog.LevelDebug, "Stream connection from=127.0.0.1:1"},
		{"[INFO] memberlist: Suspect c has failed, no acks received\n", slog.LevelInfo, "Suspect c has failed, no acks received"},
		{"[WARN] memberlist: Refuting a suspect message (from: b)\n", slog.LevelWarn, "Refuting a suspect message (from: b)"},
		{"[ERR] memberlist: Failed fallback TCP ping: EOF\n", slog.LevelError, "Failed fallback TCP ping: EOF"},
		{"[ERROR] memberlist: Failed to compress payload\n", slog.LevelError, "Failed to compress payload"},
		{"[ERR] Failed to shutdown transport: x\n", slog.LevelError, "Failed to shutdown transport: x"},
		{"Err: Could not set the deadline: x\n", slog.LevelError, "Err: Could not set the deadline: x"},
		{"[ODD] memberlist: y\n", slog.LevelInfo, "[ODD] memberlist: y"},
		{"plain\n", slog.LevelInfo, "plain"},
	}
	for _, tc := range cases {
		t.Run(tc.line, func(t *testing.T) {
			level, msg := parseMemberlistLine(tc.line)
			if level != tc.level || msg != tc.msg {
				t.Errorf("got %v %q, want %v %q", level, msg, tc.level, tc.msg)
			}
		})
	}
}

func TestMemberlistLogger(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := newMemberlistLogger(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l.Printf("[WARN] memberlist: Was able to connect to %s over TCP but UDP probes failed", "b")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("%v: %s", err, buf.Bytes())
	}
	if rec["level"] != "WARN" || rec["component"] != "memberlist" || rec["msg"] != "Was able to connect to b over TCP but UDP probes failed" {
		t.Errorf("record: %v", rec)
	}
}
