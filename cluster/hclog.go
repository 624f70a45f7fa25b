package cluster

import (
	"bytes"
	"context"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// newHCLogger bridges hashicorp libraries' hclog output into slog. hclog
// writes formatted lines; each line is re-logged with its level. The same
// slogWriter serves memberlist's *log.Logger ("[DEBUG] memberlist: ...").
func newHCLogger(name string, base *slog.Logger) hclog.Logger {
	lvl := hclog.Info
	switch {
	case base.Enabled(context.Background(), slog.LevelDebug):
		lvl = hclog.Debug
	case !base.Enabled(context.Background(), slog.LevelInfo):
		lvl = hclog.Warn
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:            name,
		Level:           lvl,
		Output:          &slogWriter{l: base.With("component", name)},
		DisableTime:     true,
		IncludeLocation: false,
	})
}

type slogWriter struct{ l *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		s := strings.TrimSpace(string(line))
		if s == "" {
			continue
		}
		// The libraries' INFO lines (every election step, every pipeline
		// start) are routine: they go to DEBUG. This package logs the
		// meaningful transitions (leadership, membership) itself at INFO.
		level := slog.LevelDebug
		switch {
		case strings.HasPrefix(s, "[ERROR]"), strings.HasPrefix(s, "[ERR]"):
			level = slog.LevelError
		case strings.HasPrefix(s, "[WARN]"):
			level = slog.LevelWarn
		case strings.HasPrefix(s, "[DEBUG]"), strings.HasPrefix(s, "[TRACE]"):
			level = slog.LevelDebug
		}
		if i := strings.Index(s, "]"); i >= 0 && strings.HasPrefix(s, "[") {
			s = strings.TrimSpace(s[i+1:])
		}
		w.l.Log(context.Background(), level, s)
	}
	return len(p), nil
}
