package fusefs

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// Errors of a named layer carry the image name to the one warning the
// union prints and to Options.OnLayerError; POSIX conditions pass through
// unchanged, unlogged and unreported.
func TestLayerErrorNamesImage(t *testing.T) {
	var buf bytes.Buffer
	var reported []string
	u := &Union{log: slog.New(slog.NewTextHandler(&buf, nil)), opts: Options{
		OnLayerError: func(le *LayerError) bool {
			reported = append(reported, le.Image)
			return false
		}}}
	corrupt := errors.New("squash: inode 7 at offset 99: corrupt data")
	cases := []struct {
		err      error
		errno    syscall.Errno
		log      string
		reported string
	}{
		{nameErr("/x/a.sif", syscall.ENOENT), syscall.ENOENT, "", ""},
		{nameErr("/x/a.sif", fmt.Errorf("lookup: %w", syscall.ENOTDIR)), syscall.ENOTDIR, "",
			""},
		{nameErr("/x/a.sif", corrupt), syscall.EIO, "image=/x/a.sif", "/x/a.sif"},
		{nameErr("/x/a.sif", nameErr("/x/b.img", corrupt)), syscall.EIO, "image=/x/b.img",
			"/x/b.img"},
		{nameErr("", corrupt), syscall.EIO, "corrupt data", ""},
	}
	for _, c := range cases {
		buf.Reset()
		reported = nil
		if got := u.toErrno("read", c.err); got != c.errno {
			t.Errorf("%v: errno %v, want %v", c.err, got, c.errno)
		}
		if c.log == "" && buf.Len() > 0 || !strings.Contains(buf.String(), c.log) {
			t.Errorf("%v: logged %q, want %q", c.err, buf.String(), c.log)
		}
		if want := []string{c.reported}; c.reported == "" && len(reported) > 0 ||
			c.reported != "" && !slices.Equal(reported, want) {
			t.Errorf("%v: reported %q, want %q", c.err, reported, c.reported)
		}
		if c.errno == syscall.EIO && !strings.Contains(buf.String(), "corrupt data") {
			t.Errorf("%v: cause missing from %q", c.err, buf.String())
		}
	}
	if !errors.Is(nameErr("/x/a.sif", corrupt), corrupt) {
		t.Error("LayerError does not unwrap to its cause")
	}
}

// A layer error that OnLayerError takes to the user is not logged again.
func TestLayerErrorTakenNotLogged(t *testing.T) {
	var buf bytes.Buffer
	u := &Union{log: slog.New(slog.NewTextHandler(&buf, nil)), opts: Options{
		OnLayerError: func(*LayerError) bool { return true }}}
	err := nameErr("/x/a.sif", errors.New("squash: bad block"))
	if got := u.toErrno("read", err); got != syscall.EIO || buf.Len() != 0 {
		t.Errorf("errno %v, logged %q; want EIO and nothing", got, buf.String())
	}
}

// The same layer error is logged once however often it is met (the kernel
// retries failed reads); a different one is logged too.
func TestLayerErrorLoggedOnce(t *testing.T) {
	var buf bytes.Buffer
	u := &Union{log: slog.New(slog.NewTextHandler(&buf, nil))}
	bad := nameErr("/x/a.sif", errors.New("squash: inode 7: bad block"))
	other := nameErr("/x/a.sif", errors.New("squash: inode 8: bad block"))
	for range 3 {
		u.toErrno("read", bad)
	}
	u.toErrno("read", other)
	if n := strings.Count(buf.String(), "layer error"); n != 2 {
		t.Errorf("%d lines logged, want 2:\n%s", n, buf.String())
	}
}
