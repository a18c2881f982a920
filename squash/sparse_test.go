// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
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
// the image can list"), where the kernel reads it.
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
}
