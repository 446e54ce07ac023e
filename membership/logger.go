package membership

import (
	"context"
	"log"
	"log/slog"
	"strings"
)

// newMemberlistLogger is the *log.Logger memberlist wants, writing into l
// with component=memberlist. Without it memberlist prints its own format to
// stderr, which the agent's log collection cannot parse.
func newMemberlistLogger(l *slog.Logger) *log.Logger {
	return log.New(memberlistWriter{log: l.With("component", "memberlist")}, "", 0)
}

// memberlistWriter receives one memberlist line per Write: log.Logger
// formats a whole line before writing it.
type memberlistWriter struct {
	log *slog.Logger
}

func (w memberlistWriter) Write(p []byte) (int, error) {
	level, msg := parseMemberlistLine(string(p))
	w.log.Log(context.Background(), level, msg)
	return len(p), nil
}

// memberlistLevels are the tags memberlist puts in front of its lines.
var memberlistLevels = map[string]slog.Level{
	"TRACE":   slog.LevelDebug,
	"DEBUG":   slog.LevelDebug,
	"INFO":    slog.LevelInfo,
	"WARN":    slog.LevelWarn,
	"WARNING": slog.LevelWarn,
	"ERR":     slog.LevelError,
	"ERROR":   slog.LevelError,
}

// parseMemberlistLine splits "[LEVEL] memberlist: msg" into a level and
// msg. memberlist is not consistent: some lines lack the "memberlist: "
// part, and a few have no tag at all ("Err: Could not set the deadline"),
// so an untagged line is Info unless it starts with "Err".
func parseMemberlistLine(line string) (slog.Level, string) {
	line = strings.TrimRight(line, "\r\n")
	level := slog.LevelInfo
	if rest, ok := strings.CutPrefix(line, "["); ok {
		if tag, msg, ok := strings.Cut(rest, "]"); ok {
			if l, known := memberlistLevels[strings.ToUpper(tag)]; known {
				level, line = l, strings.TrimSpace(msg)
			}
		}
	} else if strings.HasPrefix(line, "Err") {
		level = slog.LevelError
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	return level, line
}
