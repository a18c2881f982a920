package logfmt

import (
	"bytes"
	"errors"
	"strings"
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

func TestAttrsAndRepeats(t *testing.T) {
	var b bytes.Buffer
	log := New(&b, false).With("stage", 1)
	log.Warn("passwd file doesn't exist in container, not updating")
	for range 50 {
		log.Warn("fusefs: layer error", "op", "lookup", "err", errors.New("squash: bad block"))
	}
	log.Warn("fusefs: layer error", "op", "read", "err", errors.New("squash: bad inode"))
	log.Warn("fusefs: layer error", "op", "read", "err", errors.New("squash: bad inode"),
		"image", "/x/a.sif")
	want := "WARNING: passwd file doesn't exist in container, not updating\n" +
		"WARNING: fusefs: layer error err=squash: bad block\n" +
		"WARNING: fusefs: layer error err=squash: bad inode\n" +
		"WARNING: fusefs: layer error err=squash: bad inode image=/x/a.sif\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}

	b.Reset()
	log = New(&b, false)
	for i := range maxDistinct + 10 {
		log.Warn("w", "err", i)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != maxDistinct+1 || !strings.Contains(lines[maxDistinct], "suppressed") {
		t.Errorf("%d lines, last %q", len(lines), lines[len(lines)-1])
	}

	b.Reset()
	log = New(&b, true).With("stage", 1)
	log.Warn("a", "op", "x")
	log.Warn("a", "op", "x")
	if want := "WARNING: a stage=1 op=x\nWARNING: a stage=1 op=x\n"; b.String() != want {
		t.Errorf("debug: got %q, want %q", b.String(), want)
	}
}
