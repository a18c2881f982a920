package union

import (
	"context"
	"log/slog"

	"github.com/husk-project/husk/sandbox"
)

// faultHandler passes the union's log records on and hands the layer
// errors among them to sandbox.ReportImageFault, so that a setup that
// fails on a damaged image names the image (see sandbox.ImageError).
//
// fusefs logs a layer error once, before the kernel gets its EIO, as a
// warning with the layer's name in "image" and the cause, an error
// value, in "err".
//
// TODO: read the errors from a fusefs callback (an Options.OnLayerError
// taking the *fusefs.LayerError) instead of from the log record, once
// fusefs has one.
type faultHandler struct{ slog.Handler }

// Handle implements slog.Handler.
func (h faultHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		var image string
		var problem error
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "image":
				image = a.Value.String()
			case "err":
				problem, _ = a.Value.Any().(error)
			}
			return true
		})
		if image != "" && problem != nil {
			sandbox.ReportImageFault(image, problem)
		}
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h faultHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return faultHandler{h.Handler.WithAttrs(as)}
}

// WithGroup implements slog.Handler.
func (h faultHandler) WithGroup(name string) slog.Handler {
	return faultHandler{h.Handler.WithGroup(name)}
}
