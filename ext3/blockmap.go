package ext3

import (
	"syscall"
)

// Block maps: i_block[0..11] point at data blocks, i_block[12] at an
// indirect block of pointers, i_block[13] at a double and i_block[14] at a
// triple indirect block (Documentation/filesystems/ext4/blockmap.rst).
// A zero pointer is a hole. All functions here expect in.mu held: shared
// for lookups, exclusive for changes.

const (
	nDirect = 12
	indSlot = 12
)

// mapPath splits logical block lblk into the i_block slot and the index
// at each indirect level. depth is the number of indirect levels.
func (f *FS) mapPath(lblk uint64) (depth int, idx [4]uint32, err error) {
	apb := uint64(f.apb)
	switch {
	case lblk < nDirect:
		return 0, [4]uint32{uint32(lblk)}, nil
	case lblk < nDirect+apb:
		l := lblk - nDirect
		return 1, [4]uint32{indSlot, uint32(l)}, nil
	case lblk < nDirect+apb+apb*apb:
		l := lblk - nDirect - apb
		return 2, [4]uint32{indSlot + 1, uint32(l / apb), uint32(l % apb)}, nil
	case lblk < nDirect+apb+apb*apb+apb*apb*apb:
		l := lblk - nDirect - apb - apb*apb
		return 3, [4]uint32{indSlot + 2, uint32(l / apb / apb), uint32(l / apb % apb),
			uint32(l % apb)}, nil
	}
	return 0, idx, syscall.EFBIG
}

// maxBlocks is the number of logical blocks a block map can address.
func (f *FS) maxBlocks() uint64 {
	apb := uint64(f.apb)
	return nDirect + apb + apb*apb + apb*apb*apb
}

// checkPtr validates a block pointer read from disk.
func (f *FS) checkPtr(in *inode, p uint32) error {
	if p != 0 && f.isMetaBlock(p) {
		return corrupt("block map", p, in.ino, "pointer to block %d outside the data area", p)
	}
	return nil
}

// getInd reads indirect block p of inode in.
func (f *FS) getInd(in *inode, p uint32) (*buf, error) {
	if err := f.checkPtr(in, p); err != nil {
		return nil, err
	}
	return f.cache.get(p)
}

// bmap returns the physical block of logical block lblk, 0 for a hole.
func (f *FS) bmap(in *inode, lblk uint64) (uint32, error) {
	depth, idx, err := f.mapPath(lblk)
	if err != nil {
		return 0, nil // beyond the map: a hole
	}
	p := in.blockPtr(int(idx[0]))
	for d := 1; d <= depth && p != 0; d++ {
		b, err := f.getInd(in, p)
		if err != nil {
			return 0, err
		}
		p = le.Uint32(b.data[4*idx[d]:])
		f.cache.put(b)
	}
	if err := f.checkPtr(in, p); err != nil {
		return 0, err
	}
	return p, nil
}

// goalFor picks where to look for a free block for inode in.
func (f *FS) goalFor(in *inode) uint32 {
	if in.goal != 0 {
		return in.goal
	}
	g := (in.ino - 1) / f.sb.InodesPerGroup
	return f.sb.groupFirstBlock(g)
}

// bmapAlloc maps logical block lblk, allocating it (and any missing
// indirect blocks) if it is a hole. When it allocates, it takes up to want
// contiguous blocks for the following logical blocks that are holes in the
// same indirect block. It returns the physical block, the number of
// consecutive logical blocks now mapped contiguously from it, and whether
// they are new (their contents are garbage until written).
// Preconditions: in.mu held exclusively, the op lock held shared.
func (f *FS) bmapAlloc(in *inode, lblk uint64, want int, root bool) (uint32, int, bool, error) {
	depth, idx, err := f.mapPath(lblk)
	if err != nil {
		return 0, 0, false, err
	}
	// Walk down, creating missing indirect blocks.
	var parent *buf
	slot := func(d int) uint32 {
		if d == 0 {
			return in.blockPtr(int(idx[0]))
		}
		return le.Uint32(parent.data[4*idx[d]:])
	}
	setSlot := func(d int, v uint32) {
		if d == 0 {
			in.setBlockPtr(int(idx[0]), v)
			return
		}
		le.PutUint32(parent.data[4*idx[d]:], v)
		f.cache.markDirty(parent)
	}
	defer func() {
		if parent != nil {
			f.cache.put(parent)
		}
	}()
	for d := 0; d < depth; d++ {
		p := slot(d)
		var b *buf
		if p == 0 {
			nb, _, err := f.allocBlocks(f.goalFor(in), 1, root)
			if err != nil {
				return 0, 0, false, err
			}
			in.addBlocks(1, f.bs)
			in.goal = nb + 1
			b = f.cache.getNew(nb)
			f.cache.markDirty(b)
			setSlot(d, nb)
		} else if b, err = f.getInd(in, p); err != nil {
			return 0, 0, false, err
		}
		if parent != nil {
			f.cache.put(parent)
		}
		parent = b
	}

	// Leaf level: an existing block, or a run of holes to fill.
	if p := slot(depth); p != 0 {
		if err := f.checkPtr(in, p); err != nil {
			return 0, 0, false, err
		}
		return p, 1, false, nil
	}
	n := 1
	if depth > 0 {
		for n < want && int(idx[depth])+n < f.apb &&
			le.Uint32(parent.data[4*(int(idx[depth])+n):]) == 0 {
			n++
		}
	} else {
		for n < want && int(idx[0])+n < nDirect && in.blockPtr(int(idx[0])+n) == 0 {
			n++
		}
	}
	start, got, err := f.allocBlocks(f.goalFor(in), n, root)
	if err != nil {
		return 0, 0, false, err
	}
	for i := 0; i < got; i++ {
		if depth == 0 {
			in.setBlockPtr(int(idx[0])+i, start+uint32(i))
		} else {
			le.PutUint32(parent.data[4*(int(idx[depth])+i):], start+uint32(i))
		}
	}
	if depth > 0 {
		f.cache.markDirty(parent)
	}
	in.addBlocks(int64(got), f.bs)
	in.goal = start + uint32(got)
	return start, got, true, nil
}

// freeRange frees every data block with logical number in [from, to) and
// every indirect block left empty. It reports the first error but frees as
// much as it can.
// Preconditions: in.mu held exclusively, the op lock held shared.
func (f *FS) freeRange(in *inode, from, to uint64) error {
	if to > f.maxBlocks() {
		to = f.maxBlocks()
	}
	var firstErr error
	seen := map[uint32]bool{}
	for i := uint64(0); i < nDirect; i++ {
		if i >= from && i < to {
			if p := in.blockPtr(int(i)); p != 0 {
				f.freeData(in, p)
				in.setBlockPtr(int(i), 0)
			}
		}
	}
	base, span := uint64(nDirect), uint64(f.apb)
	for level := 1; level <= 3; level++ {
		s := indSlot + level - 1
		p := in.blockPtr(s)
		if p != 0 && from < base+span && to > base {
			empty, err := f.freeTree(in, p, level, base, span, from, to, seen)
			if err != nil && firstErr == nil {
				firstErr = err
			}
			if empty {
				f.freeData(in, p)
				in.setBlockPtr(s, 0)
			}
		}
		base += span
		span *= uint64(f.apb)
	}
	return firstErr
}

func (f *FS) freeData(in *inode, p uint32) {
	f.freeBlock(p)
	in.addBlocks(-1, f.bs)
}

// freeTree frees the part of [from, to) under indirect block p, which maps
// logical blocks [base, base+span) at the given level (1 = single
// indirect). It reports whether p is left with no pointers.
func (f *FS) freeTree(in *inode, p uint32, level int, base, span, from, to uint64,
	seen map[uint32]bool) (bool, error) {
	if seen[p] {
		// A loop or a shared indirect block: corrupt. Do not walk it
		// again (that could take apb^3 steps) and do not free it twice.
		return false, corrupt("block map", p, in.ino, "indirect block referenced twice")
	}
	seen[p] = true
	b, err := f.getInd(in, p)
	if err != nil {
		// An unreadable or bogus pointer: drop it rather than fail the
		// truncate forever; e2fsck will reclaim whatever it referenced.
		return true, err
	}
	defer f.cache.put(b)
	child := span / uint64(f.apb)
	var firstErr error
	empty := true
	changed := false
	for k := 0; k < f.apb; k++ {
		q := le.Uint32(b.data[4*k:])
		if q == 0 {
			continue
		}
		lo := base + uint64(k)*child
		if lo >= to || lo+child <= from {
			empty = false
			continue
		}
		free := true
		if level > 1 {
			var err error
			free, err = f.freeTree(in, q, level-1, lo, child, from, to, seen)
			if err != nil && firstErr == nil {
				firstErr = err
			}
		} else if f.checkPtr(in, q) != nil {
			free = false // never hand a metadata block to the allocator
			le.PutUint32(b.data[4*k:], 0)
			changed = true
			continue
		}
		if free {
			f.freeData(in, q)
			le.PutUint32(b.data[4*k:], 0)
			changed = true
		} else {
			empty = false
		}
	}
	if changed && !empty {
		f.cache.markDirty(b)
	}
	return empty, firstErr
}

// holeSpan returns how many logical blocks from lblk on are certainly a
// hole because an indirect block on their path is missing (at least 1).
// Preconditions: in.mu held, lblk is a hole.
func (f *FS) holeSpan(in *inode, lblk uint64) uint64 {
	depth, idx, err := f.mapPath(lblk)
	if err != nil || depth == 0 {
		return 1
	}
	apb := uint64(f.apb)
	// span[d] is how many logical blocks one pointer at level d maps.
	spans := [4]uint64{}
	spans[depth] = 1
	for d := depth - 1; d >= 1; d-- {
		spans[d] = spans[d+1] * apb
	}
	p := in.blockPtr(int(idx[0]))
	if p == 0 {
		// The whole tree under this i_block slot is missing.
		rem := uint64(1)
		for d := 1; d <= depth; d++ {
			rem += uint64(apb-1-uint64(idx[d])) * spans[d]
		}
		return rem
	}
	for d := 1; d <= depth; d++ {
		b, err := f.getInd(in, p)
		if err != nil {
			return 1
		}
		p = le.Uint32(b.data[4*idx[d]:])
		f.cache.put(b)
		if p == 0 {
			rem := uint64(1)
			for e := d + 1; e <= depth; e++ {
				rem += uint64(apb-1-uint64(idx[e])) * spans[e]
			}
			return rem
		}
	}
	return 1
}
