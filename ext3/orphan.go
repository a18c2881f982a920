package ext3

import (
	"sort"
)

// Deleting inodes, and the orphan list.
//
// An inode whose last name goes while it is open stays allocated until
// Release. It is recorded in the on-disk orphan list (s_last_orphan, then
// each inode's i_dtime naming the next) so that after a crash the next
// mount, or e2fsck, frees it. The chain is rebuilt from FS.orphans inside
// every commit, where no operation runs, so no inode lock is needed to
// rewrite another inode's i_dtime.

// deleteInode frees the blocks, xattr block and inode number of in.
// Preconditions: in.mu held exclusively, op held shared, nlink 0.
func (f *FS) deleteInode(in *inode) error {
	isDir := in.isDir()
	var firstErr error
	if in.hasBlockMap() {
		firstErr = f.freeRange(in, 0, f.maxBlocks())
	}
	if err := f.xattrDropBlock(in); err != nil && firstErr == nil {
		firstErr = err
	}
	in.setSize(0)
	in.setNlink(0)
	in.set32(iDtime, uint32(now().Sec))
	if err := f.writeInode(in); err != nil {
		return err
	}
	// Out of the cache before its bit is free: an allocation that takes
	// the number at once must not find it still live (checkFreeInode).
	f.imu.Lock()
	in.orphan = false
	delete(f.orphans, in.ino)
	delete(f.inodes, in.ino)
	f.imu.Unlock()
	if err := f.freeInodeBit(in.ino, isDir); err != nil && firstErr == nil {
		firstErr = err
	}
	in.dir = nil
	if firstErr != nil {
		f.logCorrupt(firstErr)
	}
	return nil
}

// addOrphan records an unlinked but open inode.
func (f *FS) addOrphan(in *inode) error {
	f.imu.Lock()
	f.orphans[in.ino] = in
	f.imu.Unlock()
	return f.writeInode(in)
}

// flushOrphansLocked rewrites the on-disk orphan chain.
// Preconditions: op held exclusively.
func (f *FS) flushOrphansLocked() {
	f.imu.Lock()
	inos := make([]uint32, 0, len(f.orphans))
	for ino := range f.orphans {
		inos = append(inos, ino)
	}
	f.imu.Unlock()
	sort.Slice(inos, func(i, j int) bool { return inos[i] < inos[j] })
	head := uint32(0)
	for i := len(inos) - 1; i >= 0; i-- {
		f.imu.Lock()
		in := f.orphans[inos[i]]
		f.imu.Unlock()
		if in.u32(iDtime) != head {
			in.set32(iDtime, head)
			f.writeInode(in)
		}
		head = in.ino
	}
	f.sbMu.Lock()
	if f.sb.LastOrphan != head {
		f.sb.LastOrphan = head
		f.sbDirty = true
	}
	f.sbMu.Unlock()
}

// processOrphans finishes deletions interrupted by a crash, like the
// kernel's ext4_orphan_cleanup.
func (f *FS) processOrphans() error {
	f.op.RLock()
	defer f.op.RUnlock()
	ino := f.sb.LastOrphan
	for n := uint32(0); ino != 0; n++ {
		if n > f.sb.InodesCount || ino < f.sb.firstIno() || ino > f.sb.InodesCount {
			f.logCorrupt(corrupt("orphan list", 0, ino, "bad entry after %d inodes", n))
			break
		}
		in, err := f.iget(ino)
		if err != nil {
			f.logCorrupt(err)
			break
		}
		in.mu.Lock()
		next := in.u32(iDtime)
		if in.nlink() == 0 && in.mode() != 0 {
			err = f.deleteInode(in)
		} else {
			// An orphan with links was mid-truncate; its size is already
			// final, so only unlink it from the chain.
			in.set32(iDtime, 0)
			err = f.writeInode(in)
		}
		in.mu.Unlock()
		f.iput(in)
		if err != nil {
			return err
		}
		ino = next
	}
	f.sbMu.Lock()
	if f.sb.LastOrphan != 0 {
		f.sb.LastOrphan = 0
		f.sbDirty = true
	}
	f.sbMu.Unlock()
	return nil
}

// freeOrphansAtClose deletes inodes unlinked while open; Close ends every
// open.
func (f *FS) freeOrphansAtClose() error {
	f.imu.Lock()
	var list []*inode
	for _, in := range f.orphans {
		list = append(list, in)
	}
	f.imu.Unlock()
	f.op.RLock()
	defer f.op.RUnlock()
	for _, in := range list {
		in.mu.Lock()
		err := f.deleteInode(in)
		in.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}
