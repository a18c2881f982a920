// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// Compressor ids from squashfs_fs.h (ZLIB_COMPRESSION ... ZSTD_COMPRESSION).
const (
	compGzip = 1
	compLzma = 2
	compLzo  = 3
	compXz   = 4
	compLz4  = 5
	compZstd = 6
)

// compressorNames maps compressor ids to the names mksquashfs -comp uses.
var compressorNames = map[uint16]string{
	compGzip: "gzip", compLzma: "lzma", compLzo: "lzo",
	compXz: "xz", compLz4: "lz4", compZstd: "zstd",
}

// errOutputTooLarge is returned when a block decompresses to more than the
// caller's limit (a metadata block or the filesystem block size).
var errOutputTooLarge = errors.New("decompressed data larger than block")

// decompressor expands one squashfs block. decompress appends to dst[:0]
// and must fail rather than write more than cap(dst) bytes. Implementations
// are safe for concurrent use.
type decompressor interface {
	decompress(dst, src []byte) ([]byte, error)
}

// newDecompressor returns the decompressor for a compressor id. maxOut is
// the largest block the image can hold (the block size).
func newDecompressor(id uint16, maxOut int) (decompressor, error) {
	switch id {
	case compGzip:
		return newZlibDecompressor(), nil
	case compXz:
		return xzDecompressor{dictCap: max(maxOut, metaSize)}, nil
	case compLzma:
		return lzmaDecompressor{}, nil
	case compLzo:
		return lzoDecompressor{}, nil
	case compLz4:
		return lz4Decompressor{}, nil
	case compZstd:
		return newZstdDecompressor(maxOut)
	}
	return nil, fmt.Errorf("%w: compressor id %d", ErrUnsupported, id)
}

// readAllLimited reads r into dst up to cap(dst) and fails if more follows.
func readAllLimited(dst []byte, r io.Reader) ([]byte, error) {
	dst = dst[:cap(dst)]
	n := 0
	for n < len(dst) {
		m, err := r.Read(dst[n:])
		n += m
		if err == io.EOF {
			return dst[:n], nil
		}
		if err != nil {
			return nil, err
		}
		if m == 0 {
			// Guard against readers that return (0, nil) forever.
			return nil, io.ErrNoProgress
		}
	}
	var one [1]byte
	for range 8 {
		m, err := r.Read(one[:])
		if m > 0 {
			return nil, errOutputTooLarge
		}
		if err == io.EOF {
			return dst[:n], nil
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, io.ErrNoProgress
}

// zlibDecompressor pools klauspost zlib readers, reset per block. It is
// the decoder of builds without cgo and the reference the tests compare
// libdeflate with.
type zlibDecompressor struct{ pool sync.Pool }

func (z *zlibDecompressor) decompress(dst, src []byte) ([]byte, error) {
	br := bytes.NewReader(src)
	var zr io.ReadCloser
	if v := z.pool.Get(); v != nil {
		zr = v.(io.ReadCloser)
		if err := zr.(zlib.Resetter).Reset(br, nil); err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
	} else {
		r, err := zlib.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		zr = r
	}
	out, err := readAllLimited(dst, zr)
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	z.pool.Put(zr)
	return out, nil
}

// xzDecompressor decodes one xz stream per block. The reader allocates its
// whole dictionary up front (8 MiB by default), so it is capped at the
// block size: a block's matches can never reach further back than that.
type xzDecompressor struct{ dictCap int }

func (x xzDecompressor) decompress(dst, src []byte) ([]byte, error) {
	cfg := xz.ReaderConfig{SingleStream: true, DictCap: x.dictCap}
	r, err := cfg.NewReader(bytes.NewReader(src))
	if err != nil {
		return nil, fmt.Errorf("xz: %w", err)
	}
	out, err := readAllLimited(dst, r)
	if err != nil {
		return nil, fmt.Errorf("xz: %w", err)
	}
	return out, nil
}

// lzmaDecompressor decodes the legacy "lzma alone" format (5 property bytes
// and a 64-bit size header) that squashfs-tools writes per block.
type lzmaDecompressor struct{}

func (lzmaDecompressor) decompress(dst, src []byte) ([]byte, error) {
	if len(src) < 13 {
		return nil, fmt.Errorf("lzma: header truncated")
	}
	// squashfs-tools stores the real uncompressed size in the header;
	// checking it first bounds the dictionary the decoder allocates.
	if size := binary.LittleEndian.Uint64(src[5:13]); size > uint64(cap(dst)) {
		return nil, fmt.Errorf("lzma: header size %d: %w", int64(size),
			errOutputTooLarge)
	}
	cfg := lzma.ReaderConfig{DictCap: 1 << 28}
	r, err := cfg.NewReader(bytes.NewReader(src))
	if err != nil {
		return nil, fmt.Errorf("lzma: %w", err)
	}
	out, err := readAllLimited(dst, r)
	if err != nil {
		return nil, fmt.Errorf("lzma: %w", err)
	}
	return out, nil
}

// lz4Decompressor decodes raw lz4 blocks (not frames).
type lz4Decompressor struct{}

func (lz4Decompressor) decompress(dst, src []byte) ([]byte, error) {
	n, err := lz4.UncompressBlock(src, dst[:cap(dst)])
	if err != nil {
		return nil, fmt.Errorf("lz4: %w", err)
	}
	return dst[:n], nil
}

// lzoDecompressor decodes LZO1X blocks with the in-house decoder.
type lzoDecompressor struct{}

func (lzoDecompressor) decompress(dst, src []byte) ([]byte, error) {
	out, err := lzo1xDecompress(dst[:0], src)
	if err != nil {
		return nil, fmt.Errorf("lzo: %w", err)
	}
	return out, nil
}

// zstdDecompressor shares one klauspost decoder: DecodeAll is safe for
// concurrent use and keeps up to GOMAXPROCS internal decoders pooled.
type zstdDecompressor struct{ d *zstd.Decoder }

func newZstdDecompressor(maxOut int) (*zstdDecompressor, error) {
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
		zstd.WithDecoderLowmem(false),
		// A frame never holds more than a block; refuse larger claims so a
		// corrupt header cannot make the decoder allocate.
		zstd.WithDecoderMaxMemory(uint64(max(maxOut, metaSize))*2),
		zstd.WithDecoderMaxWindow(uint64(max(maxOut, metaSize))*2))
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	return &zstdDecompressor{d: d}, nil
}

func (z *zstdDecompressor) decompress(dst, src []byte) ([]byte, error) {
	limit := cap(dst)
	out, err := z.d.DecodeAll(src, dst[:0])
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	if len(out) > limit {
		return nil, fmt.Errorf("zstd: %w", errOutputTooLarge)
	}
	return out, nil
}
