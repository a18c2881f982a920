package fusefs

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMknodAt makes devices through Union.MknodAt (what sandbox does for
// a --fakeroot container) in a lower directory, over a deleted lower
// file, and checks what the mount, e2fsck, debugfs and a remount see.
func TestMknodAt(t *testing.T) {
	f := newImageFixture(t, "d/sub/", "d/f=x", "gone=y")
	mnt, u, stop := f.mountUnion()

	// The kernel caches the negative entry; MknodAt must drop it.
	if _, err := os.Lstat(filepath.Join(mnt, "d/null")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("d/null before: %v", err)
	}
	d := stat(t, filepath.Join(mnt, "d"))
	must(t, u.MknodAt(d.Ino, "null", syscall.S_IFCHR|0o640, uint32(unix.Mkdev(1, 3)), 7, 8))
	st := stat(t, filepath.Join(mnt, "d/null"))
	if st.Mode != syscall.S_IFCHR|0o640 || unix.Major(st.Rdev) != 1 ||
		unix.Minor(st.Rdev) != 3 || st.Uid != 7 || st.Gid != 8 {
		t.Errorf("d/null: mode %o rdev %d,%d owner %d:%d", st.Mode, unix.Major(st.Rdev),
			unix.Minor(st.Rdev), st.Uid, st.Gid)
	}
	if d2 := stat(t, filepath.Join(mnt, "d")); d2.Ino != d.Ino {
		t.Errorf("d's inode number changed on copy-up: %d, was %d", d2.Ino, d.Ino)
	}

	root := stat(t, mnt)
	must(t, os.Remove(filepath.Join(mnt, "gone")))
	must(t, u.MknodAt(root.Ino, "gone", syscall.S_IFBLK|0o600, uint32(unix.Mkdev(259, 1<<19)),
		0, 0))
	st = stat(t, filepath.Join(mnt, "gone"))
	if st.Mode != syscall.S_IFBLK|0o600 || unix.Major(st.Rdev) != 259 ||
		unix.Minor(st.Rdev) != 1<<19 {
		t.Errorf("gone: mode %o rdev %d,%d", st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}

	for _, c := range []struct {
		ino        uint64
		name       string
		mode, rdev uint32
		want       syscall.Errno
	}{
		{d.Ino, "null", syscall.S_IFCHR | 0o600, 0x103, syscall.EEXIST},
		{d.Ino, "f", syscall.S_IFBLK | 0o600, 0x103, syscall.EEXIST},
		{d.Ino, "..", syscall.S_IFBLK | 0o600, 0x103, syscall.EEXIST},
		{d.Ino, "wh", syscall.S_IFCHR | 0o600, 0, syscall.EPERM},
		{d.Ino, "a/b", syscall.S_IFCHR | 0o600, 0x103, syscall.EINVAL},
		{d.Ino, strings.Repeat("n", 256), syscall.S_IFCHR | 0o600, 0x103,
			syscall.ENAMETOOLONG},
		{1<<62 | 5, "x", syscall.S_IFCHR | 0o600, 0x103, syscall.ENOENT},
	} {
		err := u.MknodAt(c.ino, c.name, c.mode, c.rdev, 0, 0)
		if !errors.Is(err, c.want) {
			t.Errorf("MknodAt(%d, %.10s, %o, %#x): %v, want %v", c.ino, c.name, c.mode,
				c.rdev, err, c.want)
		}
	}

	// chmod, chown, rename and unlink of a device go through FUSE.
	p := filepath.Join(mnt, "d/null")
	must(t, os.Chmod(p, 0o666))
	must(t, os.Chown(p, 0, 5))
	must(t, os.Rename(p, filepath.Join(mnt, "d/sub/null")))
	must(t, os.Link(filepath.Join(mnt, "gone"), filepath.Join(mnt, "d/blk")))
	must(t, os.Remove(filepath.Join(mnt, "gone")))
	st = stat(t, filepath.Join(mnt, "d/sub/null"))
	if st.Mode != syscall.S_IFCHR|0o666 || st.Gid != 5 || st.Rdev != uint64(unix.Mkdev(1, 3)) {
		t.Errorf("d/sub/null: mode %o gid %d rdev %#x", st.Mode, st.Gid, st.Rdev)
	}
	stop()
	f.fsck()

	out, err := exec.Command("debugfs", "-R", "stat /upper/d/sub/null", f.ext3).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Type: character special") ||
		!strings.Contains(string(out), "Device major/minor number: 01:03") {
		t.Errorf("debugfs stat /upper/d/sub/null: %v\n%s", err, out)
	}
	out, err = exec.Command("debugfs", "-R", "stat /upper/gone", f.ext3).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Type: character special") ||
		!strings.Contains(string(out), "Device major/minor number: 00:00") {
		t.Errorf("debugfs: /upper/gone is not a whiteout: %v\n%s", err, out)
	}

	mnt, _, _ = f.mountUnion()
	st = stat(t, filepath.Join(mnt, "d/blk"))
	if st.Mode != syscall.S_IFBLK|0o600 || unix.Major(st.Rdev) != 259 ||
		unix.Minor(st.Rdev) != 1<<19 {
		t.Errorf("after remount d/blk: mode %o rdev %d,%d", st.Mode, unix.Major(st.Rdev),
			unix.Minor(st.Rdev))
	}
	if _, err := os.Lstat(filepath.Join(mnt, "gone")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("gone after remount: %v", err)
	}
}

// TestMknodAtDirUpper: a directory upper served by root stores devices;
// the union's MKNOD path does the work, MknodAt only reaches it.
func TestMknodAtDirUpper(t *testing.T) {
	f := newFixture(t, 1)
	tree(t, f.lowers[0], "d/")
	mnt, u := f.mount()
	d := stat(t, filepath.Join(mnt, "d"))
	must(t, u.MknodAt(d.Ino, "zero", syscall.S_IFCHR|0o644, uint32(unix.Mkdev(1, 5)), 0, 0))
	st := stat(t, filepath.Join(f.upper(), "d/zero"))
	if st.Mode != syscall.S_IFCHR|0o644 || st.Rdev != uint64(unix.Mkdev(1, 5)) {
		t.Errorf("upper d/zero: mode %o rdev %#x", st.Mode, st.Rdev)
	}
	if st := stat(t, filepath.Join(mnt, "d/zero")); st.Rdev != uint64(unix.Mkdev(1, 5)) {
		t.Errorf("d/zero through the mount: rdev %#x", st.Rdev)
	}
}
