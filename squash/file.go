// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"fmt"
	"io"
	"syscall"
)

// A regular file is a run of data blocks stored back to back from the
// inode's start offset, each described by a 32-bit size word in the block
// list after the inode (bit 24: stored uncompressed; size 0: a sparse block
// of zeros; see blocklist.go), plus an optional tail held in a fragment
// block.

// ReadAt reads file n at offset off with io.ReaderAt semantics: it returns
// len(p) bytes or an error, and io.EOF when the read reaches the end.
func (f *FS) ReadAt(n *Inode, p []byte, off int64) (int, error) {
	switch {
	case n.Mode&modeTypeMask == modeDir:
		return 0, &errnoError{op: "read", name: fmt.Sprintf("inode %d", n.Ino),
			errno: syscall.EISDIR}
	case n.Mode&modeTypeMask != modeReg:
		return 0, &errnoError{op: "read", name: fmt.Sprintf("inode %d", n.Ino),
			errno: syscall.EINVAL}
	case off < 0:
		return 0, &errnoError{op: "read", name: fmt.Sprintf("inode %d", n.Ino),
			errno: syscall.EINVAL}
	}
	if uint64(off) >= n.Size {
		return 0, io.EOF
	}
	bl, err := f.blocks(n)
	if err != nil {
		return 0, annotate(err, "inode %d", n.Ino)
	}

	bs := int64(f.sb.BlockSize)
	want := min(int64(len(p)), int64(n.Size)-off)
	if bl.len() > 1 && want > 0 {
		f.startReadahead(n, bl, off/bs, (off+want-1)/bs, off == 0 && want >= bs)
	}
	done := int64(0)
	for done < want {
		pos := off + done
		idx, within := pos/bs, pos%bs
		k, err := f.readBlockInto(n, bl, idx, within, p[done:want])
		if err != nil {
			return int(done), annotate(err, "inode %d", n.Ino)
		}
		done += int64(k)
	}
	if done < int64(len(p)) {
		return int(done), io.EOF
	}
	return int(done), nil
}

// readBlockInto copies from file block idx (or the fragment tail when idx
// is past the block list), starting within bytes into it, into p.
func (f *FS) readBlockInto(n *Inode, bl *blockList, idx, within int64,
	p []byte) (int, error) {
	bs := int64(f.sb.BlockSize)
	const what = "data block"
	if idx >= bl.len() {
		return f.readTailInto(n, idx, within, p)
	}
	blockLen := min(bs, int64(n.Size)-idx*bs)
	size, start, err := bl.at(idx)
	if err != nil {
		return 0, err
	}
	avail := p[:min(int64(len(p)), blockLen-within)]

	switch {
	case size&blockSizeMask == 0:
		clear(avail) // sparse block
		return len(avail), nil
	case size&blockUncompBit != 0:
		// Stored blocks are read straight into p; the page cache of the
		// underlying file already caches them.
		if int64(size&blockSizeMask) != blockLen {
			return 0, formatErr(start, what, "stored block %d is %d bytes, "+
				"want %d", idx, size&blockSizeMask, blockLen)
		}
		if err := f.readRaw(avail, start+within, what); err != nil {
			return 0, err
		}
		return len(avail), nil
	}
	blk, err := f.dataBlock(start, size, int(blockLen), false, what)
	if err != nil {
		return 0, err
	}
	k := copy(avail, blk.b[within:])
	blk.release()
	if within+int64(k) == blockLen {
		// A sequential reader is done with this block, and the kernel
		// keeps what it read in its page cache: let the block go before
		// fragments and partly read blocks.
		f.data.demote(uint64(start))
	}
	return k, nil
}

// readTailInto copies from the file's tail in its fragment block.
func (f *FS) readTailInto(n *Inode, idx, within int64, p []byte) (int, error) {
	bs := int64(f.sb.BlockSize)
	const what = "tail end"
	if n.frag == noFragment || idx != n.nblocks {
		return 0, formatErr(-1, what, "read past block list without a fragment")
	}
	tailLen := int64(n.Size) - idx*bs
	blk, err := f.fragmentBlock(n.frag)
	if err != nil {
		return 0, err
	}
	defer blk.release()
	f.startFragmentReadahead(n.frag)
	frag := blk.b
	if int64(n.fragOffset)+tailLen > int64(len(frag)) {
		return 0, formatErr(-1, what, "tail of %d bytes at %d past fragment of %d",
			tailLen, n.fragOffset, len(frag))
	}
	tail := frag[int64(n.fragOffset) : int64(n.fragOffset)+tailLen]
	return copy(p, tail[within:]), nil
}

// Readlink returns the target of symlink n.
func (f *FS) Readlink(n *Inode) (string, error) {
	if n.Mode&modeTypeMask != modeSymlink {
		return "", &errnoError{op: "readlink", name: fmt.Sprintf("inode %d", n.Ino),
			errno: syscall.EINVAL}
	}
	return n.target, nil
}

// StoredExtent reports where the size bytes of file n at off lie in the
// image, when they are all stored uncompressed: section offset start, and
// k, the bytes available (size, or fewer at the end of the file). ok is
// false when any of them is in a compressed, sparse or fragment block;
// then ReadAt must be used. A caller can then copy them from the image
// file without this package (splice), as the kernel's squashfs reads
// uncompressed blocks straight from the device.
func (f *FS) StoredExtent(n *Inode, off int64, size int) (start int64, k int, ok bool) {
	if n.Mode&modeTypeMask != modeReg || off < 0 || uint64(off) >= n.Size || size <= 0 {
		return 0, 0, false
	}
	bl, err := f.blocks(n)
	if err != nil {
		return 0, 0, false // ReadAt reports it
	}
	bs := int64(f.sb.BlockSize)
	end := min(off+int64(size), int64(n.Size))
	for idx := off / bs; idx*bs < end; idx++ {
		if idx >= bl.len() {
			return 0, 0, false // the tail, in a fragment
		}
		s, at, err := bl.at(idx)
		if err != nil {
			return 0, 0, false // ReadAt reports it
		}
		if idx == off/bs {
			start = at + off%bs
		}
		blockLen := min(bs, int64(n.Size)-idx*bs)
		if s&blockUncompBit == 0 || int64(s&blockSizeMask) != blockLen {
			return 0, 0, false
		}
	}
	return start, int(end - off), true
}
