// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"fmt"
	"syscall"
)

// SeekData returns where the first data at or after off of file n
// starts, or with hole set the first hole: SEEK_DATA and SEEK_HOLE. A
// block mksquashfs found all zeros is stored as none (size word 0) and
// is a hole; every other block and the fragment tail are data, and the
// end of the file is a hole. Offsets at or past the end are ENXIO, as is
// SEEK_DATA with only holes after off. Without this, copying a sparse
// file out of an image (cp --sparse, tar -S) writes all its zeros.
func (f *FS) SeekData(n *Inode, off int64, hole bool) (int64, error) {
	size := int64(n.Size)
	if n.Mode&modeTypeMask != modeReg || off < 0 || off >= size {
		return 0, &errnoError{op: "seek", name: fmt.Sprintf("inode %d", n.Ino),
			errno: syscall.ENXIO}
	}
	bl, err := f.blocks(n)
	if err != nil {
		return 0, err
	}
	bs := int64(f.sb.BlockSize)
	for i := off / bs; i < bl.len(); i++ {
		s, _, err := bl.at(i)
		if err != nil {
			return 0, err
		}
		if (s&blockSizeMask == 0) == hole {
			return max(off, i*bs), nil
		}
	}
	if hole {
		return size, nil
	}
	if bl.len()*bs < size { // a tail in a fragment block
		return max(off, bl.len()*bs), nil
	}
	return 0, &errnoError{op: "seek", name: fmt.Sprintf("inode %d", n.Ino),
		errno: syscall.ENXIO}
}
