// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"sync/atomic"
)

// A regular file's block list: one 32-bit size word per block, stored in
// the inode table after the inode. A block's place in the image is the
// sum of the sizes before it, so the list is read once, in order, when
// the file is first read.
//
// A list of up to listWindow blocks (128 MiB of file at the default block
// size) is kept whole. A longer one keeps only where each window of
// listWindow words starts, and decodes a window again from the (cached)
// metadata when a read needs it: an image can claim a file of any size
// with a list of sparse blocks that compresses to almost nothing, and
// keeping 12 bytes a block took stage 1 to 152 MB for a 1 TB sparse file
// (a trial). A long list now costs 24 bytes a window and its last few
// decoded windows.

// listWindow is the number of size words in a window of a long list.
const listWindow = 1024

// listSlots is the number of decoded windows a long list keeps: readers
// at a few places in one large file do not decode in turn.
const listSlots = 4

// blockList is a file's block list.
type blockList struct {
	f     *FS
	n     int64      // blocks
	whole *listWin   // a short list, all of it; nil for a long one
	marks []listMark // a long list: where window i starts
	slots [listSlots]atomic.Pointer[listWin]
}

// listWin is a run of a list: the size words and section offsets of
// blocks first, first+1 ...
type listWin struct {
	first   int64
	sizes   []uint32
	offsets []int64
}

// listMark is where a window of a long list starts: the metadata position
// of its first size word, and the section offset of its first block.
type listMark struct {
	blk  int64
	off  int
	data int64
}

// len returns the number of blocks in the list.
func (bl *blockList) len() int64 { return bl.n }

// at returns the size word and section offset of block idx, which must be
// below len.
func (bl *blockList) at(idx int64) (size uint32, off int64, err error) {
	w := bl.whole
	if w == nil {
		wi := idx / listWindow
		slot := &bl.slots[wi%listSlots]
		if w = slot.Load(); w == nil || w.first != wi*listWindow {
			if w, err = bl.window(wi); err != nil {
				return 0, 0, err
			}
			slot.Store(w)
		}
	}
	i := idx - w.first
	return w.sizes[i], w.offsets[i], nil
}

// window decodes window wi of a long list.
func (bl *blockList) window(wi int64) (*listWin, error) {
	const what = "block list"
	mk := bl.marks[wi]
	m, err := bl.f.newMetaReader(mk.blk, mk.off, what)
	if err != nil {
		return nil, err
	}
	first := wi * listWindow
	w := newListWin(first, min(listWindow, bl.n-first))
	if err := bl.f.readList(m, w, mk.data); err != nil {
		return nil, err
	}
	return w, nil
}

func newListWin(first, n int64) *listWin {
	return &listWin{first: first, sizes: make([]uint32, n), offsets: make([]int64, n)}
}

// readList reads len(w.sizes) size words from m into w, the first block
// at section offset pos, checking each.
func (f *FS) readList(m *metaReader, w *listWin, pos int64) error {
	const what = "block list"
	for i := range w.sizes {
		s, err := m.u32()
		if err != nil {
			return err
		}
		if s&^(blockUncompBit|blockSizeMask) != 0 || s&blockSizeMask > f.sb.BlockSize {
			return formatErr(pos, what, "block %d size word %#x", w.first+int64(i), s)
		}
		w.sizes[i], w.offsets[i] = s, pos
		pos += int64(s & blockSizeMask)
		if pos > f.end {
			return formatErr(pos, what, "block %d ends past image end", w.first+int64(i))
		}
	}
	return nil
}

// blocks returns n's block list, reading it on first use. Concurrent first
// callers may both read it; the result is the same.
func (f *FS) blocks(n *Inode) (*blockList, error) {
	if bl := n.blocks.Load(); bl != nil {
		return bl, nil
	}
	m, err := f.newMetaReader(n.listBlock, n.listOffset, "block list")
	if err != nil {
		return nil, err
	}
	bl := &blockList{f: f, n: n.nblocks}
	if n.nblocks <= listWindow {
		bl.whole = newListWin(0, n.nblocks)
		if err := f.readList(m, bl.whole, int64(n.start)); err != nil {
			return nil, err
		}
		n.blocks.Store(bl)
		return bl, nil
	}
	// A long list: read through it once, a window at a time, to check it
	// and to note where each window starts.
	bl.marks = make([]listMark, 0, (n.nblocks+listWindow-1)/listWindow)
	w := newListWin(0, listWindow)
	pos := int64(n.start)
	for first := int64(0); first < n.nblocks; first += listWindow {
		blk, off := m.pos()
		bl.marks = append(bl.marks, listMark{blk: blk, off: off, data: pos})
		k := min(listWindow, n.nblocks-first)
		w.first, w.sizes, w.offsets = first, w.sizes[:k], w.offsets[:k]
		if err := f.readList(m, w, pos); err != nil {
			return nil, err
		}
		pos = w.offsets[k-1] + int64(w.sizes[k-1]&blockSizeMask)
	}
	n.blocks.Store(bl)
	return bl, nil
}
