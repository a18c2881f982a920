// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestUnmountUnderStacked: mounts stacked on one destination (a user bind
// over the default /tmp bind) and nested ones all go, so that the mount
// below them can be unmounted at once, without MNT_DETACH.
func TestUnmountUnderStacked(t *testing.T) {
	dir := t.TempDir()
	src := t.TempDir()
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread, and the mount namespace only it is
		// in, end with this goroutine.
		runtime.LockOSThread()
		errc <- stackAndUnmount(dir, src)
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// stackAndUnmount builds, in a new mount namespace of the calling thread,
// a tmpfs at dir with two binds stacked on dir/tmp, a tmpfs at dir/dev
// with a bind below it, and checks that after unmountUnder(dir) the
// tmpfs at dir is no longer busy.
func stackAndUnmount(dir, src string) error {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return &os.SyscallError{Syscall: "unshare", Err: err}
	}
	if err := mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return err
	}
	if err := mount("tmpfs", dir, "tmpfs", 0, ""); err != nil {
		return err
	}
	for _, d := range []string{"tmp", "dev"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	steps := []struct{ src, dst, fstype string }{
		{src, "tmp", ""}, {src, "tmp", ""}, {"tmpfs", "dev", "tmpfs"},
	}
	for _, s := range steps {
		flags := uintptr(unix.MS_BIND)
		if s.fstype != "" {
			flags = 0
		}
		if err := mount(s.src, filepath.Join(dir, s.dst), s.fstype, flags, ""); err != nil {
			return err
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "dev", "pts"), 0o755); err != nil {
		return err
	}
	if err := mount(src, filepath.Join(dir, "dev", "pts"), "", unix.MS_BIND, ""); err != nil {
		return err
	}
	if err := unmountUnder(dir); err != nil {
		return err
	}
	if err := unix.Unmount(dir, 0); err != nil {
		return &os.PathError{Op: "umount (after unmountUnder)", Path: dir, Err: err}
	}
	return nil
}
