package ext3

import (
	"syscall"
)

// Directory file types (ext2_dir_entry_2.file_type).
const (
	ftUnknown = 0
	ftReg     = 1
	ftDir     = 2
	ftChr     = 3
	ftBlk     = 4
	ftFifo    = 5
	ftSock    = 6
	ftSymlink = 7
)

var modeByFT = [8]uint32{0, sIFREG, sIFDIR, sIFCHR, sIFBLK, sIFIFO, sIFSOCK, sIFLNK}

func ftOf(mode uint32) uint8 {
	for i, m := range modeByFT {
		if i > 0 && m == mode&sIFMT {
			return uint8(i)
		}
	}
	return ftUnknown
}

// DirEntry is one directory entry as returned by ReadDir.
type DirEntry struct {
	Name string
	Ino  uint32
	Type uint32 // S_IF* bits, 0 if unknown
}

const maxNameLen = 255

// recLenFor is the space an entry with an n-byte name needs: an 8-byte
// header plus the name, rounded up to 4 bytes (EXT2_DIR_REC_LEN).
func recLenFor(n int) int { return (8 + n + 3) &^ 3 }

// dent is a decoded ext2_dir_entry_2 within a block.
type dent struct {
	off    int
	ino    uint32
	recLen int
	name   []byte // aliases the block data
	ft     uint8
}

func (f *FS) recLen(data []byte, off int) int {
	rl := int(le.Uint16(data[off+4:]))
	if f.bs >= 65536 && (rl == 65535 || rl == 0) {
		return f.bs
	}
	return rl
}

func (f *FS) putRecLen(data []byte, off, rl int) {
	if rl == 65536 {
		rl = 65535
	}
	le.PutUint16(data[off+4:], uint16(rl))
}

// walkBlock calls fn for each entry of a directory block, validating the
// chain of rec_len values; fn returns false to stop.
func (f *FS) walkBlock(dir, blk uint32, data []byte, fn func(e dent) bool) error {
	var e dent
	for off := 0; off < len(data); off += e.recLen {
		if off+8 > len(data) {
			return corrupt("directory entry", blk, dir, "entry at offset %d overruns the block", off)
		}
		e.off = off
		e.ino = le.Uint32(data[off:])
		e.recLen = f.recLen(data, off)
		n := int(data[off+6])
		e.ft = data[off+7]
		if !f.filetype {
			n |= int(e.ft) << 8
			e.ft = ftUnknown
		}
		switch {
		case e.recLen < 8 || e.recLen%4 != 0 || off+e.recLen > len(data):
			return corrupt("directory entry", blk, dir, "rec_len %d at offset %d", e.recLen, off)
		case 8+n > e.recLen:
			return corrupt("directory entry", blk, dir, "name_len %d at offset %d exceeds rec_len %d",
				n, off, e.recLen)
		case e.ino > f.sb.InodesCount:
			return corrupt("directory entry", blk, dir, "inode %d at offset %d out of range", e.ino, off)
		}
		e.name = data[off+8 : off+8+n]
		if !fn(e) {
			return nil
		}
	}
	return nil
}

func (f *FS) writeDent(data []byte, off int, ino uint32, recLen int, name string, ft uint8) {
	le.PutUint32(data[off:], ino)
	f.putRecLen(data, off, recLen)
	data[off+6] = byte(len(name))
	if f.filetype {
		data[off+7] = ft
	} else {
		data[off+7] = byte(len(name) >> 8)
	}
	copy(data[off+8:], name)
}

func (f *FS) dirBlocks(in *inode) uint64 { return in.size() / uint64(f.bs) }

// dirBlock returns the buffer holding logical block lblk of directory in,
// or nil for a hole.
func (f *FS) dirBlock(in *inode, lblk uint64) (*buf, uint32, error) {
	p, err := f.bmap(in, lblk)
	if err != nil || p == 0 {
		return nil, 0, err
	}
	b, err := f.cache.get(p)
	return b, p, err
}

// forEachEntry walks every entry of directory in; fn returns false to stop.
// Preconditions: in.mu held.
func (f *FS) forEachEntry(in *inode, fn func(lblk uint64, e dent) bool) error {
	n := f.dirBlocks(in)
	for lblk := uint64(0); lblk < n; lblk++ {
		b, p, err := f.dirBlock(in, lblk)
		if err != nil {
			return err
		}
		if b == nil {
			lblk += f.holeSpan(in, lblk) - 1
			continue
		}
		stop := false
		err = f.walkBlock(in.ino, p, b.data, func(e dent) bool {
			if !fn(lblk, e) {
				stop = true
				return false
			}
			return true
		})
		f.cache.put(b)
		if err != nil || stop {
			return err
		}
	}
	return nil
}

// dirLookup finds name in directory in and returns its inode number and
// file type. Preconditions: in.mu held.
func (f *FS) dirLookup(in *inode, name string) (uint32, uint8, error) {
	if idx, err := f.dirIndexFor(in); err != nil {
		return 0, 0, err
	} else if idx != nil {
		if l, ok := idx.names[name]; ok {
			return l.ino, l.ft, nil
		}
		return 0, 0, syscall.ENOENT
	}
	if f.isIndexed(in) {
		ino, ft, err := f.htreeLookup(in, name)
		if err == nil || err == syscall.ENOENT {
			return ino, ft, err
		}
		// A damaged index: fall back to a linear scan, which sees every
		// leaf block. The error is logged, not fatal.
		f.logCorrupt(err)
	}
	var ino uint32
	var ft uint8
	err := f.forEachEntry(in, func(_ uint64, e dent) bool {
		if e.ino != 0 && string(e.name) == name {
			ino, ft = e.ino, e.ft
			return false
		}
		return true
	})
	if err == nil && ino == 0 {
		err = syscall.ENOENT
	}
	return ino, ft, err
}

// dirEmpty reports whether directory in holds nothing but "." and "..".
func (f *FS) dirEmpty(in *inode) (bool, error) {
	empty := true
	err := f.forEachEntry(in, func(_ uint64, e dent) bool {
		if e.ino != 0 && string(e.name) != "." && string(e.name) != ".." {
			empty = false
			return false
		}
		return true
	})
	return empty, err
}

// dirAdd inserts the entry name -> ino into directory in.
// Preconditions: in.mu held exclusively, the op lock held shared, name not present.
func (f *FS) dirAdd(in *inode, name string, ino uint32, ft uint8, root bool) error {
	need := recLenFor(len(name))
	if f.isIndexed(in) {
		ok, err := f.htreeAdd(in, name, ino, ft, root)
		if err != nil || ok {
			return err
		}
		// The index cannot take the entry (htree_insert.go says when), so
		// turn the directory into a plain linear one: clearing
		// EXT2_INDEX_FL is legal, the index blocks read as empty entries
		// to a linear reader.
		f.log.Debug("ext3: dropping the hash index of a directory", "inode", in.ino,
			"adding", name)
		in.set32(iFlags, in.flags()&^flIndex)
		if err := f.writeInode(in); err != nil {
			return err
		}
	}
	idx, err := f.dirIndexFor(in)
	if err != nil {
		return err
	}
	n := f.dirBlocks(in)
	start := uint64(0)
	if idx != nil && uint64(idx.fit) < n {
		start = uint64(idx.fit)
	}
	for i := uint64(0); i < n; i++ {
		lblk := (start + i) % n
		if idx != nil && int(idx.free[lblk]) < need {
			continue
		}
		done, err := f.addToBlock(in, lblk, name, ino, ft)
		if err != nil || done {
			if done && idx != nil {
				idx.fit = int(lblk)
			}
			return err
		}
	}

	// No room: append a block.
	p, _, _, err := f.bmapAlloc(in, n, 1, root)
	if err != nil {
		return err
	}
	b := f.cache.getNew(p)
	f.writeDent(b.data, 0, ino, f.bs, name, ft)
	f.cache.markDirty(b)
	f.cache.put(b)
	in.setSize(in.size() + uint64(f.bs))
	if idx != nil {
		idx.free = append(idx.free, uint16(f.bs-need))
		idx.names[name] = dirLoc{ino: ino, ft: ft, lblk: uint32(n)}
		idx.fit = int(n)
	}
	return f.writeInode(in)
}

// slack is the room for a new entry that entry e offers.
func slack(e *dent) int {
	if e.ino == 0 {
		return e.recLen
	}
	return e.recLen - recLenFor(len(e.name))
}

// addToBlock puts the entry into block lblk if it fits.
func (f *FS) addToBlock(in *inode, lblk uint64, name string, ino uint32, ft uint8) (bool, error) {
	b, p, err := f.dirBlock(in, lblk)
	if err != nil || b == nil {
		return false, err
	}
	defer f.cache.put(b)
	need := recLenFor(len(name))
	var at *dent
	err = f.walkBlock(in.ino, p, b.data, func(e dent) bool {
		if slack(&e) >= need {
			c := e
			at = &c
			return false
		}
		return true
	})
	if err != nil || at == nil {
		if in.dir != nil && err == nil {
			in.dir.free[lblk] = 0
		}
		return false, err
	}
	f.insertAt(b.data, at, name, ino, ft)
	f.cache.markDirty(b)
	if in.dir != nil {
		in.dir.names[name] = dirLoc{ino: ino, ft: ft, lblk: uint32(lblk)}
		in.dir.free[lblk] = uint16(f.maxSlack(in.ino, p, b.data))
	}
	return true, nil
}

// insertAt writes a new entry into the slack of entry at.
func (f *FS) insertAt(data []byte, at *dent, name string, ino uint32, ft uint8) {
	if at.ino == 0 {
		f.writeDent(data, at.off, ino, at.recLen, name, ft)
		return
	}
	used := recLenFor(len(at.name))
	f.putRecLen(data, at.off, used)
	f.writeDent(data, at.off+used, ino, at.recLen-used, name, ft)
}

func (f *FS) maxSlack(dir, blk uint32, data []byte) int {
	m := 0
	f.walkBlock(dir, blk, data, func(e dent) bool {
		m = max(m, slack(&e))
		return true
	})
	return m
}

// dirRemove deletes entry name from directory in, like the kernel's
// ext4_generic_delete_entry: the previous entry absorbs it, or the first
// entry of a block becomes unused (inode 0).
// Preconditions: in.mu held exclusively, the op lock held shared.
func (f *FS) dirRemove(in *inode, name string) error {
	return f.dirModify(in, name, func(data []byte, prev, e *dent) {
		if prev != nil {
			f.putRecLen(data, prev.off, prev.recLen+e.recLen)
		} else {
			le.PutUint32(data[e.off:], 0)
		}
		if in.dir != nil {
			delete(in.dir.names, name)
		}
	})
}

// dirRetarget points existing entry name at another inode (rename over an
// existing name, or ".." of a moved directory).
func (f *FS) dirRetarget(in *inode, name string, ino uint32, ft uint8) error {
	return f.dirModify(in, name, func(data []byte, _, e *dent) {
		le.PutUint32(data[e.off:], ino)
		if f.filetype {
			data[e.off+7] = ft
		}
		if in.dir != nil {
			l := in.dir.names[name]
			l.ino, l.ft = ino, ft
			in.dir.names[name] = l
		}
	})
}

// dirModify finds entry name and applies change to its block.
func (f *FS) dirModify(in *inode, name string, change func(data []byte, prev, e *dent)) error {
	var first, last uint64 = 0, f.dirBlocks(in)
	if _, err := f.dirIndexFor(in); err != nil {
		return err
	}
	if in.dir != nil && name != "." && name != ".." {
		l, ok := in.dir.names[name]
		if !ok {
			return syscall.ENOENT
		}
		first, last = uint64(l.lblk), uint64(l.lblk)+1
	} else if name != "." && name != ".." && f.isIndexed(in) {
		if lblk, err := f.htreeLeaf(in, name); err == nil {
			first, last = lblk, lblk+1
		}
	}
	for lblk := first; lblk < last; lblk++ {
		b, p, err := f.dirBlock(in, lblk)
		if err != nil {
			return err
		}
		if b == nil {
			continue
		}
		// Entries are copied by value as the walk goes: a pointer kept
		// across iterations would put a copy of each on the heap.
		var cur, before dent
		hit, started := false, false
		err = f.walkBlock(in.ino, p, b.data, func(e dent) bool {
			if e.ino != 0 && string(e.name) == name {
				cur, hit = e, true
				return false
			}
			before, started = e, true
			return true
		})
		if err == nil && hit {
			var prev *dent
			if started {
				prev = &before
			}
			change(b.data, prev, &cur)
			f.cache.markDirty(b)
			if in.dir != nil {
				in.dir.free[lblk] = uint16(f.maxSlack(in.ino, p, b.data))
			}
		}
		f.cache.put(b)
		if err != nil || hit {
			return err
		}
	}
	return syscall.ENOENT
}

// initDirBlock fills a new directory's first block with "." and "..".
func (f *FS) initDirBlock(data []byte, self, parent uint32) {
	f.writeDent(data, 0, self, 12, ".", ftDir)
	f.writeDent(data, 12, parent, f.bs-12, "..", ftDir)
}

// readDir lists directory in without "." and "..".
func (f *FS) readDir(in *inode) ([]DirEntry, error) {
	var out []DirEntry
	err := f.forEachEntry(in, func(_ uint64, e dent) bool {
		if e.ino == 0 || string(e.name) == "." || string(e.name) == ".." {
			return true
		}
		out = append(out, DirEntry{Name: string(e.name), Ino: e.ino, Type: modeByFT[e.ft&7]})
		return true
	})
	return out, err
}
