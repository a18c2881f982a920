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
		// One map run at a time: holes skip missing indirect subtrees.
		phys, run, err := f.mapRun(in, lblk, 1<<20)
		if err != nil {
			return 0, err
		}
		if (phys != 0) == (whence == unix.SEEK_DATA) {
			return max(off, int64(lblk)*bs), nil
		}
		lblk += uint64(run)
	}
	if whence == unix.SEEK_HOLE {
		return size, nil
	}
	return 0, syscall.ENXIO
}
