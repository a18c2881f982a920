package ext3

// bmapAll returns the physical blocks of logical blocks [0, n) of in, 0
// for holes, as bmap would one by one, but reading each indirect block
// once: mapping a 2 GiB image's 64 MiB journal block by block went
// through the block cache twice per block and was most of the cost of
// opening the image (a container start pays it every time).
func (f *FS) bmapAll(in *inode, n uint64) ([]uint32, error) {
	phys, _, err := f.bmapAllInd(in, n)
	return phys, err
}

// bmapAllInd is bmapAll that also returns the indirect blocks it read.
func (f *FS) bmapAllInd(in *inode, n uint64) (phys, ind []uint32, err error) {
	phys = make([]uint32, 0, n)
	apb := uint64(f.apb)
	// walk appends the blocks below pointer p, an indirect block of the
	// given depth (0: p is a data block).
	var walk func(p uint32, depth int) error
	walk = func(p uint32, depth int) error {
		if depth == 0 || p == 0 {
			if err := f.checkPtr(in, p); err != nil {
				return err
			}
			cover := uint64(1)
			for range depth {
				cover *= apb
			}
			for i := uint64(0); i < cover && uint64(len(phys)) < n; i++ {
				phys = append(phys, p)
			}
			return nil
		}
		b, err := f.getInd(in, p)
		if err != nil {
			return err
		}
		ind = append(ind, p)
		ptrs := make([]uint32, apb)
		for i := range ptrs {
			ptrs[i] = le.Uint32(b.data[4*i:])
		}
		f.cache.put(b)
		for _, q := range ptrs {
			if uint64(len(phys)) == n {
				break
			}
			if err := walk(q, depth-1); err != nil {
				return err
			}
		}
		return nil
	}
	for slot := 0; slot < nDirect+3 && uint64(len(phys)) < n; slot++ {
		depth := max(slot-nDirect+1, 0)
		if err := walk(in.blockPtr(slot), depth); err != nil {
			return nil, nil, err
		}
	}
	for uint64(len(phys)) < n {
		phys = append(phys, 0) // beyond what a block map addresses: a hole
	}
	return phys, ind, nil
}
