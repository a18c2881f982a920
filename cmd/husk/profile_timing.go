package main

import (
	"context"
	"log/slog"

	"github.com/husk-project/husk/sandbox"
)

// With --debug every line carries t=, the time since husk started on the
// monotonic clock: the stages stamp their own lines when they log them
// (the sandbox relays them with t= set), husk's own lines are stamped
// here. Start-up cost per step is then the difference between two lines.

// timedHandler adds sandbox.ElapsedKey to records that do not have it.
type timedHandler struct{ slog.Handler }

// timed wraps log's handler so that its records are stamped.
func timed(log *slog.Logger) *slog.Logger {
	return slog.New(timedHandler{log.Handler()})
}

// Handle implements slog.Handler.
func (h timedHandler) Handle(ctx context.Context, r slog.Record) error {
	stamped := false
	r.Attrs(func(a slog.Attr) bool {
		stamped = a.Key == sandbox.ElapsedKey
		return !stamped
	})
	if !stamped {
		r = r.Clone()
		r.AddAttrs(slog.String(sandbox.ElapsedKey, sandbox.FormatElapsed(sandbox.Elapsed())))
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h timedHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return timedHandler{h.Handler.WithAttrs(as)}
}

// WithGroup implements slog.Handler.
func (h timedHandler) WithGroup(name string) slog.Handler {
	return timedHandler{h.Handler.WithGroup(name)}
}
