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

func TestMerge(t *testing.T) {
	f := newFixture(t, 2)
	tree(t, f.lowers[1], "a/x=low1", "a/y=low1", "b=low1", "c/", "s->b")
	tree(t, f.lowers[0], "a/x=low0", "a/z=low0", "d=low0")
	tree(t, f.upper(), "a/u=up", "e=up")
	mnt, _ := f.mount()
	wantListing(t, mnt, "a/", "a/u=up", "a/x=low0", "a/y=low1", "a/z=low0",
		"b=low1", "c/", "d=low0", "e=up", "s->b")
}

func TestWhiteoutDialects(t *testing.T) {
	f := newFixture(t, 1)
	tree(t, f.lowers[0], "a/x=1", "a/y=1", "b=1", "c=1", "o1/k=1", "o2/k=1", "o3/k=1",
		"o4/k=1", "o5/k=1")
	tree(t, f.upper(), "wh:b", ".wh.c=", "a/", "wh:a/x", "o1/n=1", "o2/n=1", "o3/n=1",
		"o4/n=1", "o4/.wh..wh..opq=", "wh:o5/.wh..opq", "o5/n=1")
	must(t, unix.Setxattr(filepath.Join(f.upper(), "o1"), "trusted.overlay.opaque", []byte("y"), 0))
	must(t, unix.Setxattr(filepath.Join(f.upper(), "o2"), "user.overlay.opaque", []byte("y"), 0))
	must(t, unix.Setxattr(filepath.Join(f.upper(), "o3"), "user.fuseoverlayfs.opaque", []byte("y"), 0))
	mnt, _ := f.mount()
	wantListing(t, mnt, "a/", "a/y=1", "o1/", "o1/n=1", "o2/", "o2/n=1", "o3/", "o3/n=1",
		"o4/", "o4/n=1", "o5/", "o5/k=1", "o5/n=1")
	for _, p := range []string{"b", "c", ".wh.c", "a/x", "o4/.wh..wh..opq"} {
		if exists(filepath.Join(mnt, p)) {
			t.Errorf("%s visible", p)
		}
	}
	// Housekeeping xattrs are not shown.
	sz, _ := unix.Listxattr(filepath.Join(mnt, "o1"), nil)
	buf := make([]byte, sz+1)
	n, _ := unix.Listxattr(filepath.Join(mnt, "o1"), buf)
	if n > 0 {
		t.Errorf("o1 xattrs visible: %q", buf[:n])
	}
}

func TestRemoveAndRecreate(t *testing.T) {
	f := newFixture(t, 1)
	tree(t, f.lowers[0], "t/a/b/c/f=1", "t/a/g=1", "t/h=1", "k=1")
	mnt, u := f.mount()
	must(t, os.RemoveAll(filepath.Join(mnt, "t")))
	must(t, os.Remove(filepath.Join(mnt, "k")))
	wantListing(t, mnt)
	must(t, os.MkdirAll(filepath.Join(mnt, "t/a/b/c"), 0755))
	must(t, os.WriteFile(filepath.Join(mnt, "t/a/b/new"), []byte("n"), 0644))
	want := []string{"t/", "t/a/", "t/a/b/", "t/a/b/c/", "t/a/b/new=n"}
	wantListing(t, mnt, want...)

	// The same after a remount over the same upper.
	must(t, u.Unmount())
	mnt2, _ := f.mount()
	wantListing(t, mnt2, want...)
	// And removing again, then recreating, after the remount.
	must(t, os.RemoveAll(filepath.Join(mnt2, "t")))
	must(t, os.MkdirAll(filepath.Join(mnt2, "t/a"), 0755))
	wantListing(t, mnt2, "t/", "t/a/")
}

func TestRmdir(t *testing.T) {
	f := newFixture(t, 1)
	tree(t, f.lowers[0], "e/", "full/x=1", "m/x=1")
	tree(t, f.upper(), "m/y=2", "u/")
	mnt, _ := f.mount()
	if err := unix.Rmdir(filepath.Join(mnt, "full")); err != unix.ENOTEMPTY {
		t.Errorf("rmdir full: %v, want ENOTEMPTY", err)
	}
	must(t, os.Remove(filepath.Join(mnt, "m/x")))
	must(t, os.Remove(filepath.Join(mnt, "m/y")))
	for _, d := range []string{"e", "m", "u"} {
		must(t, unix.Rmdir(filepath.Join(mnt, d)))
	}
	wantListing(t, mnt, "full/", "full/x=1")
	// Lower dirs leave whiteouts, the upper-only one nothing.
	for _, d := range []string{"e", "m"} {
		st := stat(t, filepath.Join(f.upper(), d))
		if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
			t.Errorf("upper %s: mode %o rdev %d, want whiteout", d, st.Mode, st.Rdev)
		}
	}
	if exists(filepath.Join(f.upper(), "u")) {
		t.Error("upper u still exists")
	}
	// mkdir over a whiteout makes an opaque directory.
	must(t, os.Mkdir(filepath.Join(mnt, "m"), 0755))
	for _, x := range []string{"trusted.overlay.opaque", "user.overlay.opaque"} {
		v := make([]byte, 4)
		n, err := unix.Getxattr(filepath.Join(f.upper(), "m"), x, v)
		if err != nil || string(v[:n]) != "y" {
			t.Errorf("upper m %s = %q, %v", x, v[:n], err)
		}
	}
}

func TestReadOnlyUnion(t *testing.T) {
	f := newFixture(t, 2)
	tree(t, f.lowers[1], "a=1", "d/x=1")
	tree(t, f.lowers[0], "wh:a", "d/y=2")
	var o Options
	for _, d := range f.lowers {
		l, err := OpenDirLayer(d, nil)
		must(t, err)
		o.Lowers = append(o.Lowers, l)
	}
	mnt, _ := mountUnion(t, o)
	wantListing(t, mnt, "d/", "d/x=1", "d/y=2")
	if err := os.WriteFile(filepath.Join(mnt, "new"), nil, 0644); !errors.Is(err, unix.EROFS) {
		t.Errorf("create on a read-only union: %v, want EROFS", err)
	}
	var st unix.Statfs_t
	must(t, unix.Statfs(mnt, &st))
	if st.Blocks == 0 {
		t.Error("statfs reports no blocks")
	}
}

// noTrusted is an upper that refuses trusted.* xattrs, as a directory
// owned by an unprivileged user does.
type noTrusted struct{ *DirLayer }

func (n noTrusted) Setxattr(nd Node, name string, v []byte, flags uint32) error {
	if strings.HasPrefix(name, "trusted.") {
		return unix.EPERM
	}
	return n.DirLayer.Setxattr(nd, name, v, flags)
}

// Without trusted.* the opaque marker is fuse-overlayfs's dialect, which
// fuse-overlayfs and husk read back.
func TestOpaqueUnprivilegedDialect(t *testing.T) {
	f := newFixture(t, 1)
	tree(t, f.lowers[0], "d/old=1")
	mnt, u := f.mount(func(o *Options) { o.Upper = noTrusted{o.Upper.(*DirLayer)} })
	must(t, os.RemoveAll(filepath.Join(mnt, "d")))
	must(t, os.Mkdir(filepath.Join(mnt, "d"), 0755))
	must(t, os.WriteFile(filepath.Join(mnt, "d/new"), []byte("n"), 0644))
	wantListing(t, mnt, "d/", "d/new=n")
	up := filepath.Join(f.upper(), "d")
	for _, x := range []string{"user.overlay.opaque", "user.fuseoverlayfs.opaque"} {
		v := make([]byte, 4)
		if n, err := unix.Getxattr(up, x, v); err != nil || string(v[:n]) != "y" {
			t.Errorf("%s = %q %v", x, v[:n], err)
		}
	}
	if st := stat(t, filepath.Join(up, ".wh..wh..opq")); st.Mode != unix.S_IFREG|0700 {
		t.Errorf(".wh..wh..opq mode %o, want regular 0700", st.Mode)
	}
	must(t, u.Unmount())
	mnt2, u2 := f.mount()
	wantListing(t, mnt2, "d/", "d/new=n")
	must(t, u2.Unmount())
	wantListing(t, fuseOverlayfs(t, f), "d/", "d/new=n")
}

// fsync works on directories and files of every origin, and copy-ups
// leave nothing in the work directory.
func TestFsyncAndWorkDir(t *testing.T) {
	f := newFixture(t, 1)
	tree(t, f.lowers[0], "d/f=1", "e/")
	mnt, _ := f.mount(func(o *Options) { o.DirectMount = true })
	must(t, os.WriteFile(filepath.Join(mnt, "d/f"), []byte("2"), 0644))
	for _, p := range []string{"", "d", "e", "d/f"} {
		fh, err := os.Open(filepath.Join(mnt, p))
		must(t, err)
		if err := fh.Sync(); err != nil {
			t.Errorf("fsync %q: %v", p, err)
		}
		fh.Close()
	}
	// The kernel sends RELEASE after close returns: give it a moment.
	var ents []os.DirEntry
	for i := 0; i < 100; i++ {
		var err error
		ents, err = os.ReadDir(filepath.Join(f.ovl, "work"))
		must(t, err)
		if len(ents) == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("work dir not empty: %v", ents)
}

// Unmount of a busy union detaches it and returns once the last user is
// gone; a second Unmount does nothing.
func TestUnmountBusy(t *testing.T) {
	f := newFixture(t, 1)
	tree(t, f.lowers[0], "f=1")
	mnt, u := f.mount()
	fh, err := os.Open(filepath.Join(mnt, "f"))
	must(t, err)
	done := make(chan error)
	go func() { done <- u.Unmount() }()
	select {
	case err := <-done:
		t.Fatalf("Unmount returned %v while a file was open", err)
	case <-time.After(300 * time.Millisecond):
	}
	fh.Close()
	must(t, <-done)
	must(t, u.Unmount())
	if isMounted(t, mnt) {
		t.Error("still mounted")
	}
}

// An O_TMPFILE file linked into place through /proc/self/fd becomes a
// normal upper file; the work directory ends empty either way.
func TestTmpfileLink(t *testing.T) {
	f := newFixture(t, 1)
	tree(t, f.lowers[0], "d/")
	mnt, _ := f.mount()
	for _, link := range []bool{true, false} {
		fd, err := unix.Open(filepath.Join(mnt, "d"), unix.O_TMPFILE|unix.O_RDWR, 0640)
		must(t, err)
		_, err = unix.Write(fd, []byte("tmp"))
		must(t, err)
		if link {
			must(t, unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+itoa(fd),
				unix.AT_FDCWD, filepath.Join(mnt, "d/named"), unix.AT_SYMLINK_FOLLOW))
		}
		unix.Close(fd)
	}
	wantListing(t, mnt, "d/", "d/named=tmp")
	if st := stat(t, filepath.Join(mnt, "d/named")); st.Nlink != 1 || st.Mode&0777 != 0640 {
		t.Errorf("d/named: nlink %d mode %o", st.Nlink, st.Mode)
	}
	// The kernel sends RELEASE after close returns: give it a moment.
	var ents []os.DirEntry
	for i := 0; i < 100; i++ {
		var err error
		ents, err = os.ReadDir(filepath.Join(f.ovl, "work"))
		must(t, err)
		if len(ents) == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("work dir not empty: %v", ents)
}
