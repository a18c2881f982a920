package ext3

import (
	"slices"
)

// Inserting into hashed (htree) directories, as the kernel's
// ext4_dx_add_entry does: the entry goes into the leaf the index
// designates; a full leaf is split in two by hash (do_split) and the new
// leaf is added to the lowest index node; a full index node is split and
// the new node added to the root; a full root moves its entries into a
// new node one level down (indirect_levels 0 -> 1). Every change is one
// step, after which the index is probed again, so each step starts from a
// valid tree. husk never sets the continuation bit: a leaf is split only
// between two different hashes.
//
// What falls back to dropping the index flag (legal: the index blocks
// read as empty entries to a linear reader, and e2fsck accepts it): a
// tree already at two index levels below the root whose nodes are full
// (the kernel needs the largedir feature past that), a leaf whose
// entries all share one hash, and a damaged index.

// dxFrame is one index node on the path from the root to a leaf.
type dxFrame struct {
	lblk  uint64 // logical block of the node (0 for the root)
	off   int    // byte offset of the dx_entry array in the block
	at    int    // index of the entry followed
	count int
	limit int
}

// dxPath is the result of probing the index for a hash.
type dxPath struct {
	frames []dxFrame // root first
	leaf   uint64
	next   uint32 // hash of the entry after the followed one at the last level, 0 if none
	hash   uint32 // of the name probed for
	// version is the hash version, unsigned variants included.
	version uint8
}

// htreePath probes the index for name like htreeProbe and returns the
// whole path. Preconditions: in.mu held.
func (f *FS) htreePath(in *inode, name string) (*dxPath, error) {
	nblocks := f.dirBlocks(in)
	b, p, err := f.dirBlock(in, 0)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, corrupt("htree root", 0, in.ino, "block 0 is a hole")
	}
	d := b.data
	bad := func(format string, args ...any) (*dxPath, error) {
		f.cache.put(b)
		return nil, corrupt("htree", p, in.ino, format, args...)
	}
	if d[24] != 0 || d[25] != 0 || d[26] != 0 || d[27] != 0 || d[29] != 8 {
		return bad("bad dx_root_info")
	}
	version, levels := d[28], int(d[30])
	if version > hashTea || levels > 2 {
		return bad("hash version %d, %d levels", version, levels)
	}
	if f.sb.Flags&flagsUnsignedHash != 0 {
		version += hashUnsign
	}
	path := &dxPath{hash: f.dxHash(name, version), version: version}
	h := path.hash
	fr := dxFrame{lblk: 0, off: 32, limit: (f.bs - 32) / 8}
	for level := 0; ; level++ {
		limit, count := int(le.Uint16(d[fr.off:])), int(le.Uint16(d[fr.off+2:]))
		if limit != fr.limit || count < 1 || count > limit {
			return bad("dx node limit %d count %d at level %d", limit, count, level)
		}
		lo, hi := 1, count-1
		for lo <= hi {
			m := (lo + hi) / 2
			if le.Uint32(d[fr.off+8*m:]) > h {
				hi = m - 1
			} else {
				lo = m + 1
			}
		}
		fr.at, fr.count = lo-1, count
		path.frames = append(path.frames, fr)
		child := uint64(le.Uint32(d[fr.off+8*fr.at+4:]) & 0x0fffffff)
		path.next = 0
		if fr.at+1 < count {
			path.next = le.Uint32(d[fr.off+8*(fr.at+1):])
		}
		if child == 0 || child >= nblocks {
			return bad("dx entry points at block %d of %d", child, nblocks)
		}
		f.cache.put(b)
		if level == levels {
			path.leaf = child
			return path, nil
		}
		if b, p, err = f.dirBlock(in, child); err != nil {
			return nil, err
		}
		if b == nil {
			return nil, corrupt("htree", 0, in.ino, "dx node %d is a hole", child)
		}
		d = b.data
		if le.Uint32(d[0:]) != 0 || f.recLen(d, 0) != f.bs {
			return bad("dx node %d has no empty header entry", child)
		}
		fr = dxFrame{lblk: child, off: 8, limit: (f.bs - 8) / 8}
	}
}

// htreeAdd inserts name into indexed directory in, splitting as needed.
// It reports false, having changed nothing that breaks the index, when
// the caller must drop the index and insert linearly instead.
// Preconditions: in.mu held exclusively, the op lock held shared.
func (f *FS) htreeAdd(in *inode, name string, ino uint32, ft uint8, root bool) (bool, error) {
	// Each round either inserts or makes one structural change that
	// leaves more room; a few rounds always suffice (leaf split, node
	// split, root growth, and a second leaf split for a name that did
	// not fit the half it went to).
	for range 8 {
		path, err := f.htreePath(in, name)
		if err != nil {
			f.logCorrupt(err)
			return false, nil
		}
		// A continuation bit on the next index entry (path.next&1) only
		// tells lookups that equal hashes go on in the next leaf; inserts
		// and splits ignore it, as in the kernel: the entries of that
		// hash stay in the leaf just before it.
		if ok, err := f.addToBlock(in, path.leaf, name, ino, ft); err != nil || ok {
			return ok, err
		}
		low := path.frames[len(path.frames)-1]
		switch {
		case low.count < low.limit:
			ok, err := f.dxSplitLeaf(in, path, root)
			if err != nil || !ok {
				return false, err
			}
		case len(path.frames) == 1:
			if err := f.dxGrowRoot(in, root); err != nil {
				return false, err
			}
		case len(path.frames) == 2 && path.frames[0].count < path.frames[0].limit:
			if err := f.dxSplitNode(in, path, root); err != nil {
				return false, err
			}
		default:
			return false, nil // the index is full
		}
	}
	return false, nil
}

// dxNewBlock appends a zeroed block to directory in and returns its
// logical number and buffer (which the caller must put).
func (f *FS) dxNewBlock(in *inode, root bool) (uint64, *buf, error) {
	n := f.dirBlocks(in)
	p, _, _, err := f.bmapAlloc(in, n, 1, root)
	if err != nil {
		return 0, nil, err
	}
	b := f.cache.getNew(p)
	in.setSize(in.size() + uint64(f.bs))
	if err := f.writeInode(in); err != nil {
		f.cache.put(b)
		return 0, nil, err
	}
	return n, b, nil
}

// dxInsert puts {hash, lblk} after entry fr.at of index node fr.
func (f *FS) dxInsert(in *inode, fr dxFrame, hash uint32, lblk uint64) error {
	b, _, err := f.dirBlock(in, fr.lblk)
	if err != nil {
		return err
	}
	if b == nil {
		return corrupt("htree", 0, in.ino, "dx node %d is a hole", fr.lblk)
	}
	defer f.cache.put(b)
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.data
	pos := fr.off + 8*(fr.at+1)
	end := fr.off + 8*fr.count
	copy(d[pos+8:end+8], d[pos:end])
	le.PutUint32(d[pos:], hash)
	le.PutUint32(d[pos+4:], uint32(lblk))
	le.PutUint16(d[fr.off+2:], uint16(fr.count+1))
	f.cache.markDirty(b)
	return nil
}

// initDxNode makes data an empty interior index node: one unused
// directory entry covering the block, then {limit, count}.
func (f *FS) initDxNode(data []byte, count int) {
	clear(data[:8])
	f.putRecLen(data, 0, f.bs)
	le.PutUint16(data[8:], uint16((f.bs-8)/8))
	le.PutUint16(data[10:], uint16(count))
}

// dxGrowRoot moves the root's entries into a new index node and points
// the root at it, adding a level (dx_insert_block's levels == 0 case).
func (f *FS) dxGrowRoot(in *inode, root bool) error {
	lblk, nb, err := f.dxNewBlock(in, root)
	if err != nil {
		return err
	}
	defer f.cache.put(nb)
	rb, _, err := f.dirBlock(in, 0)
	if err != nil {
		return err
	}
	defer f.cache.put(rb)
	rb.mu.Lock()
	defer rb.mu.Unlock()
	count := int(le.Uint16(rb.data[34:]))
	nb.mu.Lock()
	copy(nb.data[8:8+8*count], rb.data[32:32+8*count])
	f.initDxNode(nb.data, count)
	f.cache.markDirty(nb)
	nb.mu.Unlock()
	le.PutUint16(rb.data[34:], 1)
	le.PutUint32(rb.data[36:], uint32(lblk))
	rb.data[30] = 1 // indirect_levels
	f.cache.markDirty(rb)
	f.dirIndexAppend(in, lblk, nil)
	return nil
}

// dxSplitNode moves the upper half of the full lowest index node into a
// new node and adds that to the root.
func (f *FS) dxSplitNode(in *inode, path *dxPath, root bool) error {
	fr := path.frames[1]
	lblk, nb, err := f.dxNewBlock(in, root)
	if err != nil {
		return err
	}
	defer f.cache.put(nb)
	ob, _, err := f.dirBlock(in, fr.lblk)
	if err != nil {
		return err
	}
	if ob == nil {
		return corrupt("htree", 0, in.ino, "dx node %d is a hole", fr.lblk)
	}
	defer f.cache.put(ob)
	ob.mu.Lock()
	c1 := fr.count / 2
	c2 := fr.count - c1
	hash2 := le.Uint32(ob.data[fr.off+8*c1:])
	nb.mu.Lock()
	copy(nb.data[8:8+8*c2], ob.data[fr.off+8*c1:fr.off+8*fr.count])
	f.initDxNode(nb.data, c2) // overwrites the first hash, now in the root
	f.cache.markDirty(nb)
	nb.mu.Unlock()
	clear(ob.data[fr.off+8*c1 : fr.off+8*fr.count])
	le.PutUint16(ob.data[fr.off+2:], uint16(c1))
	f.cache.markDirty(ob)
	ob.mu.Unlock()
	f.dirIndexAppend(in, lblk, nil)
	return f.dxInsert(in, path.frames[0], hash2, lblk)
}

// dxEnt is a live leaf entry with its hash, for splitting.
type dxEnt struct {
	hash uint32
	name string
	ino  uint32
	ft   uint8
}

// dxSplitLeaf splits the full leaf of path by hash into itself and a new
// block, and adds the new block to the lowest index node. It reports
// false when the leaf cannot be split without a continuation bit.
func (f *FS) dxSplitLeaf(in *inode, path *dxPath, root bool) (bool, error) {
	ob, p, err := f.dirBlock(in, path.leaf)
	if err != nil {
		return false, err
	}
	if ob == nil {
		return false, corrupt("htree", 0, in.ino, "leaf %d is a hole", path.leaf)
	}
	defer f.cache.put(ob)
	var ents []dxEnt
	err = f.walkBlock(in.ino, p, ob.data, func(e dent) bool {
		if e.ino != 0 {
			n := string(e.name)
			h := f.dxHash(n, path.version)
			ents = append(ents, dxEnt{hash: h, name: n, ino: e.ino, ft: e.ft})
		}
		return true
	})
	if err != nil {
		return false, err
	}
	slices.SortStableFunc(ents, func(a, b dxEnt) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		return 0
	})
	split := f.dxSplitPoint(ents)
	if split <= 0 {
		return false, nil
	}
	hash2 := ents[split].hash
	lblk, nb, err := f.dxNewBlock(in, root)
	if err != nil {
		return false, err
	}
	defer f.cache.put(nb)
	ob.mu.Lock()
	f.packLeaf(ob.data, ents[:split])
	f.cache.markDirty(ob)
	ob.mu.Unlock()
	nb.mu.Lock()
	f.packLeaf(nb.data, ents[split:])
	f.cache.markDirty(nb)
	nb.mu.Unlock()
	if idx := in.dir; idx != nil {
		idx.free[path.leaf] = uint16(f.maxSlack(in.ino, p, ob.data))
		for _, e := range ents[split:] {
			idx.names[e.name] = dirLoc{ino: e.ino, ft: e.ft, lblk: uint32(lblk)}
		}
	}
	f.dirIndexAppend(in, lblk, nb)
	return true, f.dxInsert(in, path.frames[len(path.frames)-1], hash2, lblk)
}

// dxSplitPoint picks where to split hash-sorted leaf entries: the upper
// entries that take about half of the space move, as in the kernel's
// do_split, moved down or up to the nearest place where the hash
// changes. It returns 0 when there is no such place.
func (f *FS) dxSplitPoint(ents []dxEnt) int {
	if len(ents) < 2 {
		return 0
	}
	size, split := 0, len(ents)
	for i := len(ents) - 1; i > 0; i-- {
		s := recLenFor(len(ents[i].name))
		if size+s/2 > f.bs/2 {
			break
		}
		size += s
		split = i
	}
	if split == len(ents) {
		split = len(ents) - 1
	}
	for d := 0; d < len(ents); d++ {
		if i := split - d; i > 0 && ents[i].hash != ents[i-1].hash {
			return i
		}
		if i := split + d; i < len(ents) && i > 0 && ents[i].hash != ents[i-1].hash {
			return i
		}
	}
	return 0
}

// packLeaf rewrites data as a leaf holding ents, packed from the start,
// the last entry's rec_len running to the end of the block.
func (f *FS) packLeaf(data []byte, ents []dxEnt) {
	clear(data)
	off := 0
	for i, e := range ents {
		rl := recLenFor(len(e.name))
		if i == len(ents)-1 {
			rl = f.bs - off
		}
		f.writeDent(data, off, e.ino, rl, e.name, e.ft)
		off += rl
	}
	if len(ents) == 0 {
		f.putRecLen(data, 0, f.bs)
	}
}

// dirIndexAppend keeps the in-memory name index in step with a block
// appended to the directory: data is its content (nil for an index node,
// which holds no names).
func (f *FS) dirIndexAppend(in *inode, lblk uint64, b *buf) {
	idx := in.dir
	if idx == nil {
		return
	}
	if uint64(len(idx.free)) != lblk {
		in.dir = nil // out of step: rebuilt on the next lookup
		return
	}
	free := 0
	if b != nil {
		free = f.maxSlack(in.ino, b.nr, b.data)
	}
	idx.free = append(idx.free, uint16(free))
}
