// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzOpenWalk opens arbitrary bytes as an image and walks everything
// reachable. Seeds are small real images built with mksquashfs in several
// compressors and layouts; crashers found earlier live in
// testdata/fuzz/FuzzOpenWalk.
func FuzzOpenWalk(f *testing.F) {
	seeds := [][]string{
		{"-comp", "gzip"},
		{"-comp", "lzo"},
		{"-comp", "lz4", "-noI"},
		{"-comp", "zstd", "-b", "4096"},
		{"-comp", "xz", "-no-fragments"},
		{"-comp", "lzma", "-always-use-fragments"},
		{"-noI", "-noD", "-noF", "-noX"},
	}
	for _, opts := range seeds {
		img := smallImage(f, 0, opts...)
		f.Add(img[:binary.LittleEndian.Uint64(img[40:])])
	}
	img := smallImage(f, 600, "-noI", "-noD", "-noF", "-noX")
	f.Add(img[:binary.LittleEndian.Uint64(img[40:])])

	f.Fuzz(func(t *testing.T, data []byte) {
		_ = walkAll(data)
	})
}

// FuzzLZO feeds arbitrary input to the LZO1X decoder and checks it stays
// within its output bound.
func FuzzLZO(f *testing.F) {
	f.Add([]byte{0x11, 0, 0})
	f.Add([]byte{0x15, 'a', 'b', 'c', 'd', 0x11, 0, 0})
	f.Add(bytes.Repeat([]byte{0x20, 0, 0, 0}, 4))
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := lzo1xDecompress(make([]byte, 0, 4096), data)
		if err == nil && len(out) > 4096 {
			t.Fatalf("output %d bytes past the 4096-byte bound", len(out))
		}
	})
}
