package overlay

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/husk-project/husk/ext3"
)

// smallFS mounts a tmpfs of sizeMiB MiB for the test, so that running out
// of space never touches the machine's real disks.
func smallFS(t *testing.T, sizeMiB int) string {
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0,
		"size="+strconv.Itoa(sizeMiB)+"m"); err != nil {
		t.Fatalf("mounting a %d MiB tmpfs on %s (tests run as root): %v", sizeMiB, dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	return dir
}

// TestGrowLimit checks the up-front limit against ext3.Grow itself: the
// limit grows, a block more is refused before the file is touched.
func TestGrowLimit(t *testing.T) {
	p := filepath.Join(t.TempDir(), "o.img")
	if err := Create(p, Options{SizeMiB: 64, Sparse: true}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := ext3.Describe(ext3.NewSection(f, 0, 64<<20), 64<<20)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	max := maxGrowBytes(sum)
	if max <= 64<<20 || max >= 1<<42 {
		t.Fatalf("limit of a 64 MiB image: %d bytes", max)
	}
	// 10 TiB, the size of the trial, is refused without a byte written.
	_, err = Resize(p, 10<<20, false, nil)
	if !errors.Is(err, syscall.EFBIG) || !strings.Contains(err.Error(), "grows to at most") {
		t.Fatalf("Resize to 10T: %v", err)
	}
	if st, _ := os.Stat(p); st.Size() != 64<<20 {
		t.Fatalf("refused resize left %d bytes", st.Size())
	}
	// The limit itself is reachable (rounded down to MiB).
	if _, err := Resize(p, max>>20, false, nil); err != nil {
		t.Fatalf("Resize to the limit, %d MiB: %v", max>>20, err)
	}
	tool(t, "e2fsck", "-fn", p)
}

// TestResizeNoRoom grows a fully allocated overlay on a small file system.
// Too little space is refused up front; when the check is fooled (another
// writer took the space), the failed extension gives every byte back.
func TestResizeNoRoom(t *testing.T) {
	dir := smallFS(t, 100)
	p := filepath.Join(dir, "full.img")
	if err := Create(p, Options{SizeMiB: 64}); err != nil {
		t.Fatal(err)
	}
	_, err := Resize(p, 200, false, nil)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(),
		"growing needs 136 MiB more") {
		t.Fatalf("Resize beyond the free space: %v", err)
	}
	checkUnchanged(t, p, 64<<20, 0)

	defer func(h func(*os.File) (int64, error)) { hostAvail = h }(hostAvail)
	hostAvail = func(*os.File) (int64, error) { return 1 << 40, nil }
	_, err = Resize(p, 200, false, nil)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "extending") {
		t.Fatalf("Resize with a fooled check: %v", err)
	}
	checkUnchanged(t, p, 64<<20, 0)
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	if free := int64(fs.Bavail) * fs.Bsize; free < 30<<20 {
		t.Errorf("only %d bytes free on the 100 MiB tmpfs after the failed resize", free)
	}
}

// TestResizeRollbackSIF makes the file system growth fail after a SIF's
// file and descriptor were grown: file, header and descriptor return to
// their exact old bytes.
func TestResizeRollbackSIF(t *testing.T) {
	img := overlaySIF(t)
	before, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	defer func(g func(ext3.Device, int64, ext3.Options) (*ext3.GrowResult,
		error)) {
		growFS = g
	}(growFS)
	growFS = func(ext3.Device, int64, ext3.Options) (*ext3.GrowResult, error) {
		return nil, syscall.EIO
	}
	if _, err := Resize(img, 200, false, nil); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Resize with a failing grow: %v", err)
	}
	after, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatalf("SIF changed by a failed resize: %d bytes, was %d", len(after), len(before))
	}
	in, err := Describe(img, nil)
	if err != nil {
		t.Fatal(err)
	}
	tool(t, "e2fsck", "-fn", img+"?offset="+strconv.FormatInt(in.Offset, 10))
}

// checkUnchanged asserts the overlay at off in p is size bytes and clean.
func checkUnchanged(t *testing.T, p string, size, off int64) {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != size {
		t.Errorf("%s is %d bytes after a failed resize, want %d", p, st.Size(), size)
	}
	if blocks := st.Sys().(*syscall.Stat_t).Blocks * 512; blocks > size+1<<20 {
		t.Errorf("%s holds %d bytes of blocks after a failed resize", p, blocks)
	}
	tool(t, "e2fsck", "-fn", p+"?offset="+strconv.FormatInt(off, 10))
}

// TestResizeFinishesInterrupted: a resize killed after it extended the
// file, before the file system grew, leaves a 128 MiB file around a
// 64 MiB file system; running the same resize again grows the file
// system to fill it, and a third run says it is already that size.
func TestResizeFinishesInterrupted(t *testing.T) {
	p := filepath.Join(t.TempDir(), "o.img")
	if err := Create(p, Options{SizeMiB: 64, Sparse: true, UID: 1, GID: 1}); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, 128<<20); err != nil {
		t.Fatal(err)
	}
	res, err := Resize(p, 128, false, nil)
	if err != nil {
		t.Fatalf("resizing again to the size of the file: %v", err)
	}
	if res.NewSize != 128<<20 {
		t.Errorf("result %+v", res)
	}
	in, err := Describe(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if in.FSSize != 128<<20 {
		t.Errorf("file system of %d bytes after the second resize, want %d", in.FSSize, 128<<20)
	}
	tool(t, "e2fsck", "-fn", p)
	_, err = Resize(p, 128, false, nil)
	if err == nil || !strings.Contains(err.Error(), "the overlay is already 128 MiB") {
		t.Errorf("third resize: %v, want 'already 128 MiB'", err)
	}
}
