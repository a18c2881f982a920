package ext3

import (
	"fmt"
	"slices"
)

// Bitmap validation.
//
// A damaged bitmap must not make husk hand out a block or inode the file
// system itself uses: new file data would then overwrite the superblock
// backups, the reserved GDT blocks, a bitmap, the inode table or the
// journal. So the first time a group is allocated from or freed into, its
// bitmaps are checked: every block of the group's own metadata (and of the
// journal) must be marked used in the block bitmap, and the reserved
// inodes below s_first_ino in the inode bitmap. A group that fails is
// refused from then on (CorruptError, which is EIO, asking for e2fsck);
// nothing is written to it. Every allocation also checks its result
// against the fixed metadata, a cheap range test (reservedBlock).

// checkGroupLocked validates group g's bitmaps once and returns the
// group's sticky error. Preconditions: grp.mu held.
func (f *FS) checkGroupLocked(g uint32, grp *group) error {
	if grp.checked {
		return grp.bad
	}
	err := f.checkBlockBitmap(g, grp)
	if err == nil {
		err = f.checkInodeBitmap(g, grp)
	}
	if cerr, ok := err.(*CorruptError); ok {
		cerr.Detail += "; husk will not allocate in this group: run e2fsck"
		return f.refuseLocked(g, grp, err)
	} else if err != nil {
		return err // an I/O error: try again next time
	}
	grp.checked = true
	return nil
}

func (f *FS) checkBlockBitmap(g uint32, grp *group) error {
	d := &grp.desc
	b, err := f.cache.get(d.BlockBitmap)
	if err != nil {
		return err
	}
	defer f.cache.put(b)
	b.mu.Lock()
	defer b.mu.Unlock()
	base := f.sb.groupFirstBlock(g)
	end := base + f.sb.groupBlocks(g)
	need := func(first, n uint32, what string) error {
		for nr := first; nr < first+n; nr++ {
			if nr < base || nr >= end {
				continue
			}
			if !testBit(b.data, nr-base) {
				return corrupt("block bitmap", d.BlockBitmap, 0,
					"group %d: %s block %d is marked free", g, what, nr)
			}
		}
		return nil
	}
	if err := need(base, f.sb.groupMetaBlocks(g), "superblock or GDT"); err != nil {
		return err
	}
	if err := need(d.BlockBitmap, 1, "block bitmap"); err != nil {
		return err
	}
	if err := need(d.InodeBitmap, 1, "inode bitmap"); err != nil {
		return err
	}
	if err := need(d.InodeTable, f.itBlocks, "inode table"); err != nil {
		return err
	}
	for _, r := range f.jnlRuns {
		if err := need(r[0], r[1]-r[0], "journal"); err != nil {
			return err
		}
	}
	return nil
}

func (f *FS) checkInodeBitmap(g uint32, grp *group) error {
	if g != 0 {
		return nil
	}
	d := &grp.desc
	b, err := f.cache.get(d.InodeBitmap)
	if err != nil {
		return err
	}
	defer f.cache.put(b)
	b.mu.Lock()
	defer b.mu.Unlock()
	for ino := uint32(1); ino < f.sb.firstIno() && ino <= f.sb.InodesPerGroup; ino++ {
		if !testBit(b.data, ino-1) {
			return corrupt("inode bitmap", d.InodeBitmap, ino,
				"group 0: reserved inode %d is marked free", ino)
		}
	}
	return nil
}

// reservedBlock reports whether nr belongs to the fixed metadata or the
// journal, which the allocator must never hand out.
func (f *FS) reservedBlock(nr uint32) bool {
	if f.isMetaBlock(nr) {
		return true
	}
	i, _ := slices.BinarySearchFunc(f.jnlRuns, nr, func(r [2]uint32, nr uint32) int {
		switch {
		case r[1] <= nr:
			return -1
		case r[0] > nr:
			return 1
		}
		return 0
	})
	return i < len(f.jnlRuns) && f.jnlRuns[i][0] <= nr && nr < f.jnlRuns[i][1]
}

// blockRuns turns sorted block numbers into [first, end) runs.
func blockRuns(sorted []uint32) [][2]uint32 {
	var runs [][2]uint32
	for _, nr := range sorted {
		if n := len(runs); n > 0 && runs[n-1][1] == nr {
			runs[n-1][1]++
			continue
		}
		runs = append(runs, [2]uint32{nr, nr + 1})
	}
	return runs
}

// refuseBlock marks group g bad after the allocator found a metadata block
// marked free, and returns the error for the writer.
// Preconditions: grp.mu held.
func (f *FS) refuseBlock(g uint32, grp *group, nr uint32) error {
	return fmt.Errorf("ext3: allocate block: %w", f.refuseLocked(g, grp,
		corrupt("block bitmap", grp.desc.BlockBitmap, 0,
			"group %d: block %d belongs to the file system's metadata but is marked free; "+
				"husk will not allocate in this group: run e2fsck", g, nr)))
}

// refuseLocked refuses group g for the rest of the session, on the first
// damage found (err, which it logs), and returns that first damage.
// Preconditions: grp.mu held.
func (f *FS) refuseLocked(g uint32, grp *group, err error) error {
	if grp.bad == nil {
		f.log.Error("ext3: damaged bitmap, allocation in the group refused", "group", g,
			"err", err)
		grp.bad = err
	}
	grp.checked = true
	return grp.bad
}
