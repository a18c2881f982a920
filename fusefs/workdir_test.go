package fusefs

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/husk-project/husk/ext3"
	"golang.org/x/sys/unix"
)

// What a killed server left in an overlay image's work directory (an
// O_TMPFILE file open at the time, copy-ups in flight) goes at the next
// mount, and its space with it; the kernel overlayfs's own work/work
// stays. A trial found a 100 MiB O_TMPFILE file kept for good, and the
// next mount's first O_TMPFILE failing with EEXIST on the name it drew.
func TestWorkLeftovers(t *testing.T) {
	f := newImageFixture(t, "d/")
	img := f.openExt3()
	work, err := img.Lookup(ext3.RootIno, "work")
	must(t, err)
	before := img.Statfs().Bfree
	a, err := img.Create(work.Ino, "#husk-tmpfile-1", 0o600, 1500, 1500)
	must(t, err)
	_, err = img.WriteAt(a.Ino, bytes.Repeat([]byte("x"), 4<<20), 0)
	must(t, err)
	_, err = img.Mkdir(work.Ino, "#husk-copyup-3", 0o755, 0, 0)
	must(t, err)
	d, err := img.Mkdir(work.Ino, "#husk-copyup-9", 0o755, 0, 0)
	must(t, err)
	_, err = img.Create(d.Ino, "x", 0o644, 0, 0)
	must(t, err)
	_, err = img.Mkdir(work.Ino, "work", 0o700, 0, 0)
	must(t, err)
	must(t, img.Close())

	mnt, stop := f.mount()
	fd, err := unix.Open(filepath.Join(mnt, "d"), unix.O_TMPFILE|unix.O_RDWR, 0o600)
	must(t, err)
	unix.Close(fd)
	stop()
	f.fsck()

	img = f.openExt3()
	defer img.Close()
	ents, err := img.ReadDir(work.Ino)
	must(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name)
	}
	sort.Strings(names)
	if want := []string{"work"}; !slices.Equal(names, want) {
		t.Errorf("work/ holds %q, want %q", names, want)
	}
	if after := img.Statfs().Bfree; after+8 < before {
		t.Errorf("%d blocks free after, %d before the leftovers", after, before)
	}
}

// openExt3 opens f's overlay image writable, for the test to change.
func (f *imageFixture) openExt3() *ext3.FS {
	t := f.t
	t.Helper()
	ef, err := os.OpenFile(f.ext3, os.O_RDWR, 0)
	must(t, err)
	t.Cleanup(func() { ef.Close() })
	fi, err := ef.Stat()
	must(t, err)
	img, err := ext3.Open(ext3.NewSection(ef, 0, fi.Size()), fi.Size(), ext3.Options{})
	must(t, err)
	return img
}

// A directory upper's work directory is not cleaned (another union may be
// using it), so names there must not come up again: a killed server's
// leftovers made a later O_TMPFILE or copy-up that drew the same name
// fail with EEXIST.
func TestWorkNamesUnique(t *testing.T) {
	f := newFixture(t, 1)
	tree(t, f.lowers[0], "d/f=image")
	work := filepath.Join(f.ovl, "work")
	for _, name := range []string{"#husk-tmpfile-1", "#husk-copyup-1", "#husk-copyup-2",
		"#husk-tmpfile-2"} {
		must(t, os.WriteFile(filepath.Join(work, name), nil, 0o600))
	}
	mnt, _ := f.mount()
	fd, err := unix.Open(filepath.Join(mnt, "d"), unix.O_TMPFILE|unix.O_RDWR, 0o600)
	if err != nil {
		t.Errorf("O_TMPFILE: %v", err)
	} else {
		unix.Close(fd)
	}
	if err := os.WriteFile(filepath.Join(mnt, "d", "f"), []byte("changed"), 0o644); err != nil {
		t.Errorf("write to an image file (copy-up): %v", err)
	}
	if err := os.Chmod(filepath.Join(mnt, "d"), 0o700); err != nil {
		t.Errorf("chmod of an image directory (copy-up): %v", err)
	}
}
