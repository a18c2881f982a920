package ext3

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMkfs(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int64
		bs   string
	}{
		{"64MiB", 64 << 20, "1024"},
		{"200MiB", 200 << 20, "1024"},
		{"600MiB", 600 << 20, "4096"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fh, img := newImageFile(t, tc.size)
			err := Mkfs(NewSection(fh, 0, tc.size), tc.size, MkfsOptions{Dirs: []MkfsDir{
				{Path: "upper", Mode: 0o755, Uid: 1000, Gid: 1000},
				{Path: "work", Mode: 0o755, Uid: 1000, Gid: 1000},
				{Path: "upper/a/b", Mode: 0o755, Uid: 1000, Gid: 1000},
			}})
			if err != nil {
				t.Fatal(err)
			}
			fsck(t, img)
			ls := debugfs(t, img, "ls -l /")
			for _, want := range []string{"upper", "work", "lost+found"} {
				if !strings.Contains(ls, want) {
					t.Errorf("debugfs ls -l / lacks %s:\n%s", want, ls)
				}
			}
			mnt := mountRO(t, img)
			for _, d := range []string{"upper", "work", "upper/a/b"} {
				if st, err := os.Stat(filepath.Join(mnt, d)); err != nil || !st.IsDir() {
					t.Errorf("kernel mount: %s: %v", d, err)
				}
			}
			stats := debugfs(t, img, "stats")
			if !strings.Contains(stats, "Block size:               "+tc.bs) {
				t.Errorf("block size not %s:\n%s", tc.bs, stats)
			}
			for _, feat := range []string{"has_journal", "ext_attr", "resize_inode", "dir_index",
				"filetype", "sparse_super", "large_file"} {
				if !strings.Contains(stats, feat) {
					t.Errorf("feature %s missing", feat)
				}
			}
		})
	}
}

// TestMkfsGeometry: sizes whose inode tables, filled to whole blocks, hold
// a count of inodes that is not a multiple of 8 (1 KiB blocks, an odd
// number of table blocks): e2fsck found a block after each group's table
// marked used that nothing used (a trial's sizes, in MiB).
func TestMkfsGeometry(t *testing.T) {
	for _, mib := range []int64{65, 100, 110, 180, 220, 260, 511} {
		size := mib << 20
		fh, img := newImageFile(t, size)
		if err := Mkfs(NewSection(fh, 0, size), size, MkfsOptions{}); err != nil {
			t.Fatal(err)
		}
		fsck(t, img)
	}
}

// TestGroupCountNear2to32: the group count of a file system of almost 2^32
// blocks (16 TiB of 4 KiB blocks) overflowed 32 bits to 0, and mkfs
// divided by it.
func TestGroupCountNear2to32(t *testing.T) {
	sb := &superblock{BlocksCount: 1<<32 - 1, BlocksPerGroup: 32768}
	if n := sb.groupCount(); n != 1<<17 {
		t.Errorf("groupCount %d, want %d", n, 1<<17)
	}
	sb = &superblock{BlocksCount: 8193, FirstDataBlock: 1, BlocksPerGroup: 8192}
	if n := sb.groupCount(); n != 1 {
		t.Errorf("groupCount %d, want 1", n)
	}
}
