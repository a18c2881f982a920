// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// sweepStale removes exactly the session directories that no run holds:
// not a locked one, not a mounted one, not a non-empty one, not one of
// another user, not other names; a removed one's .root goes with it.
func TestSweepStale(t *testing.T) {
	// A space, which mountinfo escapes, in the temp directory's name.
	dir := filepath.Join(t.TempDir(), "tmp dir")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mk := func(name string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		return p
	}
	stale, staleRoot := mk("husk-101"), mk("husk-101.root")
	stale2 := mk("husk-102")
	locked := mk("husk-103")
	f, err := os.Open(locked)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	full := mk("husk-104")
	if err := os.WriteFile(filepath.Join(full, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	other := mk("husk-105")
	if err := os.Chown(other, 1500, 1500); err != nil {
		t.Fatal(err)
	}
	mounted := mk("husk-106")
	mountElsewhere(t, mounted)
	own := mk("husk-107")
	keep := []string{locked, full, other, mounted, own, mk("husk-x1"), mk("husk-"),
		mk("husk-108.root"), mk("other-109")}
	// fusermount3 mode's union mount of a run killed whole: its server
	// is gone, the mount answers ENOTCONN.
	dead, deadRoot := mk("husk-110"), mk("husk-110.root")
	mountDeadFUSE(t, deadRoot)

	if n := sweepStale(dir, own, slog.New(slog.DiscardHandler)); n != 3 {
		t.Errorf("removed %d, want 3", n)
	}
	for _, p := range []string{stale, staleRoot, stale2, dead, deadRoot} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s: not removed (%v)", p, err)
		}
	}
	for _, p := range keep {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s: removed (%v)", p, err)
		}
	}
}

// mountDeadFUSE mounts a FUSE file system on dir and closes its device
// unanswered, as a killed server leaves it; the test unmounts it if the
// sweep did not.
func mountDeadFUSE(t *testing.T, dir string) {
	t.Helper()
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	err = unix.Mount("dead", dir, "fuse.dead", unix.MS_NOSUID|unix.MS_NODEV,
		fmt.Sprintf("fd=%d,rootmode=40000,user_id=0,group_id=0", fd))
	unix.Close(fd)
	if err != nil {
		t.Fatalf("mounting FUSE on %s: %v", dir, err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); !errors.Is(err, unix.ENOTCONN) {
		t.Fatalf("stat of the dead mount: %v, want ENOTCONN", err)
	}
}

// mountElsewhere mounts a tmpfs on dir in a mount namespace of its own,
// as stage 1 mounts its session tmpfs, for the rest of the test: here dir
// stays an empty directory that rmdir would remove (detaching the mount
// there), so only the sweep's scan of mount namespaces keeps it.
func mountElsewhere(t *testing.T, dir string) {
	t.Helper()
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs -o size=64k tmpfs "$1" && echo mounted && exec sleep 600`,
		"sh", dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("unshare (util-linux): %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if line != "mounted\n" {
		t.Fatalf("mounting a tmpfs on %s in a new mount namespace: %q, %v", dir, line, err)
	}
}

// newSessionDir's directory is locked against sweeps until closed.
func TestNewSessionDirLocked(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	dir, f, err := newSessionDir()
	if err != nil {
		t.Fatal(err)
	}
	if !isSessionName(filepath.Base(dir)) {
		t.Errorf("session name %s", dir)
	}
	if n := sweepStale(filepath.Dir(dir), "", slog.New(slog.DiscardHandler)); n != 0 {
		t.Errorf("a locked session was swept")
	}
	f.Close()
	if n := sweepStale(filepath.Dir(dir), "", slog.New(slog.DiscardHandler)); n != 1 {
		t.Errorf("an unlocked session was not swept")
	}
}

// The sweep's scan of the mount namespaces of the user's processes (it
// runs beside each container's start, off its critical path).
func BenchmarkSessionMounts(b *testing.B) {
	for b.Loop() {
		sessionMounts(os.TempDir())
	}
}
