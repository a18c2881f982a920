// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// TestDirectoryIndex checks index-guided lookups agree with the full
// listing for every name in the 20,000-entry directory, and for names that
// fall between, before and after the stored ones.
func TestDirectoryIndex(t *testing.T) {
	for _, opts := range [][]string{nil, optsRaw, optsB4K} {
		t.Run(strings.Join(opts, " "), func(t *testing.T) {
			f := openImage(t, image(t, opts...), nil)
			root, _ := f.Inode(f.Root())
			big := lookupPath(t, f, root, "big")
			if big.idxCount < 10 {
				t.Fatalf("big directory has %d index records, want many", big.idxCount)
			}
			ents, err := f.ReadDir(big)
			if err != nil {
				t.Fatal(err)
			}
			if len(ents) != bigDirEntries+1 {
				t.Fatalf("%d entries, want %d", len(ents), bigDirEntries+1)
			}
			recs, err := f.dirIndex(big)
			if err != nil {
				t.Fatal(err)
			}
			for i, e := range ents {
				got, ok, err := f.lookupIndexed(big, e.Name)
				if err != nil || !ok || got != e {
					t.Fatalf("indexed lookup %q = %+v, %v, %v; want %+v", e.Name, got, ok,
						err, e)
				}
				if i%97 == 0 {
					// The uncached scan, used when a range number does
					// not fit a cache key.
					r := sort.Search(len(recs), func(i int) bool { return recs[i].name > e.Name })
					if got, ok, err := f.scanRange(big, recs, r, e.Name); !ok || got != e {
						t.Fatalf("range scan %q = %+v, %v, %v", e.Name, got, ok, err)
					}
				}
				for _, miss := range []string{e.Name + "\x01", e.Name[:len(e.Name)-1]} {
					if _, ok, err := f.lookupIndexed(big, miss); ok || err != nil {
						if miss != e.Name && !(ok && strings.HasPrefix(e.Name, miss)) {
							t.Fatalf("indexed lookup %q = %v, %v; want not found", miss, ok, err)
						}
					}
				}
			}
			for _, miss := range []string{"a", "entry-", "zzzz", "entry-10000-x"} {
				if _, ok, err := f.lookupIndexed(big, miss); ok || err != nil {
					t.Errorf("indexed lookup %q = %v, %v; want not found", miss, ok, err)
				}
			}
		})
	}
}

// TestLookupCachesListing checks that repeated lookups in a small
// directory parse its listing once, and that lookups in directories with
// an index parse the index once and each range at most once, never the
// whole listing.
func TestLookupCachesListing(t *testing.T) {
	f := openImage(t, image(t), nil)
	root, _ := f.Inode(f.Root())
	before := f.dirListLoads.Load()
	for range 100 {
		if _, err := f.Lookup(root, "text-3m"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Lookup(root, "missing"); !errors.Is(err, syscall.ENOENT) {
			t.Fatalf("lookup missing: %v, want ENOENT", err)
		}
	}
	if root.idxCount != 0 {
		t.Fatalf("root has a directory index; want a small directory")
	}
	if loads := f.dirListLoads.Load() - before; loads != 1 {
		t.Errorf("200 lookups in / parsed the listing %d times, want 1", loads)
	}

	for _, dir := range []struct {
		img  func() *FS
		path string
		name func(i int) string
	}{
		{func() *FS { return openBytes(t, smallImage(t, 2000)) }, "d",
			func(i int) string { return fmt.Sprintf("n%04d", i*3%2000) }},
		{func() *FS { return openImage(t, image(t), nil) }, "big",
			func(i int) string { return bigName(i * 37) }},
	} {
		f := dir.img()
		root, _ := f.Inode(f.Root())
		d := lookupPath(t, f, root, dir.path)
		if d.idxCount == 0 {
			t.Fatalf("%s has no directory index", dir.path)
		}
		before, idx, ranges := f.dirListLoads.Load(), f.dirIndexLoads.Load(),
			f.dirRangeLoads.Load()
		for i := range 500 {
			name := dir.name(i)
			if _, err := f.Lookup(d, name); err != nil {
				t.Fatalf("lookup %s/%s: %v", dir.path, name, err)
			}
			if _, err := f.Lookup(d, name+"x"); !errors.Is(err, syscall.ENOENT) {
				t.Fatalf("lookup %s/%sx: %v, want ENOENT", dir.path, name, err)
			}
		}
		if loads := f.dirListLoads.Load() - before; loads != 0 {
			t.Errorf("%s: lookups parsed the listing %d times, want 0", dir.path, loads)
		}
		if loads := f.dirIndexLoads.Load() - idx; loads != 1 {
			t.Errorf("%s: lookups parsed the index %d times, want 1", dir.path, loads)
		}
		if loads := f.dirRangeLoads.Load() - ranges; loads < 1 ||
			loads > int64(d.idxCount)+1 {
			t.Errorf("%s: lookups parsed %d ranges of %d", dir.path, loads, d.idxCount+1)
		}
	}
}

// TestDirEntries checks that DirEntries yields what ReadDir returns, in
// the same order, with the count it reports, and refuses a file.
func TestDirEntries(t *testing.T) {
	f := openImage(t, image(t), nil)
	root, _ := f.Inode(f.Root())
	for _, dir := range []*Inode{root, lookupPath(t, f, root, "big")} {
		want, err := f.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		seq, n, err := f.DirEntries(dir)
		if err != nil {
			t.Fatal(err)
		}
		got := slices.Collect(seq)
		if n != len(want) || !slices.Equal(got, want) {
			t.Fatalf("DirEntries: %d entries (count %d), ReadDir: %d", len(got), n,
				len(want))
		}
	}
	ents, err := f.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Type == syscall.S_IFREG {
			file, err := f.Inode(e.Ref)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := f.DirEntries(file); !errors.Is(err, syscall.ENOTDIR) {
				t.Fatalf("DirEntries(%s): err %v, want ENOTDIR", e.Name, err)
			}
			return
		}
	}
	t.Fatal("the test image has no regular file at its root")
}

// TestLargeListingKept checks that a listing too large for the directory
// cache's shards (the 20,000-entry directory) is parsed once for repeated
// ReadDir calls and then serves lookups, and that listing a small
// directory does not push it out.
func TestLargeListingKept(t *testing.T) {
	f := openImage(t, image(t), nil)
	root, _ := f.Inode(f.Root())
	big := lookupPath(t, f, root, "big")
	before, ranges := f.dirListLoads.Load(), f.dirRangeLoads.Load()
	for range 5 {
		ents, err := f.ReadDir(big)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != bigDirEntries+1 {
			t.Fatalf("%d entries, want %d", len(ents), bigDirEntries+1)
		}
	}
	if loads := f.dirListLoads.Load() - before; loads != 1 {
		t.Errorf("5 ReadDir calls parsed the 20,000-entry listing %d times, want 1", loads)
	}
	for i := range 200 {
		if _, err := f.Lookup(big, bigName(i*97)); err != nil {
			t.Fatalf("lookup %s: %v", bigName(i*97), err)
		}
	}
	if loads := f.dirRangeLoads.Load() - ranges; loads != 0 {
		t.Errorf("lookups after ReadDir parsed %d index ranges, want 0", loads)
	}

	f2 := openBytes(t, smallImage(t, 12000))
	root2, _ := f2.Inode(f2.Root())
	d := lookupPath(t, f2, root2, "d")
	before = f2.dirListLoads.Load()
	for range 3 {
		if _, err := f2.ReadDir(d); err != nil {
			t.Fatal(err)
		}
	}
	if loads := f2.dirListLoads.Load() - before; loads != 1 {
		t.Errorf("3 ReadDir calls of 12,003 entries parsed %d times, want 1", loads)
	}
	if _, err := f2.ReadDir(root2); err != nil {
		t.Fatal(err)
	}
	if l, ok := f2.bigListing(d.Ref); !ok || len(l.entries) != 12003 {
		t.Errorf("the 12,003-entry listing is not kept after listing /")
	}
}

// TestUnsquashfsListing compares mode, owner, size and symlink target of
// every entry with `unsquashfs -lln`, an independent reader.
func TestUnsquashfsListing(t *testing.T) {
	requireTool(t, "unsquashfs")
	path := image(t, "-comp", "zstd")
	f := openImage(t, path, nil)
	out, err := exec.Command("unsquashfs", "-lln", "-d", "R", path).Output()
	if err != nil {
		t.Fatalf("unsquashfs -lln: %v", err)
	}
	root, _ := f.Inode(f.Root())
	seen := 0
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		// e.g. "-rw-r--r-- 0/0   100 2020-09-13 12:26 R/small.txt"
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || !strings.HasPrefix(fields[5], "R") {
			continue
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(fields[5], "R"), "/")
		n := root
		if rel != "" {
			n = lookupPath(t, f, root, rel)
		}
		seen++
		if got := modeString(n.Mode); got != fields[0] {
			t.Errorf("%s: mode %s, unsquashfs says %s", rel, got, fields[0])
		}
		if got := fmt.Sprintf("%d/%d", n.Uid, n.Gid); got != fields[1] {
			t.Errorf("%s: owner %s, unsquashfs says %s", rel, got, fields[1])
		}
		var size string
		switch n.Mode & modeTypeMask {
		case modeChr, modeBlk:
			size = fmt.Sprintf("%d,%d", n.Rdev>>8&0xfff, n.Rdev&0xff|n.Rdev>>12&0xfff00)
			// unsquashfs 4.5.1 prints rdev>>8 and rdev&0xff, which is only
			// right for minors below 256; the kernel's new_decode_dev (what
			// Rdev follows) is checked against stat(2) in the walk test.
			if n.Rdev > 0xfffff {
				continue
			}
			if fields[2] != size && fields[2]+fields[3] != size {
				t.Errorf("%s: device %s, unsquashfs says %s", rel, size, fields[2])
			}
		case modeReg:
			if fields[2] != fmt.Sprint(n.Size) {
				t.Errorf("%s: size %d, unsquashfs says %s", rel, n.Size, fields[2])
			}
		}
	}
	if seen < bigDirEntries {
		t.Fatalf("only %d entries parsed from unsquashfs output", seen)
	}
}

// modeString formats st_mode as ls -l does.
func modeString(m uint32) string {
	types := map[uint32]byte{modeDir: 'd', modeReg: '-', modeSymlink: 'l', modeBlk: 'b',
		modeChr: 'c', modeFifo: 'p', modeSock: 's'}
	b := []byte{types[m&modeTypeMask]}
	const rwx = "rwxrwxrwx"
	for i := range 9 {
		if m&(1<<(8-i)) != 0 {
			b = append(b, rwx[i])
		} else {
			b = append(b, '-')
		}
	}
	special := []struct {
		bit uint32
		pos int
		set byte
	}{{0o4000, 3, 's'}, {0o2000, 6, 's'}, {0o1000, 9, 't'}}
	for _, s := range special {
		if m&s.bit != 0 {
			if b[s.pos] == '-' {
				b[s.pos] = s.set - 'a' + 'A'
			} else {
				b[s.pos] = s.set
			}
		}
	}
	return string(b)
}

// TestSectionOffset reads an image embedded at an unaligned offset inside a
// larger file, as a SIF partition is.
func TestSectionOffset(t *testing.T) {
	img, err := os.ReadFile(image(t, "-comp", "lz4"))
	if err != nil {
		t.Fatal(err)
	}
	const off = 32768 + 12345
	p := t.TempDir() + "/container.bin"
	blob := append(append(randBytes(99, off), img...), randBytes(98, 5000)...)
	if err := os.WriteFile(p, blob, 0o644); err != nil {
		t.Fatal(err)
	}
	file, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	f, err := Open(io.NewSectionReader(file, off, int64(len(img))), int64(len(img)), nil)
	if err != nil {
		t.Fatal(err)
	}
	compareTree(t, f, featureTree(t), true)
}

// TestRecordAtBlockEnd reads files whose inodes end exactly at the end of
// a metadata block, so their (here empty) block list starts in the next
// block. One-byte files have 32-byte inodes; a symlink with a target of
// the right length in front shifts them until one ends at byte 8192.
func TestRecordAtBlockEnd(t *testing.T) {
	requireTool(t, "mksquashfs")
	for shift := 1; shift <= 32; shift++ {
		src := t.TempDir()
		if err := os.Symlink(strings.Repeat("t", shift), filepath.Join(src, "a")); err != nil {
			t.Fatal(err)
		}
		for i := range 300 {
			name := filepath.Join(src, fmt.Sprintf("f%03d", i))
			if err := os.WriteFile(name, []byte{byte(i), 1}, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		img := filepath.Join(t.TempDir(), "img")
		if err := mksquashfs(src, img, "-no-duplicates"); err != nil {
			t.Fatal(err)
		}
		f := openImage(t, img, nil)
		root, _ := f.Inode(f.Root())
		ents, err := f.ReadDir(root)
		if err != nil || len(ents) != 301 {
			t.Fatalf("readdir: %d entries, %v", len(ents), err)
		}
		atEnd := false
		for i, e := range ents[1:] {
			n, err := f.Inode(e.Ref)
			if err != nil {
				t.Fatal(err)
			}
			atEnd = atEnd || uint64(e.Ref)&0xffff+32 == metaSize
			var b [3]byte
			if k, err := f.ReadAt(n, b[:], 0); k != 2 || b[0] != byte(i) {
				t.Fatalf("%s: read %d bytes %x, %v; want %02x01", e.Name, k, b[:k], err, i)
			}
		}
		if atEnd {
			return
		}
	}
	t.Fatalf("no inode ended at a metadata block boundary; the test needs one")
}
