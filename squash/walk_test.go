// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// imageVariants is the mksquashfs option matrix every walk test covers.
var imageVariants = []struct {
	name string
	opts []string
}{
	{"gzip", []string{"-comp", "gzip"}},
	{"xz", []string{"-comp", "xz"}},
	{"lzma", []string{"-comp", "lzma"}},
	{"lzo", []string{"-comp", "lzo"}},
	{"lz4", []string{"-comp", "lz4"}},
	{"lz4hc", []string{"-comp", "lz4", "-Xhc"}},
	{"zstd", []string{"-comp", "zstd"}},
	{"gzip-b4k", []string{"-b", "4096"}},
	{"zstd-b1m", []string{"-comp", "zstd", "-b", "1M"}},
	{"lzo-b1m", []string{"-comp", "lzo", "-b", "1M"}},
	{"uncompressed", []string{"-noI", "-noD", "-noF", "-noX"}},
	{"no-xattrs", []string{"-no-xattrs"}},
	{"no-fragments", []string{"-no-fragments"}},
	{"always-fragments", []string{"-always-use-fragments"}},
	{"no-duplicates", []string{"-no-duplicates", "-comp", "lz4"}},
	{"tailends-no-exports", []string{"-tailends", "-no-exports", "-comp", "zstd"}},
	{"gzip-options", []string{"-Xcompression-level", "1", "-Xwindow-size", "10"}},
}

func TestWalkMatchesSource(t *testing.T) {
	src := featureTree(t)
	for _, v := range imageVariants {
		t.Run(v.name, func(t *testing.T) {
			f := openImage(t, image(t, v.opts...), nil)
			wantXattrs := !slices.Contains(v.opts, "-no-xattrs")
			compareTree(t, f, src, wantXattrs)
		})
	}
}

// compareTree walks src and checks every entry against the image, looking
// each one up by path from the root and comparing listings.
func compareTree(t *testing.T, f *FS, src string, wantXattrs bool) {
	t.Helper()
	root, err := f.Inode(f.Root())
	if err != nil {
		t.Fatal(err)
	}
	inos := map[uint64]uint32{} // source inode -> squashfs inode number
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		n := root
		if rel != "." {
			n = lookupPath(t, f, root, rel)
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		compareInode(t, f, rel, p, &st, n, wantXattrs)
		if prev, ok := inos[st.Ino]; ok && prev != n.Ino {
			t.Errorf("%s: hard link has inode %d, want %d", rel, n.Ino, prev)
		}
		inos[st.Ino] = n.Ino
		if d.IsDir() {
			compareListing(t, f, rel, p, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func lookupPath(t *testing.T, f *FS, root *Inode, rel string) *Inode {
	t.Helper()
	n := root
	for _, part := range strings.Split(rel, "/") {
		next, err := f.Lookup(n, part)
		if err != nil {
			t.Fatalf("lookup %s (at %q): %v", rel, part, err)
		}
		n = next
	}
	return n
}

func compareInode(t *testing.T, f *FS, rel, p string, st *unix.Stat_t, n *Inode,
	wantXattrs bool) {
	t.Helper()
	if n.Mode != st.Mode {
		t.Errorf("%s: mode %o, want %o", rel, n.Mode, st.Mode)
	}
	if n.Uid != st.Uid || n.Gid != st.Gid {
		t.Errorf("%s: owner %d:%d, want %d:%d", rel, n.Uid, n.Gid, st.Uid, st.Gid)
	}
	if n.Mtime != st.Mtim.Sec {
		t.Errorf("%s: mtime %d, want %d", rel, n.Mtime, st.Mtim.Sec)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR && uint64(n.Nlink) != st.Nlink {
		t.Errorf("%s: nlink %d, want %d", rel, n.Nlink, st.Nlink)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if n.Size != uint64(st.Size) {
			t.Errorf("%s: size %d, want %d", rel, n.Size, st.Size)
		}
		compareContent(t, f, rel, p, n)
	case unix.S_IFLNK:
		want, _ := os.Readlink(p)
		got, err := f.Readlink(n)
		if err != nil || got != want {
			t.Errorf("%s: readlink = %.40q, %v; want %.40q", rel, got, err, want)
		}
		if n.Size != uint64(len(want)) {
			t.Errorf("%s: symlink size %d, want %d", rel, n.Size, len(want))
		}
	case unix.S_IFCHR, unix.S_IFBLK:
		if n.Rdev != uint32(st.Rdev) {
			t.Errorf("%s: rdev %#x, want %#x", rel, n.Rdev, st.Rdev)
		}
	}
	compareXattrs(t, f, rel, p, n, wantXattrs)
}

func compareContent(t *testing.T, f *FS, rel, p string, n *Inode) {
	t.Helper()
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want)+10)
	k, err := f.ReadAt(n, got, 0)
	if k != len(want) || (err != io.EOF && !(err == nil && k == len(got))) {
		t.Errorf("%s: ReadAt = %d, %v; want %d, io.EOF", rel, k, err, len(want))
		return
	}
	if sha256.Sum256(got[:k]) != sha256.Sum256(want) {
		t.Errorf("%s: content differs", rel)
	}
	// Unaligned reads crossing block boundaries, and the tail.
	for _, off := range []int64{1, 4095, 131071, int64(len(want)) - 7, 5<<20 + 10} {
		if off < 0 || off >= int64(len(want)) {
			continue
		}
		buf := make([]byte, 9000)
		k, err := f.ReadAt(n, buf, off)
		end := min(off+int64(len(buf)), int64(len(want)))
		if !bytes.Equal(buf[:k], want[off:end]) || (end < off+9000) != (err == io.EOF) {
			t.Errorf("%s: ReadAt(off %d) = %d, %v: wrong data", rel, off, k, err)
		}
	}
	if k, err := f.ReadAt(n, make([]byte, 1), int64(len(want))); k != 0 || err != io.EOF {
		t.Errorf("%s: ReadAt at EOF = %d, %v; want 0, io.EOF", rel, k, err)
	}
}

func compareXattrs(t *testing.T, f *FS, rel, p string, n *Inode, wantXattrs bool) {
	t.Helper()
	want := map[string]string{}
	if wantXattrs {
		want = sourceXattrs(t, p)
	}
	xs, err := f.Xattrs(n)
	if err != nil {
		t.Errorf("%s: Xattrs: %v", rel, err)
		return
	}
	got := map[string]string{}
	for _, x := range xs {
		got[x.Name] = string(x.Value)
	}
	if len(got) != len(want) {
		t.Errorf("%s: xattrs %q, want %q", rel, got, want)
		return
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: xattr %s = %q, want %q", rel, k, got[k], v)
		}
	}
}

func sourceXattrs(t *testing.T, p string) map[string]string {
	t.Helper()
	out := map[string]string{}
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		t.Fatalf("listxattr %s: %v", p, err)
	}
	for name := range strings.SplitSeq(string(buf[:n]), "\x00") {
		if name == "" {
			continue
		}
		val := make([]byte, 64<<10)
		k, err := unix.Lgetxattr(p, name, val)
		if err != nil {
			t.Fatalf("getxattr %s %s: %v", p, name, err)
		}
		out[name] = string(val[:k])
	}
	return out
}

func compareListing(t *testing.T, f *FS, rel, p string, dir *Inode) {
	t.Helper()
	des, err := os.ReadDir(p)
	if err != nil {
		t.Fatal(err)
	}
	ents, err := f.ReadDir(dir)
	if err != nil {
		t.Fatalf("%s: ReadDir: %v", rel, err)
	}
	if len(ents) != len(des) {
		t.Fatalf("%s: %d entries, want %d", rel, len(ents), len(des))
	}
	subdirs := 0
	for i, e := range ents {
		if e.Name != des[i].Name() {
			t.Fatalf("%s: entry %d is %q, want %q", rel, i, e.Name, des[i].Name())
		}
		if e.Type == syscall.S_IFDIR {
			subdirs++
		}
		if fs.FileMode(0) != des[i].Type()&fs.ModeDir && e.Type != syscall.S_IFDIR {
			t.Errorf("%s/%s: type %o, want a directory", rel, e.Name, e.Type)
		}
	}
	if dir.Nlink != uint32(2+subdirs) {
		t.Errorf("%s: directory nlink %d, want %d", rel, dir.Nlink, 2+subdirs)
	}
}

func TestLookupErrors(t *testing.T) {
	f := openImage(t, image(t), nil)
	root, _ := f.Inode(f.Root())
	_, err := f.Lookup(root, "no-such-name")
	if !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, syscall.ENOENT) {
		t.Errorf("missing name: %v, want ENOENT and fs.ErrNotExist", err)
	}
	big := lookupPath(t, f, root, "big")
	if _, err := f.Lookup(big, "entry-99999"); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("missing name in big dir: %v, want ENOENT", err)
	}
	file := lookupPath(t, f, root, "small.txt")
	if _, err := f.Lookup(file, "x"); !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("lookup in file: %v, want ENOTDIR", err)
	}
	if _, err := f.ReadDir(file); !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("readdir of file: %v, want ENOTDIR", err)
	}
	if _, err := f.ReadAt(root, make([]byte, 1), 0); !errors.Is(err, syscall.EISDIR) {
		t.Errorf("read of dir: %v, want EISDIR", err)
	}
	if f.Compression() != "gzip" || f.BlockSize() != 128<<10 || f.Inodes() == 0 {
		t.Errorf("superblock: %s %d %d", f.Compression(), f.BlockSize(), f.Inodes())
	}
}

// TestXattrOutOfLine checks that a value shared by two files is stored once
// and reached through an out-of-line reference from the second.
func TestXattrOutOfLine(t *testing.T) {
	f := openImage(t, image(t), nil)
	root, _ := f.Inode(f.Root())
	want := string(textBytes(13, 3000))
	for _, name := range []string{"xattrs/shared-1", "xattrs/shared-2"} {
		xs, err := f.Xattrs(lookupPath(t, f, root, name))
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, x := range xs {
			found = found || x.Name == "user.big" && string(x.Value) == want
		}
		if !found {
			t.Errorf("%s: user.big missing or wrong in %d xattrs", name, len(xs))
		}
	}
	if f.xattrOOLRefs.Load() == 0 {
		t.Errorf("no out-of-line xattr value was followed")
	}
}
