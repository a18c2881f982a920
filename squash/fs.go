// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"fmt"
	"io"
	"sync/atomic"
)

// Options tunes an [FS]. A nil *Options means defaults. Every cache is
// bounded; together they stay within MemoryBytes unless a field below
// sets one cache's size explicitly.
type Options struct {
	// MemoryBytes is the budget for all caches together; 0 means 32 MiB.
	// Caches whose own size is not set get a share of it: data and
	// fragment blocks 1/2, metadata blocks 1/4, parsed inodes 1/8 and
	// parsed directory listings and indexes 1/8. Outside the budget are
	// decoder state (zstd: about 300 KiB a core), one pooled input buffer
	// per block being decoded, decoded blocks evicted while a reader still
	// copies from them, freed block buffers kept for reuse until the
	// collector takes them, the block lists of cached inodes (12 bytes
	// per data block of a file that was read), and the last
	// listing too large for the directory cache, kept aside up to four
	// times the directory share (a 100,000-entry listing: about 5.5 MB).
	MemoryBytes int64
	// CacheBytes is the budget for decompressed data and fragment blocks;
	// 0 means half of MemoryBytes.
	CacheBytes int64
	// MetaCacheBytes is the budget for decompressed metadata blocks;
	// 0 means a quarter of MemoryBytes.
	MetaCacheBytes int64
	// Readahead is how many data blocks past the current one are
	// decompressed in the background while a file is read sequentially;
	// 0 means 2, a negative value turns readahead off (and Prefetch).
	Readahead int
	// Prefetch is the largest file decoded whole in the background when
	// it is read out of order (see readahead.go); 0 means 8 MiB, capped at
	// half of CacheBytes; a negative value turns it off.
	Prefetch int64
}

// Defaults for [Options]: what zero fields mean. A FUSE server's kernel
// keeps the pages of what was read, so the data cache mostly serves
// fragment blocks shared by the next files, blocks a reader has not
// finished, and whole-file prefetches, which must fit in half of it:
// with 16 MiB python's 6.8 MB executable was no longer prefetched.
const (
	DefaultMemoryBytes = 32 << 20
	DefaultReadahead   = 2
)

// minCacheBytes keeps every cache usable when budgets are tiny.
const minCacheBytes = 64 << 10

// budgets is how Options split into per-cache sizes.
type budgets struct {
	data, meta, inodes, dirs int64
	readahead                int
	prefetch                 int64
}

func (o *Options) budgets() budgets {
	var v Options
	if o != nil {
		v = *o
	}
	if v.MemoryBytes <= 0 {
		v.MemoryBytes = DefaultMemoryBytes
	}
	b := budgets{data: v.CacheBytes, meta: v.MetaCacheBytes,
		inodes: v.MemoryBytes / 8, dirs: v.MemoryBytes / 8, readahead: v.Readahead,
		prefetch: v.Prefetch}
	if b.data <= 0 {
		b.data = v.MemoryBytes / 2
	}
	if b.meta <= 0 {
		b.meta = v.MemoryBytes / 4
	}
	b.data, b.meta = max(b.data, minCacheBytes), max(b.meta, minCacheBytes)
	b.inodes, b.dirs = max(b.inodes, minCacheBytes), max(b.dirs, minCacheBytes)
	switch {
	case b.readahead == 0:
		b.readahead = DefaultReadahead
	case b.readahead < 0:
		b.readahead = 0
	}
	if b.prefetch == 0 {
		b.prefetch = maxPrefetch
	}
	b.prefetch = min(b.prefetch, b.data/2)
	return b
}

// Ref is an inode reference as stored on disk: the start of the inode's
// metadata block relative to the inode table, shifted left 16, ORed with
// the inode's offset inside the decompressed block.
type Ref uint64

// FS is an open squashfs image. All methods are safe for concurrent use.
type FS struct {
	r    io.ReaderAt
	end  int64 // bytes_used: nothing of the image lies at or past it
	sb   *superblock
	dec  decompressor
	meta *lru[*metaBlock] // metadata blocks by section offset
	data *lru[*block]     // data and fragment blocks by section offset

	inodes *lru[*Inode]      // parsed inodes by Ref
	dirs   *lru[*dirListing] // parsed directory listings by Ref
	// bigDir holds the last listing too large for a shard of dirs (see
	// listing), up to bigDirMax in cost.
	bigDir    atomic.Pointer[bigListing]
	bigDirMax int64

	ids       []uint32 // id table: uid/gid values by index
	fragIndex []int64  // section offsets of fragment table metadata blocks
	xattr     *xattrTable

	ra        *readahead // background decompression for sequential reads
	blockPool blockPool  // buffers of decoded blocks, reused (block.go)
	budget    int64      // the caches' sizes summed (MemoryBytes)

	dirListLoads  atomic.Int64  // full listings parsed; read by tests
	dirIndexLoads atomic.Int64  // directory indexes parsed; read by tests
	dirRangeLoads atomic.Int64  // directory index ranges parsed; read by tests
	blockLoads    atomic.Int64  // data and fragment blocks decoded; read by tests
	raStarts      atomic.Int64  // background decodes started; read by tests
	lastFrag      atomic.Uint32 // fragment block of the last tail read (readahead.go)
	fragStreak    atomic.Int32  // steps to the next fragment block in a row (readahead.go)
	prefetches    atomic.Int64  // whole-file prefetches started; read by tests
	xattrOOLRefs  atomic.Int64  // out-of-line xattr values followed; read by tests
}

// Open validates the superblock and tables of the squashfs image held in the
// first size bytes of r and returns a ready filesystem. r is read with ReadAt
// only and never copied; wrap a partition with io.NewSectionReader.
func Open(r io.ReaderAt, size int64, opts *Options) (*FS, error) {
	sb, err := readSuperblock(r, size)
	if err != nil {
		return nil, err
	}
	b := opts.budgets()
	f := &FS{r: r, end: int64(sb.BytesUsed), sb: sb,
		meta:   newLRU[*metaBlock](b.meta, metaSize),
		data:   newLRU[*block](b.data, int64(sb.BlockSize)),
		inodes: newLRU[*Inode](b.inodes, inodeCost),
		dirs:   newLRU[*dirListing](b.dirs, maxCachedListing),
		// One large listing may take four times the directory budget:
		// a 100,000-entry directory costs about 5.5 MB.
		bigDirMax: 4 * b.dirs,
		ra:        newReadahead(b.readahead, b.prefetch),
		blockPool: blockPool{size: int(sb.BlockSize)},
		budget:    b.data + b.meta + b.inodes + b.dirs,
	}
	if f.dec, err = newDecompressor(sb.Compression, int(sb.BlockSize)); err != nil {
		return nil, &FormatError{Offset: 20, What: "superblock", Err: err}
	}
	if err := f.checkCompressorOptions(); err != nil {
		return nil, err
	}
	if err := f.loadIDs(); err != nil {
		return nil, err
	}
	if err := f.loadFragmentIndex(); err != nil {
		return nil, err
	}
	if err := f.loadXattrTable(); err != nil {
		return nil, err
	}

	// The root must parse and be a directory, or nothing else will work.
	root, err := f.Inode(f.Root())
	if err != nil {
		return nil, err
	}
	if root.Mode&modeTypeMask != modeDir {
		return nil, formatErr(32, "superblock", "root inode is not a directory (mode %o)",
			root.Mode)
	}
	return f, nil
}

// checkCompressorOptions reads the optional compressor options block that
// follows the superblock. The options only tune compression, so they are
// read to validate the block and otherwise ignored, except where they would
// change the stream format.
func (f *FS) checkCompressorOptions() error {
	if f.sb.Flags&flagCompressorOptions == 0 {
		return nil
	}
	b, err := f.loadMetaBlock(sbSize)
	if err != nil {
		return wrapFormat(sbSize, "compressor options", err)
	}
	if f.sb.Compression == compLz4 && len(b.data) >= 4 {
		// squashfs-tools only writes the legacy lz4 block format (version 1).
		if v := uint32(b.data[0]) | uint32(b.data[1])<<8; v != 1 {
			return unsupportedErr(sbSize, "compressor options", "lz4 format version %d",
				v)
		}
	}
	return nil
}

// readRaw reads len(p) bytes at section offset off, refusing any range that
// is not inside the image.
func (f *FS) readRaw(p []byte, off int64, what string) error {
	if off < 0 || off > f.end || int64(len(p)) > f.end-off {
		return formatErr(off, what, "%d bytes at %d extend past image end %d",
			len(p), off, f.end)
	}
	// io.ReaderAt may report io.EOF together with a full read at the end.
	if n, err := f.r.ReadAt(p, off); n < len(p) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return wrapFormat(off, what, fmt.Errorf("read: %w", err))
	}
	return nil
}

// Root returns the reference of the root directory inode.
func (f *FS) Root() Ref { return Ref(f.sb.RootInode) }

// BlockSize returns the data block size in bytes.
func (f *FS) BlockSize() uint32 { return f.sb.BlockSize }

// MemoryBytes returns the caches' budget: what Options asked for, or
// the default.
func (f *FS) MemoryBytes() int64 { return f.budget }

// Inodes returns the number of inodes in the image.
func (f *FS) Inodes() uint32 { return f.sb.Inodes }

// BytesUsed returns the size of the image in bytes, without padding.
func (f *FS) BytesUsed() uint64 { return f.sb.BytesUsed }

// Compression returns the compressor name as mksquashfs -comp spells it.
func (f *FS) Compression() string { return compressorNames[f.sb.Compression] }

// Decoder names the library that decodes the image's blocks.
func (f *FS) Decoder() string {
	if d, ok := f.dec.(interface{ name() string }); ok {
		return d.name()
	}
	return "Go"
}

// ModTime returns the image creation time in seconds since the epoch.
func (f *FS) ModTime() int64 { return int64(f.sb.MkfsTime) }
