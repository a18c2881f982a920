package logfmt

import (
	"bytes"
	"errors"
	"testing"
)

func TestFormat(t *testing.T) {
	cases := []struct {
		debug bool
		log   func(*bytes.Buffer)
		want  string
	}{
		{false, func(b *bytes.Buffer) { New(b, false).Warn("careful", "path", "/x") },
			"WARNING: careful path=/x\n"},
		{false, func(b *bytes.Buffer) { New(b, false).Info("hidden") }, ""},
		{true, func(b *bytes.Buffer) { New(b, true).Info("shown") }, "INFO:    shown\n"},
		{true, func(b *bytes.Buffer) { New(b, true).Debug("trace") }, "DEBUG:   trace\n"},
		{false, func(b *bytes.Buffer) { Fatal(b, errors.New("two\nlines  here")) },
			"FATAL:   two lines here\n"},
	}
	for _, c := range cases {
		var b bytes.Buffer
		c.log(&b)
		if b.String() != c.want {
			t.Errorf("got %q, want %q", b.String(), c.want)
		}
	}
}
