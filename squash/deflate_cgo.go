// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

//go:build cgo && !husk_purego

package squash

// libdeflate decodes whole buffers, which is what a squashfs block is, and
// does it about four times faster than a streaming Go inflater
// (BenchmarkZlib, 128 KiB blocks of shared libraries: 690 MB/s against 172
// for klauspost's, -tags husk_purego).
// Decompression is most of the CPU time husk spends serving an image, so
// the gzip images Apptainer builds by default go through it. It is linked
// statically: the binary still runs where libdeflate is not installed.

/*
#cgo LDFLAGS: -l:libdeflate.a
#include <libdeflate.h>
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// deflatePoolSize bounds the idle libdeflate decompressors kept (about
// 10 KB of C memory each); more are made when more blocks decode at once.
const deflatePoolSize = 16

// libdeflateZlib decodes zlib-wrapped deflate blocks with libdeflate. A
// libdeflate decompressor holds its tables between calls and must not be
// shared, so idle ones wait in a bounded free list.
type libdeflateZlib struct {
	free chan *C.struct_libdeflate_decompressor
	// diag decodes a block libdeflate refused again, only to say what is
	// wrong with it: libdeflate has one error for all damage.
	diag zlibDecompressor
}

func newZlibDecompressor() decompressor {
	return &libdeflateZlib{
		free: make(chan *C.struct_libdeflate_decompressor, deflatePoolSize),
	}
}

func (z *libdeflateZlib) name() string { return "libdeflate" }

func (z *libdeflateZlib) decompress(dst, src []byte) ([]byte, error) {
	if len(src) == 0 || cap(dst) == 0 {
		// No buffer to point libdeflate at; never so in an image.
		return z.diag.decompress(dst, src)
	}
	var d *C.struct_libdeflate_decompressor
	select {
	case d = <-z.free:
	default:
		if d = C.libdeflate_alloc_decompressor(); d == nil {
			return nil, fmt.Errorf("gzip: out of memory for a decompressor")
		}
	}
	dst = dst[:cap(dst)]
	var n C.size_t
	r := C.libdeflate_zlib_decompress(d, unsafe.Pointer(&src[0]), C.size_t(len(src)),
		unsafe.Pointer(&dst[0]), C.size_t(len(dst)), &n)
	select {
	case z.free <- d:
	default:
		C.libdeflate_free_decompressor(d)
	}
	switch r {
	case C.LIBDEFLATE_SUCCESS:
		return dst[:n], nil
	case C.LIBDEFLATE_INSUFFICIENT_SPACE:
		// libdeflate takes some Huffman codes zlib refuses, and can run out
		// of room on data that is corrupt well before the block is full
		// (a fuzzed input: 18 KB out, then an invalid code). The Go decoder
		// says which comes first.
		if _, err := z.diag.decompress(dst[:0], src); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("gzip: %w", errOutputTooLarge)
	}
	if _, err := z.diag.decompress(dst[:0], src); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("gzip: invalid zlib data")
}
