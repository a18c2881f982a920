package ext3

import (
	"errors"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLseek: a file with data in its first block and at 1 MiB, and a
// hole between, ending 1 KiB past its last data: SEEK_DATA and SEEK_HOLE
// find both, as lseek(2) does on the kernel's ext3.
func TestLseek(t *testing.T) {
	img := mkext3(t, 8<<20, "-b", "1024")
	f := openImage(t, img, false)
	defer f.Close()
	a := mustA(t)(f.Create(RootIno, "sparse", 0o644, 0, 0))
	if _, err := f.WriteAt(a.Ino, []byte("head"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(a.Ino, make([]byte, 1000), 1<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Setattr(a.Ino, SetAttr{SetSize: true, Size: 1<<20 + 2048}); err != nil {
		t.Fatal(err)
	}
	const end = 1<<20 + 2048
	for _, c := range []struct {
		off    int64
		whence int
		want   int64
		errno  syscall.Errno
	}{
		{0, unix.SEEK_DATA, 0, 0},
		{2, unix.SEEK_DATA, 2, 0},
		{0, unix.SEEK_HOLE, 1024, 0},
		{1024, unix.SEEK_DATA, 1 << 20, 0},
		{5000, unix.SEEK_HOLE, 5000, 0},
		{1 << 20, unix.SEEK_HOLE, 1<<20 + 1024, 0},
		{1<<20 + 1500, unix.SEEK_DATA, 0, syscall.ENXIO},
		{1<<20 + 1500, unix.SEEK_HOLE, 1<<20 + 1500, 0},
		{end, unix.SEEK_DATA, 0, syscall.ENXIO},
		{end, unix.SEEK_HOLE, 0, syscall.ENXIO},
	} {
		got, err := f.Lseek(a.Ino, c.off, c.whence)
		if c.errno != 0 {
			if !errors.Is(err, c.errno) {
				t.Errorf("lseek(%d, %d): %d, %v; want %v", c.off, c.whence, got, err, c.errno)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("lseek(%d, %d): %d, %v; want %d", c.off, c.whence, got, err, c.want)
		}
	}
}

// TestLseekAcrossLeaves: with 1 KiB blocks 2 MiB of data spans the direct
// slots, the indirect block and eight leaves under the double indirect
// one; SEEK_HOLE finds its end, and holes between blocks of one leaf and
// after a missing leaf are found as well.
func TestLseekAcrossLeaves(t *testing.T) {
	img := mkext3(t, 16<<20, "-b", "1024")
	f := openImage(t, img, false)
	defer f.Close()
	a := mustA(t)(f.Create(RootIno, "big", 0o644, 0, 0))
	data := make([]byte, 2<<20)
	for i := range data {
		data[i] = 1
	}
	for _, w := range []struct {
		off int64
		n   int
	}{{0, 2 << 20}, {3 << 20, 1024}, {3<<20 + 10<<10, 1024}, {6 << 20, 1024}} {
		if _, err := f.WriteAt(a.Ino, data[:w.n], w.off); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.Setattr(a.Ino, SetAttr{SetSize: true, Size: 8 << 20}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		off    int64
		whence int
		want   int64
	}{
		{0, unix.SEEK_HOLE, 2 << 20},
		{1<<20 + 5, unix.SEEK_HOLE, 2 << 20},
		{2 << 20, unix.SEEK_DATA, 3 << 20},
		{3 << 20, unix.SEEK_HOLE, 3<<20 + 1024},
		{3<<20 + 1024, unix.SEEK_DATA, 3<<20 + 10<<10},
		{3<<20 + 11<<10, unix.SEEK_DATA, 6 << 20},
		{6 << 20, unix.SEEK_HOLE, 6<<20 + 1024},
		{6<<20 + 1024, unix.SEEK_HOLE, 6<<20 + 1024},
	} {
		got, err := f.Lseek(a.Ino, c.off, c.whence)
		if err != nil || got != c.want {
			t.Errorf("lseek(%d, %d): %d, %v; want %d", c.off, c.whence, got, err, c.want)
		}
	}
	if _, err := f.Lseek(a.Ino, 6<<20+1024, unix.SEEK_DATA); !errors.Is(err, syscall.ENXIO) {
		t.Errorf("SEEK_DATA after the last data: %v, want ENXIO", err)
	}
}
