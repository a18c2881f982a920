package fusefs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A mount point added under a directory of the image must not change
// that directory's inode number or node id: the kernel has it cached, and
// a lookup that answers a new node id makes it drop every mount below.
func TestMountpointKeepsCachedDir(t *testing.T) {
	f := newFixture(t, 1)
	tree(t, f.lowers[0], "opt/keep=1")
	mem := NewMemLayer()
	mnt, u := f.mount(func(o *Options) {
		o.Lowers = append([]Layer{mem}, o.Lowers...)
		// Every access revalidates: each stat below is a fresh lookup.
		o.EntryTimeout, o.AttrTimeout = time.Nanosecond, time.Nanosecond
	})
	opt := filepath.Join(mnt, "opt")
	before := stat(t, opt).Ino

	must(t, u.Mountpoint("/opt/res", true))
	if got := stat(t, opt).Ino; got != before {
		t.Fatalf("opt inode %d after Mountpoint, was %d", got, before)
	}
	src := t.TempDir()
	must(t, os.WriteFile(filepath.Join(src, "marker"), []byte("m"), 0644))
	target := filepath.Join(opt, "res")
	must(t, unix.Mount(src, target, "", unix.MS_BIND, ""))
	t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })

	if err := os.Mkdir(opt, 0755); !errors.Is(err, os.ErrExist) {
		t.Errorf("mkdir opt: %v, want EEXIST", err)
	}
	must(t, os.MkdirAll(filepath.Join(target, "x/y"), 0755))
	if got := stat(t, opt).Ino; got != before {
		t.Errorf("opt inode %d after mkdir, was %d", got, before)
	}
	if ino := direntIno(t, mnt, "opt"); ino != before {
		t.Errorf("opt listed with inode %d, stat says %d", ino, before)
	}
	if b, err := os.ReadFile(filepath.Join(target, "marker")); err != nil || string(b) != "m" {
		t.Errorf("bind mount gone: marker %q, %v", b, err)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	must(t, err)
	if !strings.Contains(string(mi), " "+target+" ") {
		t.Errorf("%s no longer in mountinfo", target)
	}
	if b, err := os.ReadFile(filepath.Join(opt, "keep")); err != nil || string(b) != "1" {
		t.Errorf("opt/keep: %q, %v", b, err)
	}
}

// direntIno returns the inode number readdir gives name in dir.
func direntIno(t *testing.T, dir, name string) uint64 {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(t, err)
	defer unix.Close(fd)
	buf := make([]byte, 64<<10)
	n, err := unix.Getdents(fd, buf)
	must(t, err)
	for _, e := range parseDirents(buf[:n], nil) {
		if e.Name == name {
			return e.Ino
		}
	}
	t.Fatalf("%s not listed in %s", name, dir)
	return 0
}

// TestMountpointDirAttrs: a directory of the image that a mount point
// goes through shows the image's link count and size (a skeleton /etc
// had shown 2 links and size 0); a directory the skeleton adds counts as
// one more link of its parent, one that was there does not.
func TestMountpointDirAttrs(t *testing.T) {
	f := newFixture(t, 1)
	tree(t, f.lowers[0], "etc/a/x=1", "etc/b/", "etc/c/", "etc/f=1")
	mem := NewMemLayer()
	mnt, u := f.mount(func(o *Options) {
		o.Lowers = append([]Layer{mem}, o.Lowers...)
		o.EntryTimeout, o.AttrTimeout = time.Nanosecond, time.Nanosecond
	})
	lower := stat(t, filepath.Join(f.lowers[0], "etc"))
	must(t, u.Mountpoint("/etc/a/m", false)) // through etc and etc/a
	must(t, u.Mountpoint("/etc/new/m", true))
	s := stat(t, filepath.Join(mnt, "etc"))
	if s.Nlink != lower.Nlink+1 || s.Size != lower.Size {
		t.Errorf("etc: nlink %d size %d, want %d (one new directory) and %d", s.Nlink,
			s.Size, lower.Nlink+1, lower.Size)
	}
	la, a := stat(t, filepath.Join(f.lowers[0], "etc/a")), stat(t, filepath.Join(mnt, "etc/a"))
	if a.Nlink != la.Nlink || a.Size != la.Size {
		t.Errorf("etc/a: nlink %d size %d, want %d %d", a.Nlink, a.Size, la.Nlink, la.Size)
	}
}
