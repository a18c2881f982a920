package ext3

// In-memory name index for big directories. A linear ext2 directory needs
// a scan of every block per lookup; with 100,000 entries that is
// thousands of blocks. Once a directory has dirIndexMin blocks its names
// are loaded into a map, kept in step by every change made under the
// directory's lock, and dropped with the in-memory inode.

const dirIndexMin = 8

type dirLoc struct {
	ino  uint32
	lblk uint32 // logical directory block holding the entry
	ft   uint8
}

type dirIndex struct {
	names map[string]dirLoc
	// free[lblk] is the largest entry slack in that block, so inserts skip
	// full blocks without reading them.
	free []uint16
	// fit is the block where the last insert found room; the search
	// for the next one starts there.
	fit int
}

// dirIndexFor returns the name index of directory in, building it when the
// directory is big enough, or nil for small directories.
// Preconditions: in.mu held (shared is enough; building is serialised).
func (f *FS) dirIndexFor(in *inode) (*dirIndex, error) {
	in.idxMu.Lock()
	defer in.idxMu.Unlock()
	if in.dir != nil {
		return in.dir, nil
	}
	n := f.dirBlocks(in)
	if n < dirIndexMin {
		return nil, nil
	}
	idx := &dirIndex{names: make(map[string]dirLoc), free: make([]uint16, n)}
	for lblk := uint64(0); lblk < n; lblk++ {
		b, p, err := f.dirBlock(in, lblk)
		if err != nil {
			return nil, err
		}
		if b == nil {
			lblk += f.holeSpan(in, lblk) - 1
			continue
		}
		m := 0
		err = f.walkBlock(in.ino, p, b.data, func(e dent) bool {
			m = max(m, slack(&e))
			if e.ino != 0 {
				idx.names[string(e.name)] = dirLoc{ino: e.ino, lblk: uint32(lblk), ft: e.ft}
			}
			return true
		})
		f.cache.put(b)
		if err != nil {
			return nil, err
		}
		idx.free[lblk] = uint16(m)
	}
	in.dir = idx
	return idx, nil
}
