// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Option sets shared by several tests, so each image is built once.
var (
	optsB4K = []string{"-b", "4096", "-Xcompression-level", "1", "-Xwindow-size", "10"}
	optsRaw = []string{"-noI", "-noD", "-noF", "-noX"}
)

// imageVariants is the mksquashfs option matrix every walk test covers.
var imageVariants = []struct {
	name string
	opts []string
}{
	{"gzip", nil},
	{"xz", []string{"-comp", "xz"}},
	{"lzma", []string{"-comp", "lzma"}},
	{"lzo", []string{"-comp", "lzo"}},
	{"lz4", []string{"-comp", "lz4"}},
	{"zstd", []string{"-comp", "zstd"}},
	{"gzip-b4k-options", optsB4K},
	{"zstd-b1m", []string{"-comp", "zstd", "-b", "1M"}},
	{"lzo-b1m", []string{"-comp", "lzo", "-b", "1M"}},
	{"uncompressed", optsRaw},
	{"no-xattrs", []string{"-no-xattrs"}},
	{"no-fragments", []string{"-no-fragments"}},
	{"always-fragments", []string{"-always-use-fragments"}},
	{"no-duplicates-lz4hc", []string{"-no-duplicates", "-comp", "lz4", "-Xhc"}},
	{"tailends-no-exports", []string{"-tailends", "-no-exports", "-comp", "zstd"}},
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

// srcEntry is one entry of the feature tree as the host sees it.
type srcEntry struct {
	rel      string
	st       unix.Stat_t
	target   string            // symlinks
	data     []byte            // regular files
	xattrs   map[string]string // full names
	children []string          // directories, sorted as os.ReadDir sorts
}

var (
	snapOnce sync.Once
	snap     []srcEntry
	snapErr  error
)

// snapshot reads the feature tree once, so that each image variant is
// compared without re-reading the host file system.
func snapshot(t *testing.T, src string) []srcEntry {
	t.Helper()
	snapOnce.Do(func() {
		snapErr = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			e := srcEntry{}
			e.rel, _ = filepath.Rel(src, p)
			if err := unix.Lstat(p, &e.st); err != nil {
				return err
			}
			switch e.st.Mode & unix.S_IFMT {
			case unix.S_IFREG:
				e.data, err = os.ReadFile(p)
			case unix.S_IFLNK:
				e.target, err = os.Readlink(p)
			case unix.S_IFDIR:
				var des []fs.DirEntry
				des, err = os.ReadDir(p)
				for _, de := range des {
					e.children = append(e.children, de.Name())
				}
			}
			if err != nil {
				return err
			}
			e.xattrs, err = sourceXattrs(p)
			snap = append(snap, e)
			return err
		})
	})
	if snapErr != nil {
		t.Fatalf("snapshot of %s: %v", src, snapErr)
	}
	return snap
}

// compareTree checks every entry of src against the image, looking each
// one up by path from the root and comparing listings.
func compareTree(t *testing.T, f *FS, src string, wantXattrs bool) {
	t.Helper()
	root, err := f.Inode(f.Root())
	if err != nil {
		t.Fatal(err)
	}
	inos := map[uint64]uint32{} // source inode -> squashfs inode number
	for _, e := range snapshot(t, src) {
		n := root
		if e.rel != "." {
			n = lookupPath(t, f, root, e.rel)
		}
		compareInode(t, f, &e, n, wantXattrs)
		if prev, ok := inos[e.st.Ino]; ok && prev != n.Ino {
			t.Errorf("%s: hard link has inode %d, want %d", e.rel, n.Ino, prev)
		}
		inos[e.st.Ino] = n.Ino
		if e.st.Mode&unix.S_IFMT == unix.S_IFDIR {
			compareListing(t, f, &e, n)
		}
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

func compareInode(t *testing.T, f *FS, e *srcEntry, n *Inode, wantXattrs bool) {
	t.Helper()
	rel, st := e.rel, &e.st
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
		compareContent(t, f, rel, e.data, n)
	case unix.S_IFLNK:
		got, err := f.Readlink(n)
		if err != nil || got != e.target {
			t.Errorf("%s: readlink = %.40q, %v; want %.40q", rel, got, err, e.target)
		}
		if n.Size != uint64(len(e.target)) {
			t.Errorf("%s: symlink size %d, want %d", rel, n.Size, len(e.target))
		}
	case unix.S_IFCHR, unix.S_IFBLK:
		if n.Rdev != uint32(st.Rdev) {
			t.Errorf("%s: rdev %#x, want %#x", rel, n.Rdev, st.Rdev)
		}
	}
	want := e.xattrs
	if !wantXattrs {
		want = nil
	}
	compareXattrs(t, f, rel, want, n)
}

func compareContent(t *testing.T, f *FS, rel string, want []byte, n *Inode) {
	t.Helper()
	got := make([]byte, len(want)+10)
	k, err := f.ReadAt(n, got, 0)
	if k != len(want) || err != io.EOF {
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

func compareXattrs(t *testing.T, f *FS, rel string, want map[string]string, n *Inode) {
	t.Helper()
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

func sourceXattrs(p string) (map[string]string, error) {
	out := map[string]string{}
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return nil, fmt.Errorf("listxattr %s: %w", p, err)
	}
	for name := range strings.SplitSeq(string(buf[:n]), "\x00") {
		if name == "" {
			continue
		}
		val := make([]byte, 64<<10)
		k, err := unix.Lgetxattr(p, name, val)
		if err != nil {
			return nil, fmt.Errorf("getxattr %s %s: %w", p, name, err)
		}
		out[name] = string(val[:k])
	}
	return out, nil
}

func compareListing(t *testing.T, f *FS, e *srcEntry, dir *Inode) {
	t.Helper()
	ents, err := f.ReadDir(dir)
	if err != nil {
		t.Fatalf("%s: ReadDir: %v", e.rel, err)
	}
	if len(ents) != len(e.children) {
		t.Fatalf("%s: %d entries, want %d", e.rel, len(ents), len(e.children))
	}
	subdirs := 0
	for i, de := range ents {
		if de.Name != e.children[i] {
			t.Fatalf("%s: entry %d is %q, want %q", e.rel, i, de.Name, e.children[i])
		}
		if de.Type == syscall.S_IFDIR {
			subdirs++
		}
		n, err := f.Inode(de.Ref)
		if err != nil || n.Ino != de.Ino || n.Mode&modeTypeMask != de.Type {
			t.Errorf("%s/%s: entry ino %d type %o disagree with inode %+v (%v)", e.rel,
				de.Name, de.Ino, de.Type, n, err)
		}
	}
	if dir.Nlink != uint32(2+subdirs) {
		t.Errorf("%s: directory nlink %d, want %d", e.rel, dir.Nlink, 2+subdirs)
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
	long := strings.Repeat("x", 300)
	if _, err := f.Lookup(root, long); !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Errorf("lookup of 300-byte name: %v, want ENAMETOOLONG", err)
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
