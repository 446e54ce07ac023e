package consensus

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

type stringerValue struct{ name string }

func (s *stringerValue) String() string { return "node " + s.name }

// jsonLines decodes what a slog JSON handler wrote, one record a line.
func jsonLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	buf.Reset()
	return out
}

func TestHclogAdapter(t *testing.T) {
	var buf bytes.Buffer
	base := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l := newHclogAdapter(base)

	t.Run("levels, component and values", func(t *testing.T) {
		l.Info("entering follower state", "follower", &stringerValue{"a"}, "error", errors.New("boom"), "term", 3)
		l.Trace("too fine")
		l.Warn("careful", "detail", hclog.Fmt("%d peers", 2))
		lines := jsonLines(t, &buf)
		if len(lines) != 2 {
			t.Fatalf("%d lines, want 2 (trace is below the handler's debug level): %v", len(lines), lines)
		}
		first := lines[0]
		if first["component"] != "raft" || first["level"] != "INFO" || first["msg"] != "entering follower state" {
			t.Fatalf("first line %v", first)
		}
		if first["follower"] != "node a" || first["error"] != "boom" || first["term"] != float64(3) {
			t.Fatalf("values not rendered: %v", first)
		}
		if lines[1]["level"] != "WARN" || lines[1]["msg"] != "careful" || lines[1]["detail"] != "2 peers" {
			t.Fatalf("second line %v", lines[1])
		}
	})

	t.Run("named and with", func(t *testing.T) {
		w := l.Named("snapshot").Named("file").With("path", "/x")
		w.Info("saved")
		if got := w.ImpliedArgs(); len(got) != 2 || got[0] != "path" {
			t.Fatalf("implied args %v", got)
		}
		if w.Name() != "snapshot.file" || l.Name() != "" {
			t.Fatalf("names %q and %q", w.Name(), l.Name())
		}
		line := jsonLines(t, &buf)[0]
		if line["logger"] != "snapshot.file" || line["path"] != "/x" || line["component"] != "raft" {
			t.Fatalf("line %v", line)
		}
	})

	t.Run("set level filters on top of the handler", func(t *testing.T) {
		q := newHclogAdapter(base)
		if q.GetLevel() != hclog.Debug || !q.IsDebug() || q.IsTrace() {
			t.Fatalf("default level %v", q.GetLevel())
		}
		q.SetLevel(hclog.Warn)
		q.Info("hidden")
		q.Error("shown")
		lines := jsonLines(t, &buf)
		if len(lines) != 1 || lines[0]["level"] != "ERROR" {
			t.Fatalf("lines %v", lines)
		}
	})

	t.Run("standard logger infers levels", func(t *testing.T) {
		std := l.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})
		std.Print("[WARN] memberlist: odd")
		std.Print("plain")
		lines := jsonLines(t, &buf)
		if len(lines) != 2 || lines[0]["level"] != "WARN" || lines[0]["msg"] != "memberlist: odd" || lines[1]["level"] != "INFO" {
			t.Fatalf("lines %v", lines)
		}
	})
}
