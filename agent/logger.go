package agent

import (
	"io"
	"log/slog"
)

// NewLogger builds the agent's logger as its config asks: text lines, or
// JSON lines that journald and Loki take as they are. The level is a
// LevelVar so that a reload can change it (give it to WatchConfig).
func NewLogger(w io.Writer, cfg *Config) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	level.Set(cfg.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == LogFormatJSON {
		return slog.New(slog.NewJSONHandler(w, opts)), level
	}
	return slog.New(slog.NewTextHandler(w, opts)), level
}
