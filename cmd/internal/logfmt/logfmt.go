// Package logfmt prints husk's messages the way Apptainer prints its own:
// the level name and a colon padded to 8 columns, a space, the message
// (COMPAT §7.7), e.g. "WARNING: ..." and "FATAL:   ...". Only the CLI and
// its glue use it; library packages take whatever *slog.Logger they are
// given.
package logfmt

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// LevelFatal is the level of the one line husk prints before exiting 255.
const LevelFatal = slog.LevelError + 4

// logHandler prints records as Apptainer does: the level name and a colon
// padded to 8 columns, a space, the message, then attributes as key=value
// (COMPAT §7.7). Without debug only attributes a user can act on are
// shown (an error, a file), and a warning already printed is not printed
// again: a corrupt block read a thousand times is one line. It is the
// only place that decides how husk's own messages look.
type logHandler struct {
	mu    *sync.Mutex
	w     io.Writer
	level slog.Level
	debug bool
	attrs []slog.Attr
	seen  map[string]bool // warnings printed, without debug
}

// userKeys are the attributes shown without debug.
var userKeys = map[string]bool{"err": true, "path": true, "file": true, "image": true,
	"layer": true, "xattr": true}

// maxDistinct bounds the warnings remembered for deduplication; past it
// further warnings are dropped, with one line saying so.
const maxDistinct = 100

// New returns a logger writing to w: warnings and worse, and with debug
// also debug and info messages and every attribute.
func New(w io.Writer, debug bool) *slog.Logger {
	level := slog.LevelWarn
	if debug {
		level = slog.LevelDebug
	}
	return slog.New(&logHandler{mu: &sync.Mutex{}, w: w, level: level, debug: debug,
		seen: map[string]bool{}})
}

// Enabled implements slog.Handler.
func (h *logHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

// Handle implements slog.Handler.
func (h *logHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%-8s %s", levelName(r.Level)+":", r.Message)
	add := func(a slog.Attr) bool {
		if h.debug || userKeys[a.Key] {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		}
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	b.WriteByte('\n')
	line := b.String()
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.debug && r.Level < slog.LevelError {
		switch {
		case h.seen[line]:
			return nil
		case len(h.seen) == maxDistinct:
			h.seen[""] = true
			line = fmt.Sprintf("%-8s %s\n", "WARNING:", "further warnings suppressed "+
				"(--debug shows them all)")
		case len(h.seen) > maxDistinct:
			return nil
		}
		h.seen[line] = true
	}
	_, err := io.WriteString(h.w, line)
	return err
}

// WithAttrs implements slog.Handler.
func (h *logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append(append([]slog.Attr{}, h.attrs...), as...)
	return &n
}

// WithGroup implements slog.Handler; groups are flattened.
func (h *logHandler) WithGroup(string) slog.Handler { return h }

func levelName(l slog.Level) string {
	switch {
	case l >= LevelFatal:
		return "FATAL"
	case l >= slog.LevelError:
		return "ERROR"
	case l >= slog.LevelWarn:
		return "WARNING"
	case l >= slog.LevelInfo:
		return "INFO"
	}
	return "DEBUG"
}

// Fatal prints err as the single FATAL line; newlines in the message are
// folded so scripts can rely on one line.
func Fatal(w io.Writer, err error) {
	msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", " ")), " ")
	fmt.Fprintf(w, "%-8s %s\n", "FATAL:", msg)
}
