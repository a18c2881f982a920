// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// smallImage builds a tiny image with one of everything, for corruption
// tests and fuzz seeds. entries adds that many names to one directory
// (600 gives it a directory index).
func smallImage(t testing.TB, entries int, opts ...string) []byte {
	t.Helper()
	requireTool(t, "mksquashfs")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "d/e"), 0o755))
	must(os.WriteFile(filepath.Join(src, "a"), textBytes(1, 5000), 0o644))
	must(os.WriteFile(filepath.Join(src, "d/b"), textBytes(2, 9000), 0o4755))
	must(os.WriteFile(filepath.Join(src, "d/e/c"), []byte("c"), 0o600))
	must(os.Link(filepath.Join(src, "a"), filepath.Join(src, "d/a2")))
	must(os.Symlink("d/e/c", filepath.Join(src, "l")))
	must(unix.Mknod(filepath.Join(src, "chr"), unix.S_IFCHR|0o644, int(unix.Mkdev(4, 5))))
	must(unix.Mknod(filepath.Join(src, "fifo"), unix.S_IFIFO|0o644, 0))
	must(unix.Lsetxattr(filepath.Join(src, "a"), "user.k", []byte("v"), 0))
	must(unix.Lsetxattr(filepath.Join(src, "d"), "trusted.t", []byte("tt"), 0))
	must(os.Lchown(filepath.Join(src, "d/b"), 1000, 2000))
	for i := range entries {
		must(os.WriteFile(filepath.Join(src, "d", fmt.Sprintf("n%04d", i)), nil, 0o644))
	}
	img := filepath.Join(dir, "img")
	args := append([]string{src, img, "-noappend", "-quiet", "-no-progress"}, opts...)
	if out, err := exec.Command("mksquashfs", args...).CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	data, err := os.ReadFile(img)
	must(err)
	return data
}

// walkLimits bound walkAll on corrupt images that describe huge or cyclic
// trees.
const (
	walkMaxInodes   = 5000
	walkMaxFileRead = 1 << 20
)

// walkAll opens data and visits everything reachable, reading files,
// symlinks and xattrs. It returns the first error; it must never panic.
func walkAll(data []byte) error {
	f, err := Open(bytes.NewReader(data), int64(len(data)),
		&Options{CacheBytes: 1 << 20, MetaCacheBytes: 256 << 10})
	if err != nil {
		return err
	}
	return walkFS(f)
}

// walkFS visits everything reachable in f; see walkAll.
func walkFS(f *FS) error {
	var firstErr error
	note := func(err error) {
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	seen := map[Ref]bool{}
	queue := []Ref{f.Root()}
	buf := make([]byte, 64<<10)
	for len(queue) > 0 && len(seen) < walkMaxInodes {
		ref := queue[0]
		queue = queue[1:]
		if seen[ref] {
			continue
		}
		seen[ref] = true
		n, err := f.Inode(ref)
		if err != nil {
			note(err)
			continue
		}
		_, err = f.Xattrs(n)
		note(err)
		switch n.Mode & modeTypeMask {
		case modeDir:
			ents, err := f.ReadDir(n)
			note(err)
			for i, e := range ents {
				queue = append(queue, e.Ref)
				if i < 3 {
					_, err := f.Lookup(n, e.Name)
					note(err)
				}
			}
			_, err = f.Lookup(n, "zz-missing")
			if !errors.Is(err, unix.ENOENT) {
				note(err)
			}
		case modeReg:
			for off := int64(0); off < walkMaxFileRead; off += int64(len(buf)) {
				_, err := f.ReadAt(n, buf, off)
				if err == io.EOF {
					break
				}
				if err != nil {
					note(err)
					break
				}
			}
			if n.Size > 10 {
				_, err := f.ReadAt(n, buf[:10], int64(n.Size)-10)
				if err != io.EOF {
					note(err)
				}
			}
		case modeSymlink:
			_, err := f.Readlink(n)
			note(err)
		}
	}
	return firstErr
}

func TestSmallImageWalks(t *testing.T) {
	for _, comp := range []string{"gzip", "lzo", "xz", "lz4", "zstd", "lzma"} {
		if err := walkAll(smallImage(t, 600, "-comp", comp)); err != nil {
			t.Errorf("%s: %v", comp, err)
		}
	}
}

func TestTruncatedImage(t *testing.T) {
	img := smallImage(t, 600)
	// mksquashfs pads to 4 KiB; only the used bytes matter.
	img = img[:binary.LittleEndian.Uint64(img[40:])]
	for _, n := range []int{0, 10, 95, 96, 200, len(img) / 2, len(img) - 100, len(img) - 1} {
		_, err := Open(bytes.NewReader(img[:n]), int64(n), nil)
		var fe *FormatError
		if !errors.As(err, &fe) {
			t.Errorf("truncated to %d: err = %v, want *FormatError", n, err)
		}
	}
	// Same size but the tail zeroed, as a short download padded out would be.
	for _, n := range []int{200, len(img) / 2, len(img) - 200} {
		z := bytes.Clone(img)
		clear(z[n:])
		if err := walkAll(z); err == nil {
			t.Errorf("zeroed from %d: walk succeeded, want an error", n)
		} else if !strings.HasPrefix(err.Error(), "squash: ") {
			t.Errorf("zeroed from %d: error %q lacks the package prefix", n, err)
		}
	}
}

func TestCorruptSuperblock(t *testing.T) {
	img := smallImage(t, 0)
	put16 := func(off int, v uint16) func([]byte) {
		return func(b []byte) { binary.LittleEndian.PutUint16(b[off:], v) }
	}
	put32 := func(off int, v uint32) func([]byte) {
		return func(b []byte) { binary.LittleEndian.PutUint32(b[off:], v) }
	}
	put64 := func(off int, v uint64) func([]byte) {
		return func(b []byte) { binary.LittleEndian.PutUint64(b[off:], v) }
	}
	tests := []struct {
		name   string
		mutate func([]byte)
		want   string
	}{
		{"magic", put32(0, 0x12345678), "bad magic"},
		{"version", put16(28, 3), "version 3.0"},
		{"block size", put32(12, 3000), "block size 3000"},
		{"block size huge", put32(12, 1<<21), "block size"},
		{"block log", put16(22, 12), "block log 12"},
		{"flags", put16(24, 0x8000), "unknown flags"},
		{"compressor", put16(20, 9), "compressor id 9"},
		{"bytes used", put64(40, 1<<40), "bytes used"},
		{"inode table", put64(64, 1<<40), "inode table start"},
		{"id table", put64(48, 3), "id table start"},
		{"id count", put16(26, 60000), "id table"},
		{"root", put64(32, 0xffff_0000_1fff), "inode"},
		{"fragments", put32(16, 1<<30), "fragment table"},
		{"xattr table", put64(56, 100), "xattr id table"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(img)
			tc.mutate(b)
			_, err := Open(bytes.NewReader(b), int64(len(b)), nil)
			var fe *FormatError
			if !errors.As(err, &fe) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want *FormatError mentioning %q", err, tc.want)
			}
		})
	}
}

// TestFlippedBytes flips every byte of the tables area of a small image, one
// at a time, and walks the result: errors are fine, panics and hangs are
// not. The data area is sampled more sparsely.
func TestFlippedBytes(t *testing.T) {
	for _, comp := range []string{"gzip", "lz4"} {
		img := smallImage(t, 40, "-comp", comp, "-noI")
		sb, err := readSuperblock(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			t.Fatal(err)
		}
		b := bytes.Clone(img)
		for i := 0; i < len(img); i++ {
			if i > sbSize && i < int(sb.InodeTableStart) && i%17 != 0 {
				continue
			}
			for _, x := range []byte{0x01, 0x80, 0xff} {
				b[i] ^= x
				_ = walkAll(b)
				b[i] ^= x
			}
		}
	}
}

// openBytes opens an in-memory image.
func openBytes(t testing.TB, img []byte) *FS {
	t.Helper()
	f, err := Open(bytes.NewReader(img), int64(len(img)), nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestCorruptTables damages specific table fields and checks the error
// names the problem.
func TestCorruptTables(t *testing.T) {
	img := smallImage(t, 0, "-noI")
	sb, err := readSuperblock(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func([]byte)
		want   string
	}{
		{"metadata block over 8 KiB", func(b []byte) {
			binary.LittleEndian.PutUint16(b[sb.InodeTableStart:], 0x8000|0x3000)
		}, "stored length 12288"},
		{"empty metadata block", func(b []byte) {
			binary.LittleEndian.PutUint16(b[sb.InodeTableStart:], 0x8000)
		}, "stored length 0"},
		{"id block pointer", func(b []byte) {
			binary.LittleEndian.PutUint64(b[sb.IDTableStart:], 1<<40)
		}, "block pointer 0"},
		{"fragment block pointer", func(b []byte) {
			binary.LittleEndian.PutUint64(b[sb.FragTableStart:], 3)
		}, "fragment table"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(img)
			tc.mutate(b)
			err := walkAll(b)
			var fe *FormatError
			if !errors.As(err, &fe) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want *FormatError mentioning %q", err, tc.want)
			}
		})
	}
}

// TestCompressorOptions checks images that store compressor options after
// the superblock are read.
func TestCompressorOptions(t *testing.T) {
	for _, opts := range [][]string{
		{"-comp", "lz4", "-Xhc"},
		{"-comp", "gzip", "-Xcompression-level", "1"},
		{"-comp", "xz", "-Xdict-size", "50%"},
		{"-comp", "zstd", "-Xcompression-level", "3"},
		{"-comp", "lzo", "-Xalgorithm", "lzo1x_1"},
	} {
		img := smallImage(t, 0, opts...)
		f := openBytes(t, img)
		if f.sb.Flags&flagCompressorOptions == 0 {
			t.Errorf("%v: image has no compressor options; test is vacuous", opts)
		}
		if err := walkAll(img); err != nil {
			t.Errorf("%v: %v", opts, err)
		}
	}
}

// TestFormatErrorText: an error without one offset says none (it said
// "at offset -1").
func TestFormatErrorText(t *testing.T) {
	for _, tc := range []struct {
		off  int64
		want string
	}{
		{96, "squash: inode 7 at offset 96: corrupt data: id index 9 past id table of 2"},
		{-1, "squash: inode 7: corrupt data: id index 9 past id table of 2"},
	} {
		err := formatErr(tc.off, "inode 7", "id index %d past id table of %d", 9, 2)
		if err.Error() != tc.want {
			t.Errorf("offset %d: %q, want %q", tc.off, err, tc.want)
		}
	}
}
