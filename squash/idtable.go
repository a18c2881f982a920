// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import "encoding/binary"

// The id table maps the 16-bit uid/gid indexes stored in inodes to 32-bit
// ids. On disk: metadata blocks of up to 2048 little-endian uint32 ids,
// followed by an array of uint64 section offsets of those blocks; the
// superblock's id_table_start points at that array.
const idsPerBlock = metaSize / 4

// loadTablePointers reads the uint64 block-pointer array of a table with
// count entries of entSize bytes each, and checks every pointer lies
// between the superblock and the array itself (tables are written before
// their pointer arrays).
func (f *FS) loadTablePointers(start uint64, count, entSize int64,
	what string) ([]int64, error) {
	nblocks := (count*entSize + metaSize - 1) / metaSize
	if nblocks*8 > f.end {
		return nil, formatErr(int64(start), what, "%d entries cannot fit in image", count)
	}
	raw := make([]byte, nblocks*8)
	if err := f.readRaw(raw, int64(start), what); err != nil {
		return nil, err
	}
	ptrs := make([]int64, nblocks)
	for i := range ptrs {
		p := binary.LittleEndian.Uint64(raw[i*8:])
		if p < sbSize || p >= start {
			return nil, formatErr(int64(start)+int64(i)*8, what,
				"block pointer %d is %d, outside %d..%d", i, p, sbSize, start)
		}
		ptrs[i] = int64(p)
	}
	return ptrs, nil
}

// loadIDs reads the whole id table; it is at most 256 KiB.
func (f *FS) loadIDs() error {
	n := int64(f.sb.NoIDs)
	ptrs, err := f.loadTablePointers(f.sb.IDTableStart, n, 4, "id table")
	if err != nil {
		return err
	}
	f.ids = make([]uint32, n)
	for i := int64(0); i < n; i += idsPerBlock {
		m, err := f.newMetaReader(ptrs[i/idsPerBlock], 0, "id table")
		if err != nil {
			return err
		}
		for j := i; j < min(n, i+idsPerBlock); j++ {
			if f.ids[j], err = m.u32(); err != nil {
				return err
			}
		}
	}
	return nil
}

// id resolves an id table index.
func (f *FS) id(idx uint16) (uint32, error) {
	if int(idx) >= len(f.ids) {
		return 0, formatErr(-1, "inode", "id index %d past id table of %d",
			idx, len(f.ids))
	}
	return f.ids[idx], nil
}
