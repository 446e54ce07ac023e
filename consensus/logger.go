package consensus

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// levelTrace sits below slog's Debug, where hclog's Trace sits below its
// Debug.
const levelTrace = slog.LevelDebug - 4

// hclogAdapter is the hclog.Logger raft wants, writing into the agent's
// slog.Logger so that raft's lines carry component=raft and the agent's
// format instead of hclog's own on stderr.
type hclogAdapter struct {
	logger  *slog.Logger
	name    string // hclog's dotted name ("snapshot", ...), logged as "logger"
	implied []any  // the With arguments, for ImpliedArgs
	// level is hclog's own filter (SetLevel), on top of the handler's.
	// hclog.NoLevel means "whatever the slog handler enables". Shared by
	// the loggers derived with With and Named, as in hclog.
	level *atomic.Int32
}

var _ hclog.Logger = (*hclogAdapter)(nil)

// newHclogAdapter returns an hclog.Logger over l, tagged component=raft.
func newHclogAdapter(l *slog.Logger) hclog.Logger {
	lvl := &atomic.Int32{}
	lvl.Store(int32(hclog.NoLevel))
	return &hclogAdapter{logger: l.With("component", "raft"), level: lvl}
}

func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return levelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default: // Info, NoLevel, Off
		return slog.LevelInfo
	}
}

func (a *hclogAdapter) enabled(l hclog.Level) bool {
	if min := hclog.Level(a.level.Load()); min != hclog.NoLevel && l < min {
		return false
	}
	return a.logger.Enabled(context.Background(), slogLevel(l))
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off || !a.enabled(level) {
		return
	}
	attrs := make([]any, 0, len(args)+2)
	if a.name != "" {
		attrs = append(attrs, "logger", a.name)
	}
	for i, v := range args {
		if i%2 == 1 {
			v = logValue(v)
		}
		attrs = append(attrs, v)
	}
	a.logger.Log(context.Background(), slogLevel(level), msg, attrs...)
}

// logValue turns what raft passes as values into something every slog
// handler prints well: raft logs *Raft and other structs through their
// String method, which slog's JSON handler would not call.
func logValue(v any) any {
	switch v := v.(type) {
	case hclog.Format:
		if len(v) == 0 {
			return ""
		}
		if f, ok := v[0].(string); ok {
			return fmt.Sprintf(f, v[1:]...)
		}
		return fmt.Sprint(v...)
	case error, slog.LogValuer:
		return v
	case fmt.Stringer:
		return v.String()
	}
	return v
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hclogAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }
func (a *hclogAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }
func (a *hclogAdapter) IsInfo() bool  { return a.enabled(hclog.Info) }
func (a *hclogAdapter) IsWarn() bool  { return a.enabled(hclog.Warn) }
func (a *hclogAdapter) IsError() bool { return a.enabled(hclog.Error) }

func (a *hclogAdapter) ImpliedArgs() []any { return append([]any(nil), a.implied...) }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	c := *a
	vals := make([]any, len(args))
	for i, v := range args {
		if i%2 == 1 {
			v = logValue(v)
		}
		vals[i] = v
	}
	c.logger = a.logger.With(vals...)
	c.implied = append(append([]any(nil), a.implied...), args...)
	return &c
}

func (a *hclogAdapter) Name() string { return a.name }

func (a *hclogAdapter) Named(name string) hclog.Logger {
	c := *a
	if a.name != "" {
		c.name = a.name + "." + name
	} else {
		c.name = name
	}
	return &c
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *a
	c.name = name
	return &c
}

func (a *hclogAdapter) SetLevel(level hclog.Level) { a.level.Store(int32(level)) }

func (a *hclogAdapter) GetLevel() hclog.Level {
	if l := hclog.Level(a.level.Load()); l != hclog.NoLevel {
		return l
	}
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if a.enabled(l) {
			return l
		}
	}
	return hclog.Off
}

func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

// StandardWriter returns a writer that logs each line it is given, for
// libraries that insist on a *log.Logger.
func (a *hclogAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	if opts == nil {
		opts = &hclog.StandardLoggerOptions{}
	}
	return &stdlogWriter{logger: a, infer: opts.InferLevels, force: opts.ForceLevel}
}

type stdlogWriter struct {
	logger *hclogAdapter
	infer  bool
	force  hclog.Level
}

// Write logs one line. Levels written as "[ERR]" prefixes, the old
// log.Logger convention, are honoured when InferLevels is set.
func (w *stdlogWriter) Write(p []byte) (int, error) {
	msg := string(bytes.TrimRight(p, " \t\n"))
	level := hclog.Info
	if w.force != hclog.NoLevel {
		level = w.force
	} else if w.infer {
		level, msg = inferLevel(msg)
	}
	w.logger.Log(level, msg)
	return len(p), nil
}

func inferLevel(msg string) (hclog.Level, string) {
	for _, p := range []struct {
		prefix string
		level  hclog.Level
	}{
		{"[TRACE]", hclog.Trace}, {"[DEBUG]", hclog.Debug}, {"[INFO]", hclog.Info},
		{"[WARN]", hclog.Warn}, {"[ERROR]", hclog.Error}, {"[ERR]", hclog.Error},
	} {
		if rest, ok := strings.CutPrefix(msg, p.prefix); ok {
			return p.level, strings.TrimSpace(rest)
		}
	}
	return hclog.Info, msg
}
