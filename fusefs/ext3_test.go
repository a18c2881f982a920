package fusefs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/husk-project/husk/ext3"
	"github.com/husk-project/husk/squash"
	"golang.org/x/sys/unix"

	"github.com/husk-project/husk/internal/testns"
)

// imageFixture is a squashfs lower and an ext3 overlay image (upper/,
// work/) made by the real tools, served by husk's own readers.
type imageFixture struct {
	t          *testing.T
	sqfs, ext3 string
}

func tool(t *testing.T, name string, args ...string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s not found: install squashfs-tools and e2fsprogs", name)
	}
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func newImageFixture(t *testing.T, lower ...string) *imageFixture {
	t.Helper()
	requireFuse(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	must(t, os.MkdirAll(src, 0755))
	tree(t, src, lower...)
	f := &imageFixture{t: t, sqfs: filepath.Join(dir, "lower.sqfs"),
		ext3: filepath.Join(dir, "overlay.img")}
	tool(t, "mksquashfs", src, f.sqfs, "-noappend", "-quiet", "-comp", "gzip")
	ov := filepath.Join(dir, "ov")
	must(t, os.MkdirAll(filepath.Join(ov, "upper"), 0755))
	must(t, os.MkdirAll(filepath.Join(ov, "work"), 0755))
	tool(t, "mkfs.ext3", "-q", "-F", "-d", ov, f.ext3, "32M")
	return f
}

// mount serves the images; the returned function unmounts and closes
// them (also run at cleanup if not called).
func (f *imageFixture) mount() (string, func()) {
	f.t.Helper()
	mnt, _, stop := f.mountUnion()
	return mnt, stop
}

// mountUnion serves f's images (a squashfs lower under an ext3 upper) and
// returns the mount point, the union and a function that unmounts and
// closes them (also run at cleanup if not called).
func (f *imageFixture) mountUnion() (string, *Union, func()) {
	t := f.t
	t.Helper()
	sf, err := os.Open(f.sqfs)
	must(t, err)
	fi, _ := sf.Stat()
	sq, err := squash.Open(sf, fi.Size(), nil)
	must(t, err)
	ef, err := os.OpenFile(f.ext3, os.O_RDWR, 0)
	must(t, err)
	efi, _ := ef.Stat()
	efs, err := ext3.Open(ext3.NewSection(ef, 0, efi.Size()), efi.Size(), ext3.Options{})
	must(t, err)
	up, work, err := NewExt3Layer(efs, true)
	must(t, err)
	u, err := New(Options{Upper: up, WorkDir: work, Lowers: []Layer{NewSquashLayer(sq)}})
	must(t, err)
	mnt := t.TempDir()
	must(t, u.Mount(mnt))
	done := false
	stop := func() {
		if done {
			return
		}
		done = true
		if err := u.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		if err := efs.Close(); err != nil {
			t.Errorf("ext3 close: %v", err)
		}
		ef.Close()
		sf.Close()
	}
	t.Cleanup(stop)
	return mnt, u, stop
}

// fsck checks the ext3 image with e2fsck -fn.
func (f *imageFixture) fsck() {
	f.t.Helper()
	out, err := exec.Command("e2fsck", "-fn", f.ext3).CombinedOutput()
	if err != nil {
		f.t.Errorf("e2fsck -fn: %v\n%s", err, out)
	}
}

// kernelView mounts both images with the kernel (loop) and the kernel's
// overlayfs over them, read-only, in a private mount namespace (see
// testns.InPrivate), and returns the snapshot.
func (f *imageFixture) kernelView() []string {
	t := f.t
	t.Helper()
	dir := t.TempDir()
	lo, ov, mnt := filepath.Join(dir, "lo"), filepath.Join(dir, "ov"), filepath.Join(dir, "m")
	for _, d := range []string{lo, ov, mnt} {
		must(t, os.Mkdir(d, 0755))
	}
	var view []string
	err := testns.InPrivate(func() (err error) {
		var s mountStack
		defer func() { err = s.unmount(err) }()
		if err := s.loop(f.sqfs, lo, "ro"); err != nil {
			return err
		}
		if err := s.loop(f.ext3, ov, "ro"); err != nil {
			return err
		}
		opts := "lowerdir=" + filepath.Join(ov, "upper") + ":" + lo
		if err := s.overlay(mnt, unix.MS_RDONLY, opts); err != nil {
			return err
		}
		view, err = readTree(mnt)
		return err
	})
	must(t, err)
	return view
}

func TestExt3OverSquash(t *testing.T) {
	f := newImageFixture(t, interopLower...)
	mnt, stop := f.mount()
	interopWork(t, mnt, true)
	// Hard-linked copy-up and large sparse data through ext3.
	fh, err := os.Create(filepath.Join(mnt, "sparse"))
	must(t, err)
	_, err = fh.WriteAt([]byte("end"), 5<<20)
	must(t, err)
	fh.Close()
	want := snapshot(t, mnt)
	stop()
	f.fsck()
	sameSnapshot(t, "kernel view of husk's ext3 upper", f.kernelView(), want)

	// Remount: the same tree, then more changes at depth.
	mnt2, stop2 := f.mount()
	sameSnapshot(t, "husk after remount", snapshot(t, mnt2), want)
	must(t, os.RemoveAll(filepath.Join(mnt2, "R2")))
	must(t, os.MkdirAll(filepath.Join(mnt2, "R/sub"), 0755))
	wantListingIn(t, filepath.Join(mnt2, "R"), "sub/")
	stop2()
	f.fsck()
}

func wantListingIn(t *testing.T, dir string, want ...string) {
	t.Helper()
	wantListing(t, dir, want...)
}

// posixtest over the ext3 upper and squashfs lower.
func TestExt3Posix(t *testing.T) {
	f := newImageFixture(t, "sub/")
	mnt, stop := f.mount()
	for _, name := range []string{"FileBasic", "TruncateFile", "MkdirRmdir", "Link",
		"LinkUnlinkRename", "RenameOverwriteDestExist", "RenameOverwriteDestNoExist",
		"ReadDirBasic", "SymlinkReadlink", "NlinkZero", "FstatDeleted", "XAttr",
		"AppendWrite", "FileLarge"} {
		t.Run(name, func(t *testing.T) {
			d := filepath.Join(mnt, "sub", name)
			must(t, os.Mkdir(d, 0755))
			posixAll()[name](t, d)
		})
	}
	stop()
	f.fsck()
}

// TestExt3SeekHole: SEEK_DATA and SEEK_HOLE through the mount find the
// hole of a sparse file in the ext3 upper (cp --sparse and tar -S use
// them), where the union used to report the whole file as data.
func TestExt3SeekHole(t *testing.T) {
	f := newImageFixture(t, interopLower...)
	mnt, stop := f.mount()
	defer stop()
	fh, err := os.Create(filepath.Join(mnt, "sparse"))
	must(t, err)
	defer fh.Close()
	_, err = fh.WriteAt([]byte("start"), 0)
	must(t, err)
	_, err = fh.WriteAt([]byte("end"), 4<<20)
	must(t, err)
	must(t, fh.Sync())
	hole, err := unix.Seek(int(fh.Fd()), 0, unix.SEEK_HOLE)
	must(t, err)
	data, err := unix.Seek(int(fh.Fd()), hole, unix.SEEK_DATA)
	must(t, err)
	if hole <= 0 || hole >= 4<<20 || data <= hole || data > 4<<20 {
		t.Errorf("SEEK_HOLE from 0: %d, SEEK_DATA from it: %d; want a hole before 4 MiB",
			hole, data)
	}
}

// Extended attributes in the system namespace are refused, as ext4 refuses
// names it does not know there: a trial stored system.data (ext4's inline
// data) and system.bogus in the overlay as plain attributes.
func TestSystemXattrs(t *testing.T) {
	f := newImageFixture(t, "d/")
	mnt, stop := f.mount()
	p := filepath.Join(mnt, "d", "f")
	must(t, os.WriteFile(p, nil, 0o644))
	for _, name := range []string{"system.data", "system.bogus", "system.richacl",
		"system.posix_acl_access"} {
		if err := unix.Setxattr(p, name, []byte("xxxxxxxx"), 0); err != unix.EOPNOTSUPP {
			t.Errorf("setxattr %s: %v, want EOPNOTSUPP", name, err)
		}
		if _, err := unix.Getxattr(p, name, make([]byte, 64)); err != unix.EOPNOTSUPP {
			t.Errorf("getxattr %s: %v, want EOPNOTSUPP", name, err)
		}
	}
	must(t, unix.Setxattr(p, "user.ok", []byte("1"), 0))
	buf := make([]byte, 256)
	k, err := unix.Listxattr(p, buf)
	must(t, err)
	if got := string(buf[:k]); got != "user.ok\x00" {
		t.Errorf("listxattr: %q", got)
	}
	stop()
	f.fsck()
}
