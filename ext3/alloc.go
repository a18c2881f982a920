package ext3

import (
	"errors"
	"fmt"
	"math/bits"
	"sync/atomic"
	"syscall"
)

// Block and inode allocation.
//
// Each group has its own lock, which guards its descriptor and its two
// bitmap blocks, so allocations in different groups run in parallel.
//
// Freed blocks are not returned to the bitmap at once: they wait in their
// group's pendingFree list until the freeing transaction commits. File data
// is written straight to the device, so a block freed by an uncommitted
// transaction must not receive new data: after a crash the journal would
// bring back the old owner pointing at someone else's data. Only when the
// device is full are pending frees applied early (see reclaim).

// findZero returns the first clear bit in bm at or after start and below
// limit, or -1.
func findZero(bm []byte, start, limit uint32) int64 {
	for i := start; i < limit; {
		if i&7 == 0 && i+8 <= limit && bm[i>>3] == 0xff {
			i += 8
			continue
		}
		if i&63 == 0 && i+64 <= limit {
			w := le.Uint64(bm[i>>3:])
			if w == ^uint64(0) {
				i += 64
				continue
			}
			return int64(i) + int64(bits.TrailingZeros64(^w))
		}
		if bm[i>>3]&(1<<(i&7)) == 0 {
			return int64(i)
		}
		i++
	}
	return -1
}

func testBit(bm []byte, i uint32) bool { return bm[i>>3]&(1<<(i&7)) != 0 }
func setBit(bm []byte, i uint32)       { bm[i>>3] |= 1 << (i & 7) }
func clearBit(bm []byte, i uint32)     { bm[i>>3] &^= 1 << (i & 7) }

// mayUseReserve reports whether writes to in may allocate from the blocks
// reserved for root (see Options.NoReserve).
func (f *FS) mayUseReserve(in *inode) bool { return f.reserveFor(in.uid()) }

// reserveFor is mayUseReserve for an owner: the directory blocks a new
// entry or a new directory needs count too (a trial's copy-ups of image
// directories, root-owned, went on into the reserve on a full overlay).
func (f *FS) reserveFor(uid uint32) bool { return !f.opts.NoReserve && uid == 0 }

// allocBlocks allocates up to n contiguous blocks, preferring goal, and
// returns the first one and how many it got (at least 1). root callers may
// dip into the reserved blocks.
// Preconditions: the op lock held shared.
func (f *FS) allocBlocks(goal uint32, n int, root bool) (uint32, int, error) {
	if n < 1 {
		n = 1
	}
	return f.tryAllocBlocks(goal, n, root)
}

func (f *FS) tryAllocBlocks(goal uint32, n int, root bool) (uint32, int, error) {
	sb := f.sb
	free := atomic.LoadInt64(&f.freeBlocks)
	reserve := int64(0)
	if !root {
		reserve = int64(sb.RBlocksCount)
	}
	if free-reserve < 1 {
		return 0, 0, syscall.ENOSPC
	}
	if int64(n) > free-reserve {
		n = int(free - reserve)
	}
	if goal < sb.FirstDataBlock || goal >= sb.BlocksCount {
		goal = sb.FirstDataBlock
	}
	ng := sb.groupCount()
	g0 := (goal - sb.FirstDataBlock) / sb.BlocksPerGroup
	for i := uint32(0); i < ng; i++ {
		g := (g0 + i) % ng
		off := uint32(0)
		if i == 0 {
			off = goal - sb.groupFirstBlock(g)
		}
		start, got, err := f.allocInGroup(g, off, n)
		if err != nil || got > 0 {
			return start, got, err
		}
	}
	return 0, 0, syscall.ENOSPC
}

func (f *FS) allocInGroup(g, off uint32, n int) (uint32, int, error) {
	grp := &f.groups[g]
	grp.mu.Lock()
	defer grp.mu.Unlock()
	if grp.desc.FreeBlocksCount == 0 {
		return 0, 0, nil
	}
	if err := f.checkGroupLocked(g, grp); err != nil {
		return 0, 0, err
	}
	b, err := f.cache.get(grp.desc.BlockBitmap)
	if err != nil {
		return 0, 0, err
	}
	defer f.cache.put(b)
	limit := f.sb.groupBlocks(g)
	if off == 0 && grp.hint < limit {
		off = grp.hint
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	base := f.sb.groupFirstBlock(g)
	held := func(i int64) bool {
		_, q := grp.quarantine[base+uint32(i)]
		return q
	}
	search := func(from uint32) int64 {
		i := findZero(b.data, from, limit)
		for i >= 0 && held(i) {
			i = findZero(b.data, uint32(i)+1, limit)
		}
		return i
	}
	i := search(off)
	if i < 0 && off > 0 {
		i = search(0)
	}
	if i < 0 {
		if len(grp.quarantine) > 0 {
			return 0, 0, nil // free only once the running commit ends
		}
		return 0, 0, corrupt("block bitmap", grp.desc.BlockBitmap, 0,
			"group %d has %d free blocks but no clear bit", g, grp.desc.FreeBlocksCount)
	}
	first := uint32(i)
	if f.reservedBlock(base + first) {
		return 0, 0, f.refuseBlock(g, grp, base+first)
	}
	got := 0
	for j := first; j < limit && got < n && !testBit(b.data, j) && !held(int64(j)); j++ {
		if f.reservedBlock(base + j) {
			break // refused by the next allocation that starts here
		}
		setBit(b.data, j)
		got++
	}
	f.cache.markDirty(b)
	grp.desc.FreeBlocksCount -= uint16(got)
	grp.dirty = true
	grp.hint = first + uint32(got)
	atomic.AddInt64(&f.freeBlocks, -int64(got))
	return f.sb.groupFirstBlock(g) + first, got, nil
}

// freeBlock queues block nr for release at the next commit.
// Preconditions: the op lock held shared.
func (f *FS) freeBlock(nr uint32) {
	if nr < f.sb.FirstDataBlock || nr >= f.sb.BlocksCount || f.isMetaBlock(nr) {
		f.logCorrupt(corrupt("block map", nr, 0, "freeing block %d outside the data area", nr))
		return
	}
	f.cache.forget(nr)
	g := (nr - f.sb.FirstDataBlock) / f.sb.BlocksPerGroup
	grp := &f.groups[g]
	grp.mu.Lock()
	grp.pendingFree = append(grp.pendingFree, nr)
	grp.mu.Unlock()
	atomic.AddInt64(&f.pendingFrees, 1)
}

// applyPendingFrees clears the bitmap bits of queued frees and puts the
// blocks in quarantine until the commit that carries the change ends.
// Preconditions: no commit is in flight; the op lock held exclusively.
func (f *FS) applyPendingFrees() {
	for g := range f.groups {
		grp := &f.groups[g]
		grp.mu.Lock()
		if len(grp.pendingFree) > 0 {
			f.releaseLocked(uint32(g), grp)
		}
		grp.mu.Unlock()
	}
}

func (f *FS) releaseLocked(g uint32, grp *group) {
	if err := f.checkGroupLocked(g, grp); err != nil {
		// Never write to a damaged group: the frees are lost (e2fsck
		// finds the blocks unowned and frees them).
		f.logCorrupt(err)
		atomic.AddInt64(&f.pendingFrees, -int64(len(grp.pendingFree)))
		grp.pendingFree = grp.pendingFree[:0]
		return
	}
	b, err := f.cache.get(grp.desc.BlockBitmap)
	if err != nil {
		f.logCorrupt(err)
		return
	}
	first := f.sb.groupFirstBlock(g)
	b.mu.Lock()
	n := 0
	if grp.quarantine == nil {
		grp.quarantine = make(map[uint32]struct{})
	}
	for _, nr := range grp.pendingFree {
		i := nr - first
		if testBit(b.data, i) {
			clearBit(b.data, i)
			n++
			grp.quarantine[nr] = struct{}{}
		}
	}
	f.cache.markDirty(b)
	b.mu.Unlock()
	f.cache.put(b)
	atomic.AddInt64(&f.pendingFrees, -int64(len(grp.pendingFree)))
	grp.pendingFree = grp.pendingFree[:0]
	grp.desc.FreeBlocksCount += uint16(n)
	grp.dirty = true
	atomic.AddInt64(&f.freeBlocks, int64(n))
}

// releaseQuarantine makes the blocks freed by a finished commit
// allocatable.
func (f *FS) releaseQuarantine() {
	for g := range f.groups {
		grp := &f.groups[g]
		grp.mu.Lock()
		clear(grp.quarantine)
		grp.mu.Unlock()
	}
}

// retryNoSpace runs op and, when it fails with ENOSPC while freed blocks
// wait for their transaction to commit, commits and runs it once more.
// Blocks freed by an uncommitted transaction cannot be reused before it
// is durable, so "delete, then write" on a full image needs that commit.
// Preconditions: no locks held (commit takes the op lock).
func (f *FS) retryNoSpace(op func() error) error {
	err := op()
	if errors.Is(err, syscall.ENOSPC) && atomic.LoadInt64(&f.pendingFrees) > 0 {
		if cerr := f.commit(); cerr != nil {
			return err
		}
		err = op()
	}
	return err
}

// OnNewInode has fn called with each inode number the file system hands
// out, before the inode holds anything: a server that names inodes by
// number (a FUSE server) learns of a reuse before the new file can be
// opened, where a request resolved to the old one may still be on its
// way.
func (f *FS) OnNewInode(fn func(ino uint32)) { f.onNewInode.Store(&fn) }

// allocInode allocates an inode near the parent directory. Directories
// are spread to the group with the most free inodes (a simplified Orlov).
// A group refused earlier (a damaged bitmap, see bitmapcheck.go) is passed
// over, as ext4 passes over a group whose bitmap it found corrupt: the
// writer that met the damage got the error, later ones use other groups
// (every mkdir failed while the refused group had the most free inodes).
// Preconditions: the op lock held shared.
func (f *FS) allocInode(parent uint32, dir bool) (uint32, error) {
	ng := f.sb.groupCount()
	g0 := (parent - 1) / f.sb.InodesPerGroup
	refused := func(g uint32) bool {
		f.groups[g].mu.Lock()
		defer f.groups[g].mu.Unlock()
		return f.groups[g].bad != nil
	}
	if dir {
		best, bestFree := g0, uint16(0)
		for g := uint32(0); g < ng; g++ {
			f.groups[g].mu.Lock()
			fr, bad := f.groups[g].desc.FreeInodesCount, f.groups[g].bad != nil
			f.groups[g].mu.Unlock()
			if fr > bestFree && !bad {
				best, bestFree = g, fr
			}
		}
		g0 = best
	}
	for i := uint32(0); i < ng; i++ {
		g := (g0 + i) % ng
		if refused(g) {
			continue
		}
		ino, err := f.allocInodeInGroup(g, dir)
		if err == nil && ino != 0 {
			err = f.checkFreeInode(g, ino, dir)
		}
		if err == nil && ino != 0 {
			if fn := f.onNewInode.Load(); fn != nil {
				(*fn)(ino)
			}
		}
		if err != nil || ino != 0 {
			return ino, err
		}
	}
	return 0, syscall.ENOSPC
}

// checkFreeInode makes sure inode ino, which group g's bitmap gave out as
// free, is not in use. A bitmap that lost a bit would otherwise hand out
// a live inode and the new file would overwrite it (when it is /upper, the
// whole overlay is cut off), where e2fsck would only have set the bit
// again. An inode is in use when it has links or is open (an orphan), as
// the cache says or, for one not cached, its table entry; deleteInode and
// undoNew drop an inode from the cache before they free its bit. One in
// use keeps the bit the allocation set, which mends the bitmap (the free
// counts, which such damage leaves right, are given back), and the group
// is refused for the rest of the session, as one whose bitmap marks
// metadata free is (bitmapcheck.go).
// Preconditions: the op lock held shared; no group or block lock held.
func (f *FS) checkFreeInode(g, ino uint32, dir bool) error {
	f.imu.Lock()
	in := f.inodes[ino]
	live := in != nil && (in.nlink() > 0 || in.opens > 0 || in.orphan)
	links := uint32(0)
	if in != nil {
		links = in.nlink()
	}
	f.imu.Unlock()
	if in == nil {
		blk, off := f.inodeLoc(ino)
		b, err := f.cache.get(blk)
		if err != nil {
			return err
		}
		b.mu.Lock()
		links = uint32(le.Uint16(b.data[off+iLinks:]))
		b.mu.Unlock()
		f.cache.put(b)
		live = links > 0
	}
	if !live {
		return nil
	}
	grp := &f.groups[g]
	grp.mu.Lock()
	defer grp.mu.Unlock()
	grp.desc.FreeInodesCount++
	if dir {
		grp.desc.UsedDirsCount--
	}
	grp.dirty = true
	atomic.AddInt64(&f.freeInodes, 1)
	return fmt.Errorf("ext3: allocate inode: %w", f.refuseLocked(g, grp,
		corrupt("inode bitmap", grp.desc.InodeBitmap, ino,
			"group %d: inode %d is marked free but is in use (%d links); "+
				"husk will not allocate in this group: run e2fsck", g, ino, links)))
}

func (f *FS) allocInodeInGroup(g uint32, dir bool) (uint32, error) {
	grp := &f.groups[g]
	grp.mu.Lock()
	defer grp.mu.Unlock()
	if grp.desc.FreeInodesCount == 0 {
		return 0, nil
	}
	if err := f.checkGroupLocked(g, grp); err != nil {
		return 0, err
	}
	b, err := f.cache.get(grp.desc.InodeBitmap)
	if err != nil {
		return 0, err
	}
	defer f.cache.put(b)
	b.mu.Lock()
	defer b.mu.Unlock()
	start := uint32(0)
	if g == 0 {
		start = f.sb.firstIno() - 1
	}
	i := findZero(b.data, start, f.sb.InodesPerGroup)
	if i >= 0 && g*f.sb.InodesPerGroup+uint32(i)+1 < f.sb.firstIno() {
		return 0, corrupt("inode bitmap", grp.desc.InodeBitmap, uint32(i)+1,
			"reserved inode marked free")
	}
	if i < 0 {
		return 0, corrupt("inode bitmap", grp.desc.InodeBitmap, 0,
			"group %d has %d free inodes but no clear bit", g, grp.desc.FreeInodesCount)
	}
	setBit(b.data, uint32(i))
	f.cache.markDirty(b)
	grp.desc.FreeInodesCount--
	if dir {
		grp.desc.UsedDirsCount++
	}
	grp.dirty = true
	atomic.AddInt64(&f.freeInodes, -1)
	return g*f.sb.InodesPerGroup + uint32(i) + 1, nil
}

// freeInodeBit releases inode ino in its bitmap.
// Preconditions: the op lock held shared.
func (f *FS) freeInodeBit(ino uint32, dir bool) error {
	g := (ino - 1) / f.sb.InodesPerGroup
	grp := &f.groups[g]
	grp.mu.Lock()
	defer grp.mu.Unlock()
	if ino < f.sb.firstIno() {
		return corrupt("inode", 0, ino, "freeing a reserved inode")
	}
	if err := f.checkGroupLocked(g, grp); err != nil {
		return err
	}
	b, err := f.cache.get(grp.desc.InodeBitmap)
	if err != nil {
		return err
	}
	defer f.cache.put(b)
	i := (ino - 1) % f.sb.InodesPerGroup
	b.mu.Lock()
	defer b.mu.Unlock()
	if !testBit(b.data, i) {
		return corrupt("inode bitmap", grp.desc.InodeBitmap, ino, "freeing a free inode")
	}
	clearBit(b.data, i)
	f.cache.markDirty(b)
	grp.desc.FreeInodesCount++
	if dir && grp.desc.UsedDirsCount > 0 {
		grp.desc.UsedDirsCount--
	}
	grp.dirty = true
	atomic.AddInt64(&f.freeInodes, 1)
	return nil
}
