// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
)

// The fatal error of a stage keeps its errno across the pipe, and an I/O
// error after an image fault becomes an *ImageError naming the image.
func TestRelayFatal(t *testing.T) {
	eio := fmt.Errorf("mount destination /etc/hosts: %w",
		os.NewSyscallError("lstat", syscall.EIO))
	enoent := fmt.Errorf("bind source /nope: %w", syscall.ENOENT)
	fault := errors.New("squash: inode 18: bad block")
	cases := []struct {
		name      string
		fault     bool
		fatal     error
		wantImage bool
		wantErrno syscall.Errno
	}{
		{"EIO after a fault", true, eio, true, syscall.EIO},
		{"EIO without a fault", false, eio, false, syscall.EIO},
		{"ENOENT after a fault", true, enoent, false, syscall.ENOENT},
		{"no errno", true, errors.New("sandbox: no spec"), false, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			faultSent.Store(false)
			t.Cleanup(func() { stagePipe.Store(nil); faultSent.Store(false) })
			var pipe bytes.Buffer
			h := newPipeHandler(&pipe, slog.LevelWarn)
			if c.fault {
				ReportImageFault("/a.sif: partition 1", fault)
				// Only the first fault of a process is sent.
				ReportImageFault("/b.img", errors.New("ext3: later"))
			}
			h.fatal(c.fatal)
			res := relay(&pipe, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if res.fatal == nil {
				t.Fatal("no fatal error relayed")
			}
			if !c.wantImage && res.fatal.Error() != c.fatal.Error() {
				t.Errorf("fatal %q, want the stage's text %q", res.fatal, c.fatal)
			}
			var ie *ImageError
			if errors.As(res.fatal, &ie) != c.wantImage {
				t.Fatalf("fatal %#v: image error %v, want %v", res.fatal, ie != nil,
					c.wantImage)
			}
			if ie != nil && (ie.Image != "/a.sif: partition 1" ||
				ie.Problem != fault.Error() || ie.Err.Error() != c.fatal.Error()) {
				t.Errorf("image error %+v", ie)
			}
			var errno syscall.Errno
			errors.As(res.fatal, &errno)
			if errno != c.wantErrno {
				t.Errorf("errno %v, want %v", errno, c.wantErrno)
			}
		})
	}
}

// Outside a stage ReportImageFault does nothing.
func TestReportImageFaultOutsideStage(t *testing.T) {
	stagePipe.Store(nil)
	faultSent.Store(false)
	ReportImageFault("/a.sif", errors.New("bad"))
	if faultSent.Load() {
		t.Error("a fault was sent without a stage pipe")
	}
}

// A fault from another stage's relay names the image in an I/O error
// only, and only once.
func TestWithImageFault(t *testing.T) {
	fault := &imageFault{Image: "/o.img", Problem: "ext3: inode 12: bad block 99999"}
	eio := &stageError{msg: "exec /bin/sh: input/output error", errno: syscall.EIO}
	named := &ImageError{Image: "/a.sif", Problem: "squash: bad", Err: eio}
	cases := []struct {
		name  string
		err   error
		fault *imageFault
		image string // of the *ImageError returned, "" for none
	}{
		{"I/O error", eio, fault, "/o.img"},
		{"no fault", eio, nil, ""},
		{"nil", nil, fault, ""},
		{"not an I/O error", &stageError{msg: "no", errno: syscall.ENOENT}, fault, ""},
		{"already named", named, fault, "/a.sif"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := withImageFault(c.err, c.fault)
			var ie *ImageError
			if errors.As(err, &ie) != (c.image != "") {
				t.Fatalf("withImageFault = %#v, want an image error: %v", err, c.image != "")
			}
			if ie != nil && (ie.Image != c.image || !errors.Is(err, syscall.EIO)) {
				t.Errorf("image error %+v, want image %s wrapping EIO", ie, c.image)
			}
			if ie == nil && err != c.err {
				t.Errorf("withImageFault changed %v to %v", c.err, err)
			}
		})
	}
}

// An image fault relayed before the payload started is printed once: in
// the fatal error when the setup then fails on it, else as a warning when
// the payload starts (or the relay ends); after the start, at once.
func TestRelayFaultWarning(t *testing.T) {
	eio := fmt.Errorf("exec /bin/sh: %w", syscall.EIO)
	for _, c := range []struct {
		name  string
		steps string // f: fault, s: started, x: fatal EIO
		warns int
	}{
		{"setup fails on it", "fx", 0},
		{"payload starts", "fs", 1},
		{"after the start", "sf", 1},
		{"relay ends", "f", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			faultSent.Store(false)
			t.Cleanup(func() { stagePipe.Store(nil); faultSent.Store(false) })
			var pipe bytes.Buffer
			h := newPipeHandler(&pipe, slog.LevelWarn)
			for _, s := range c.steps {
				switch s {
				case 'f':
					if !ReportImageFault("/a.sif: partition 1", errors.New("bad block")) {
						t.Fatal("the fault was not taken")
					}
				case 's':
					h.started()
				case 'x':
					h.fatal(eio)
				}
			}
			var out bytes.Buffer
			relayNotify(&pipe, slog.New(slog.NewTextHandler(&out, nil)), nil)
			if n := strings.Count(out.String(), "layer error"); n != c.warns {
				t.Errorf("%d warnings, want %d:\n%s", n, c.warns, out.String())
			}
		})
	}
}
