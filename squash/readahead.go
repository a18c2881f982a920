// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import "runtime"

// Readahead: when a file is read sequentially, the next few compressed
// blocks are decompressed by background goroutines into the data cache
// while the reader copies the current one, so one sequential reader uses
// more than one core. The loads go through the cache's in-flight
// tracking: a reader that reaches a block still being prefetched waits
// for that decode instead of starting its own.
//
// Stored (uncompressed) and sparse blocks are skipped: reads of those go
// straight to the image file, whose page cache does its own readahead.
//
// A file read out of order is prefetched whole instead: the page faults
// of a mapped executable or library arrive one at a time, wherever the
// program touches it next (python's 7 MB binary: 40 reads of scattered
// 128 KiB blocks at start-up), and each would decode its block while the
// faulting program, and its core, wait. After the first out-of-order
// read, one background goroutine decodes the file's other blocks, from
// the faulting one on, so later faults find them decoded and start-up
// uses both cores. One file is prefetched at a time, and only files up to
// maxPrefetch bytes (at most half the data cache), read out of order:
// sequential readers (cat, cp, dd) keep the bounded readahead above.

// maxPrefetch is the largest file prefetched whole by default
// ([Options.Prefetch]).
const maxPrefetch = 8 << 20

// readahead bounds the background decodes of one FS.
type readahead struct {
	blocks   int           // blocks to decode past the one being read
	slots    chan struct{} // one token per running background decode
	prefetch chan struct{} // the token of the running whole-file prefetch
	maxFile  int64         // largest file prefetched whole
}

// newReadahead returns nil when blocks is 0 (readahead off). Files up to
// maxFile bytes are prefetched whole (none if it is negative).
func newReadahead(blocks int, maxFile int64) *readahead {
	if blocks <= 0 {
		return nil
	}
	return &readahead{blocks: blocks, slots: make(chan struct{}, runtime.GOMAXPROCS(0)),
		prefetch: make(chan struct{}, 1), maxFile: maxFile}
}

// startReadahead notes that a read of n covers blocks first..last and, when
// the read continues where the previous one ended, or is a first read of
// all of block 0 (whole is set), starts background decodes of the blocks
// after last. It never blocks: when every slot is busy the block is left
// for the reader.
func (f *FS) startReadahead(n *Inode, bl *blockList, first, last int64, whole bool) {
	ra := f.ra
	if ra == nil {
		return
	}
	// A sequential reader starts in the block after the previous read's
	// last, or in that last block again when reads are not block-aligned.
	// A first read starts nothing unless it takes a whole block from the
	// start, as cat and cp do (the kernel asks for 128 KiB): many readers
	// (file(1), ELF loaders) read a header and stop, and the kernel then
	// asks for 16 KiB.
	prev := n.raNext.Swap(last + 1)
	if first == 0 {
		// A read from the start begins a new pass (a second cat, or
		// cp after file(1)), not a jump back: no whole-file prefetch.
		prev = 0
	}
	if prev != 0 && first != prev && first != prev-1 {
		f.startPrefetch(n, bl, first)
		return
	}
	if prev == 0 && (!whole || first != 0) {
		return
	}
	bs := int64(f.sb.BlockSize)
	for idx := last + 1; idx <= last+int64(ra.blocks) && idx < bl.len(); idx++ {
		size, start, err := bl.at(idx)
		if err != nil {
			return // the reader meets it
		}
		if size&blockSizeMask == 0 || size&blockUncompBit != 0 {
			continue
		}
		if f.data.has(uint64(start)) {
			continue
		}
		select {
		case ra.slots <- struct{}{}:
		default:
			return
		}
		want := int(min(bs, int64(n.Size)-idx*bs))
		f.raStarts.Add(1)
		go func() {
			defer func() { <-ra.slots }()
			f.decodeAhead(start, size, want, false, "data block")
		}()
	}
}

// startPrefetch starts decoding every block of n but first in the
// background, first+1 onwards and then from the start, once per inode and
// when no other file is being prefetched.
func (f *FS) startPrefetch(n *Inode, bl *blockList, first int64) {
	ra := f.ra
	if int64(n.Size) > ra.maxFile || bl.len() < 2 || n.prefetched.Load() {
		return
	}
	select {
	case ra.prefetch <- struct{}{}:
	default:
		return // another file's turn; a later out-of-order read retries
	}
	if n.prefetched.Swap(true) {
		<-ra.prefetch
		return
	}
	f.prefetches.Add(1)
	bs, count := int64(f.sb.BlockSize), bl.len()
	go func() {
		defer func() { <-ra.prefetch }()
		for k := int64(1); k < count; k++ {
			idx := (first + k) % count
			size, start, err := bl.at(idx)
			if err != nil {
				return // a reader meets it
			}
			if size&blockSizeMask == 0 || size&blockUncompBit != 0 ||
				f.data.has(uint64(start)) {
				continue
			}
			f.decodeAhead(start, size, int(min(bs, int64(n.Size)-idx*bs)),
				false, "data block")
		}
	}()
}

// startFragmentReadahead decodes fragment block idx+1 in the background
// once tail reads have moved from each fragment block to the next a few
// times in a row: the reader is sweeping files in the order mksquashfs
// packed their tails (find | xargs cat, cp -r, tar), and each new
// fragment block would otherwise be decoded while it and its core wait.
// Reading all of /usr decodes as many fragment blocks as full ones.
// Imports, which touch neighbouring blocks without sweeping them, and
// readers interleaved with others start none: their decodes would be
// wasted, or take a core that is already busy.
func (f *FS) startFragmentReadahead(idx uint32) {
	ra := f.ra
	if ra == nil || idx+1 >= f.sb.Fragments {
		return
	}
	switch prev := f.lastFrag.Swap(idx); {
	case prev == idx:
		return
	case idx != prev+1:
		f.fragStreak.Store(0)
		return
	case f.fragStreak.Add(1) < fragSweep:
		return
	}
	next, size, err := f.fragmentEntry(idx + 1)
	if err != nil || size&blockSizeMask == 0 || f.data.has(uint64(next)) {
		return
	}
	select {
	case ra.slots <- struct{}{}:
	default:
		return
	}
	f.raStarts.Add(1)
	go func() {
		defer func() { <-ra.slots }()
		f.decodeAhead(next, size, int(f.sb.BlockSize), true, "fragment")
	}()
}

// fragSweep is how many steps from one fragment block to the next in a
// row make a sweep.
const fragSweep = 3

// decodeAhead decodes a block into the cache for a reader to come. Errors
// are left for that reader, which retries the load and reports them with
// context.
func (f *FS) decodeAhead(start int64, size uint32, want int, upTo bool, what string) {
	if blk, err := f.dataBlock(start, size, want, upTo, what); err == nil {
		blk.release()
	}
}
