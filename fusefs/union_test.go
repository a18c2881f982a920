package fusefs

import (
	"os"
	"path/filepath"
	"testing"

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
