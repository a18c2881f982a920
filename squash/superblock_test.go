// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"encoding/binary"
	"testing"
)

func TestLayoutSizes(t *testing.T) {
	sizes := []struct {
		name string
		v    any
		want int
	}{
		{"squashfs_super_block", superblock{}, sbSize},
		{"squashfs_base_inode", inodeHeader{}, inodeHdrSize},
	}
	for _, s := range sizes {
		if got := binary.Size(s.v); got != s.want {
			t.Errorf("%s: %d bytes, want %d", s.name, got, s.want)
		}
	}
}

func TestSuperblockAccessors(t *testing.T) {
	for _, tc := range []struct {
		opts      []string
		comp      string
		blockSize uint32
	}{
		{[]string{"-comp", "xz", "-b", "4096"}, "xz", 4096},
		{[]string{"-comp", "lzo", "-b", "1M"}, "lzo", 1 << 20},
		{[]string{"-comp", "lz4"}, "lz4", 128 << 10},
	} {
		img := smallImage(t, 0, tc.opts...)
		f := openBytes(t, img)
		if f.Compression() != tc.comp || f.BlockSize() != tc.blockSize {
			t.Errorf("%v: %s/%d, want %s/%d", tc.opts, f.Compression(), f.BlockSize(),
				tc.comp, tc.blockSize)
		}
		if f.BytesUsed() != binary.LittleEndian.Uint64(img[40:]) || f.Inodes() != 9 {
			t.Errorf("%v: bytes used %d, inodes %d", tc.opts, f.BytesUsed(), f.Inodes())
		}
	}
}
