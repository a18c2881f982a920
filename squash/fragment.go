// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"encoding/binary"
	"sync"
)

// Fragment blocks pack the tail ends of files (and whole small files). The
// fragment table is an array of 16-byte entries (struct
// squashfs_fragment_entry: start_block u64, size u32, unused u32) in
// metadata blocks of 512 entries, indexed by a uint64 pointer array at
// fragment_table_start.
const (
	fragEntrySize  = 16
	fragsPerBlock  = metaSize / fragEntrySize
	noFragment     = 0xffffffff
	blockUncompBit = 1 << 24 // in data block and fragment sizes
	blockSizeMask  = blockUncompBit - 1
)

// loadFragmentIndex reads the fragment table's pointer array; the entries
// themselves are read on demand through the metadata cache.
func (f *FS) loadFragmentIndex() error {
	if f.sb.Fragments == 0 {
		return nil
	}
	ptrs, err := f.loadTablePointers(f.sb.FragTableStart, int64(f.sb.Fragments),
		fragEntrySize, "fragment table")
	if err != nil {
		return err
	}
	f.fragIndex = ptrs
	return nil
}

// fragmentBlock returns fragment block idx, decompressed and cached. The
// caller releases it.
func (f *FS) fragmentBlock(idx uint32) (*block, error) {
	start, size, err := f.fragmentEntry(idx)
	if err != nil {
		return nil, err
	}
	// A fragment block never holds more than one block of data.
	return f.dataBlock(start, size, int(f.sb.BlockSize), true, "fragment")
}

// fragmentEntry returns where fragment block idx is stored and its on-disk
// size word.
func (f *FS) fragmentEntry(idx uint32) (start int64, size uint32, err error) {
	const what = "fragment"
	if idx >= f.sb.Fragments {
		return 0, 0, formatErr(-1, what, "index %d past fragment table of %d entries",
			idx, f.sb.Fragments)
	}
	m, err := f.newMetaReader(f.fragIndex[idx/fragsPerBlock],
		int(idx%fragsPerBlock)*fragEntrySize, what)
	if err != nil {
		return 0, 0, err
	}
	var e [fragEntrySize]byte
	if err := m.read(e[:]); err != nil {
		return 0, 0, err
	}
	return int64(binary.LittleEndian.Uint64(e[0:])), binary.LittleEndian.Uint32(e[8:]), nil
}

// rawBuf holds the compressed bytes of one block while it is decoded;
// pooled (across all open images) so block reads do not allocate.
type rawBuf struct{ b []byte }

var rawPool = sync.Pool{New: func() any { return new(rawBuf) }}

// getRaw returns a pooled buffer of n bytes. Return it with rawPool.Put.
func (f *FS) getRaw(n int) *rawBuf {
	r := rawPool.Get().(*rawBuf)
	if cap(r.b) < n {
		r.b = make([]byte, max(n, int(f.sb.BlockSize)))
	}
	r.b = r.b[:n]
	return r
}

// dataBlock returns the decompressed block stored at section offset start
// with on-disk size word size (bit 24: stored uncompressed), held for the
// caller, who releases it. want is the exact expected decompressed length;
// with upTo (fragment blocks) it is an upper bound.
func (f *FS) dataBlock(start int64, size uint32, want int, upTo bool,
	what string) (*block, error) {
	n := int64(size & blockSizeMask)
	if size&^(blockUncompBit|blockSizeMask) != 0 || n == 0 || n > int64(f.sb.BlockSize) {
		return nil, formatErr(start, what, "bad block size word %#x", size)
	}
	if start < sbSize || start > f.end-n {
		return nil, formatErr(start, what, "block of %d bytes outside image", n)
	}
	blk, err := f.data.getOrLoad(uint64(start), func() (*block, int64, error) {
		f.blockLoads.Add(1)
		blk := f.blockPool.get()
		cost := int64(cap(blk.b)) + lruEntryCost
		if size&blockUncompBit != 0 {
			blk.b = blk.b[:n]
			if err := f.readRaw(blk.b, start, what); err != nil {
				blk.pool.put(blk)
				return nil, 0, err
			}
			return blk, cost, nil
		}
		raw := f.getRaw(int(n))
		defer rawPool.Put(raw)
		if err := f.readRaw(raw.b, start, what); err != nil {
			blk.pool.put(blk)
			return nil, 0, err
		}
		// A block never decodes to more than the block size, the
		// buffer's capacity; the length is checked below.
		out, err := f.dec.decompress(blk.b[:0], raw.b)
		if err != nil {
			blk.pool.put(blk)
			return nil, 0, wrapFormat(start, what, err)
		}
		if len(out) > 0 && &out[0] != &blk.b[:1][0] {
			// Decoded elsewhere (a decoder that reallocates): keep that.
			blk.pool.put(blk)
			return &block{b: out}, int64(cap(out)) + lruEntryCost, nil
		}
		blk.b = out
		return blk, cost, nil
	})
	if err != nil {
		return nil, err
	}
	// Checked after the cache too: a corrupt image can point two inodes
	// with different expectations at one block.
	if n := len(blk.b); n != want && !(upTo && n <= want) {
		blk.release()
		return nil, formatErr(start, what, "block holds %d bytes, want %d", n, want)
	}
	return blk, nil
}
