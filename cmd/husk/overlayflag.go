package main

import (
	"errors"
	"strings"

	"github.com/alecthomas/kong"
)

// overlayFlag collects --overlay values, split at commas. Kong's own
// slice flags turn `--overlay ""` into no value at all, so a script whose
// variable came out empty would silently run without its overlay; husk
// refuses it (image.ParseOverlayArgs checks each value).
type overlayFlag []string

// Decode implements kong.MapperValue.
func (o *overlayFlag) Decode(ctx *kong.DecodeContext) error {
	var s string
	if err := ctx.Scan.PopValueInto("overlay", &s); err != nil {
		return err
	}
	if s == "" {
		return errors.New(`"" is not an image path (want PATH[:ro|rw])`)
	}
	*o = append(*o, strings.Split(s, ",")...)
	return nil
}
