// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"unsafe"
)

// TestSeekData checks SEEK_DATA and SEEK_HOLE on the feature tree's
// sparse file (20 MiB: zeros, 10,000 bytes at 5 MiB + 17, zeros, "end"
// in its last bytes), whose zero blocks mksquashfs stores as holes and
// counts in the inode, for two block sizes, and on a file held in a
// fragment.
func TestSeekData(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		opt string
		bs  int64
	}{{"128K", 128 << 10}, {"1M", mib}} {
		f := openImage(t, image(t, "-b", c.opt), nil)
		root, err := f.Inode(f.Root())
		if err != nil {
			t.Fatal(err)
		}
		sp := lookupPath(t, f, root, "sparse")
		size := int64(20 * mib)
		first := (5 * mib / c.bs) * c.bs // the block holding the data
		last := size - c.bs
		if want := uint64(size - 2*c.bs); sp.Sparse != want {
			t.Errorf("-b %s: %d bytes sparse, want %d", c.opt, sp.Sparse, want)
		}
		for _, s := range []struct {
			off  int64
			hole bool
			want int64
		}{
			{0, false, first}, {0, true, 0}, {first + 5, false, first + 5},
			{first, true, first + c.bs}, {first + c.bs, false, last},
			{last, true, size}, {size - 1, false, size - 1}, {size - 1, true, size},
		} {
			got, err := f.SeekData(sp, s.off, s.hole)
			if err != nil || got != s.want {
				t.Errorf("-b %s: seek %s from %d: %d, %v; want %d", c.opt, what(s.hole),
					s.off, got, err, s.want)
			}
		}
		for _, hole := range []bool{false, true} {
			if _, err := f.SeekData(sp, size, hole); !errors.Is(err, syscall.ENXIO) {
				t.Errorf("-b %s: seek %s at the end: %v, want ENXIO", c.opt, what(hole), err)
			}
		}

		small := lookupPath(t, f, root, "small.txt") // its tail is in a fragment
		if got, err := f.SeekData(small, 0, false); err != nil || got != 0 {
			t.Errorf("-b %s: small.txt: data at %d, %v; want 0", c.opt, got, err)
		}
		if got, err := f.SeekData(small, 0, true); err != nil || got != int64(small.Size) {
			t.Errorf("-b %s: small.txt: hole at %d, %v; want %d", c.opt, got, err, small.Size)
		}
	}
}

func what(hole bool) string {
	if hole {
		return "SEEK_HOLE"
	}
	return "SEEK_DATA"
}

// TestHugeSparseFile opens a 1 GiB file of 4 KiB blocks, all but one
// stored as sparse, in an image of a few KiB: its block list of 262,144
// size words is 1 MiB in the inode table before compression and a few
// KiB after. The image once failed to open as corrupt ("more blocks than
// the image can list"), where the kernel reads it. Its list is kept in
// windows (blocklist.go): 3 MiB when kept whole. A 12 MiB file of data in
// the same image, 3,072 blocks of different sizes, reads back right
// through its windows, in order and not.
func TestHugeSparseFile(t *testing.T) {
	requireTool(t, "mksquashfs")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	const size, at = 1 << 30, 512 << 20
	w, err := os.Create(filepath.Join(src, "huge"))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("x"), at); err != nil {
		t.Fatal(err)
	}
	w.Close()
	long := make([]byte, 12<<20)
	for i := range long {
		long[i] = byte(i/4096*7 + i%(13+i/65536)) // compresses, block by block unlike
	}
	if err := os.WriteFile(filepath.Join(src, "long"), long, 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "img.sqfs")
	out, err := exec.Command("mksquashfs", src, img, "-noappend", "-quiet", "-no-progress",
		"-b", "4096").CombinedOutput()
	if err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	f := openImage(t, img, nil)
	root, err := f.Inode(f.Root())
	if err != nil {
		t.Fatal(err)
	}
	n := lookupPath(t, f, root, "huge")
	if n.Size != size || n.Sparse != size-4096 {
		t.Errorf("size %d, %d sparse; want %d, %d", n.Size, n.Sparse, size, size-4096)
	}
	if got, err := f.SeekData(n, 0, false); err != nil || got != at {
		t.Errorf("SEEK_DATA from 0: %d, %v; want %d", got, err, at)
	}
	b := make([]byte, 2)
	if _, err := f.ReadAt(n, b, at); err != nil || string(b) != "x\x00" {
		t.Errorf("read at %d: %q, %v", at, b, err)
	}
	bl, err := f.blocks(n)
	if err != nil {
		t.Fatal(err)
	}
	if kept := bl.footprint(); kept > 64<<10 {
		t.Errorf("the block list keeps %d bytes", kept)
	}

	ln := lookupPath(t, f, root, "long")
	got := make([]byte, len(long))
	if k, err := f.ReadAt(ln, got, 0); k != len(long) || err != nil {
		t.Fatalf("read long: %d, %v", k, err)
	}
	if !bytes.Equal(got, long) {
		t.Fatal("long reads back different")
	}
	for _, off := range []int64{11 << 20, 4095, 5 << 20, 1, 8<<20 + 100, 12<<20 - 9000} {
		p := got[:8192]
		k, err := f.ReadAt(ln, p, off)
		if err != nil && err != io.EOF {
			t.Fatalf("read long at %d: %v", off, err)
		}
		if !bytes.Equal(p[:k], long[off:off+int64(k)]) {
			t.Errorf("long at %d reads back different", off)
		}
	}
}

// footprint returns the bytes a block list keeps beyond its header.
func (bl *blockList) footprint() int {
	size := func(w *listWin) int {
		if w == nil {
			return 0
		}
		return len(w.sizes)*4 + len(w.offsets)*8
	}
	n := size(bl.whole) + len(bl.marks)*int(unsafe.Sizeof(listMark{}))
	for i := range bl.slots {
		n += size(bl.slots[i].Load())
	}
	return n
}
