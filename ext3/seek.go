package ext3

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// Lseek finds data or holes in regular file ino for lseek(2)'s SEEK_DATA
// and SEEK_HOLE: the first offset at or after off that is in an allocated
// block (data) or in an unallocated one, or the end of the file (a hole:
// every file ends in an implicit one). ENXIO when off is at or past the
// end, or no data follows it.
func (f *FS) Lseek(ino uint32, off int64, whence int) (int64, error) {
	if whence != unix.SEEK_DATA && whence != unix.SEEK_HOLE {
		return 0, syscall.EINVAL
	}
	in, release, err := f.fileRLocked(ino)
	if err != nil {
		return 0, err
	}
	defer release()
	size := int64(in.size())
	if off < 0 || off >= size {
		return 0, syscall.ENXIO
	}
	bs := int64(f.bs)
	for lblk := uint64(off / bs); int64(lblk)*bs < size; {
		mapped, run, err := f.leafRun(in, lblk)
		if err != nil {
			return 0, err
		}
		if mapped == (whence == unix.SEEK_DATA) {
			return max(off, int64(lblk)*bs), nil
		}
		lblk += run
	}
	if whence == unix.SEEK_HOLE {
		return size, nil
	}
	return 0, syscall.ENXIO
}

// leafRun reports whether logical block lblk of in is mapped, and how many
// blocks from it on are alike up to the end of the pointer array that
// maps it (the i_block slots or a last-level indirect block): one walk
// down the tree per array, not per block, so that seeking through a
// large file is cheap. A missing indirect block makes a hole as long as
// the subtree it would head (holeSpan).
// Preconditions: in.mu held.
func (f *FS) leafRun(in *inode, lblk uint64) (bool, uint64, error) {
	depth, idx, err := f.mapPath(lblk)
	if err != nil {
		return false, 1 << 62, nil // past what the map can address: a hole to the end
	}
	if depth == 0 {
		first := in.blockPtr(int(idx[0])) != 0
		n := uint64(1)
		for i := int(idx[0]) + 1; i < nDirect && (in.blockPtr(i) != 0) == first; i++ {
			n++
		}
		return first, n, nil
	}
	p := in.blockPtr(int(idx[0]))
	for d := 1; d <= depth; d++ {
		if p == 0 {
			return false, f.holeSpan(in, lblk), nil
		}
		b, err := f.getInd(in, p)
		if err != nil {
			return false, 0, err
		}
		if d < depth {
			p = le.Uint32(b.data[4*idx[d]:])
			f.cache.put(b)
			continue
		}
		first := le.Uint32(b.data[4*idx[d]:]) != 0
		n := uint64(1)
		for i := int(idx[d]) + 1; i < f.apb && (le.Uint32(b.data[4*i:]) != 0) == first; i++ {
			n++
		}
		f.cache.put(b)
		return first, n, nil
	}
	return false, 1, nil // not reached: depth >= 1 ends in the loop
}
