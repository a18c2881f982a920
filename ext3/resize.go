package ext3

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"syscall"
)

// Offline growth (Grow), the way resize2fs grows an ext3 file system
// without flex_bg or meta_bg:
//
//   - the last group, if partial, is extended;
//   - new groups are added, each with its bitmaps and a zeroed inode
//     table, and with a superblock, GDT and reserved GDT copy when
//     sparse_super gives it one;
//   - when the group descriptors no longer fit the GDT blocks, reserved GDT
//     blocks (kept by the resize inode, inode 7) become GDT blocks: their
//     entries leave the resize inode's double indirect block, exactly as
//     the kernel's add_new_gdb does;
//   - the remaining reserved GDT blocks list their backups in the new
//     groups too, which is what e2fsck's check_resize_inode expects.
//
// Crash safety: everything outside the old file system (new groups) is
// written and synced first; the changes to blocks the old file system
// uses (superblock, GDT, the last group's bitmap, the resize inode and its
// blocks) then go through the journal as one transaction, so an
// interruption leaves either the old or the new file system. Backup
// superblocks and GDTs in the old groups are refreshed last; until then
// they describe the old, still consistent, geometry.

// ErrNotGrown is returned by Grow when the new size would not add a block.
var ErrNotGrown = errors.New("ext3: the new size does not grow the file system")

// GrowResult describes a growth.
type GrowResult struct {
	OldBlocks, NewBlocks uint32
	OldGroups, NewGroups uint32
	// GDTBlocksAdded counts reserved GDT blocks taken into use.
	GDTBlocksAdded uint32
}

// Grow enlarges the file system on dev to use newSize bytes, which dev must
// already hold (extend the file first). It replays the journal if needed,
// validates the image and the geometry before writing anything, and
// refuses to shrink (ErrNotGrown if nothing would be added). The last
// partial group is filled and a trailing group too small for its own
// metadata and 50 blocks is left out, as mke2fs and resize2fs do. The
// caller must hold the image exclusively (nothing else may have it open).
func Grow(dev Device, newSize int64, opts Options) (*GrowResult, error) {
	opts.ReadOnly = false
	raw := make([]byte, superblockSize)
	if _, err := dev.ReadAt(raw, superblockOffset); err != nil {
		return nil, fmt.Errorf("ext3: read superblock: %w", err)
	}
	if sb := decodeSuperblock(raw); sb.Magic == ext2Magic && sb.LogBlockSize <= 6 &&
		int64(sb.BlocksCount)*int64(sb.blockSize()) > newSize {
		return nil, fmt.Errorf("ext3: shrinking from %d to %d bytes is not supported: %w",
			int64(sb.BlocksCount)*int64(sb.blockSize()), newSize, syscall.EINVAL)
	}
	f, err := Open(dev, newSize, opts)
	if err != nil {
		return nil, err
	}
	res, err := f.grow(newSize)
	if err != nil {
		f.commitMu.Lock()
		if f.fatal == nil && errors.Is(err, ErrGrowIncomplete) {
			f.fatal = err // keep Close from marking a half-grown image clean
		}
		f.commitMu.Unlock()
	}
	cerr := f.Close()
	if err == nil && cerr != nil {
		// Grown and committed; only the final clean mark failed.
		return nil, fmt.Errorf("%w: %w", ErrGrowIncomplete, cerr)
	}
	if err != nil {
		return nil, errors.Join(err, cerr)
	}
	// The journal is empty now: make sure the home superblock says so,
	// whatever Close chose to write.
	if err := setRecoverBit(dev, false); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrGrowIncomplete, err)
	}
	return res, nil
}

// setRecoverBit sets or clears needs_recovery in the primary superblock
// on the device, touching nothing else, and syncs. A committed journal
// transaction is replayed by the kernel and e2fsck only when the flag is
// set, so it must be on disk before the growth's commit.
func setRecoverBit(dev Device, on bool) error {
	raw := make([]byte, superblockSize)
	if _, err := dev.ReadAt(raw, superblockOffset); err != nil {
		return fmt.Errorf("ext3: read superblock: %w", err)
	}
	v := le.Uint32(raw[0x60:])
	nv := v &^ incompatRecover
	if on {
		nv = v | incompatRecover
	}
	if nv == v {
		return nil
	}
	le.PutUint32(raw[0x60:], nv)
	if _, err := dev.WriteAt(raw, superblockOffset); err != nil {
		return fmt.Errorf("ext3: write superblock: %w", err)
	}
	return dev.Sync()
}

// ErrGrowIncomplete is wrapped by Grow's errors once it has started to
// commit the new geometry: the image then holds the old or the new file
// system (the next Open tells), so the caller must not shrink the device
// back. Errors without it left the file system as it was.
var ErrGrowIncomplete = errors.New("ext3: growth not completed")

// growPlan is the geometry a growth computes before writing.
type growPlan struct {
	old, sb            *superblock
	oldNg, ng          uint32
	oldGdt, gdt        uint32 // GDT blocks before and after
	descs              []groupDesc
	oldBackups, newBkp []uint32 // backup groups before, and the added ones
}

func (f *FS) planGrow(newSize int64) (*growPlan, error) {
	old := f.sb
	bs := uint32(f.bs)
	nb := uint64(newSize) / uint64(bs)
	nb = min(nb, 1<<32-1)
	if nb < uint64(old.BlocksCount) {
		return nil, fmt.Errorf("ext3: shrinking from %d to %d blocks is not supported: %w",
			old.BlocksCount, nb, syscall.EINVAL)
	}
	sb := *old
	p := &growPlan{old: old, sb: &sb, oldNg: old.groupCount(), oldGdt: old.gdtBlocks()}
	sb.BlocksCount = uint32(nb)
	for {
		ng := sb.groupCount()
		if uint64(ng)*uint64(sb.InodesPerGroup) > 1<<32-1 {
			return nil, fmt.Errorf("ext3: %d groups of %d inodes exceed 2^32 inodes: %w",
				ng, sb.InodesPerGroup, syscall.EFBIG)
		}
		gdt := sb.gdtBlocks()
		if gdt > p.oldGdt+uint32(old.ReservedGDTBlocks) {
			return nil, fmt.Errorf("ext3: %d groups need %d GDT blocks, but the image has "+
				"%d plus %d reserved; it cannot grow this far: %w",
				ng, gdt, p.oldGdt, old.ReservedGDTBlocks, syscall.EFBIG)
		}
		sb.ReservedGDTBlocks = old.ReservedGDTBlocks - uint16(gdt-p.oldGdt)
		last := ng - 1
		rem := sb.BlocksCount - sb.groupFirstBlock(last)
		if last >= p.oldNg && rem < sb.groupMetaBlocks(last)+2+f.itBlocks+50 {
			sb.BlocksCount -= rem
			continue
		}
		p.ng, p.gdt = ng, gdt
		break
	}
	if sb.BlocksCount == old.BlocksCount {
		return nil, ErrNotGrown
	}
	if p.gdt > p.oldGdt && (!old.has(compatResizeInode) || old.ReservedGDTBlocks == 0) {
		return nil, fmt.Errorf("ext3: growing to %d groups needs more GDT blocks and the "+
			"image has no reserved ones (no resize_inode): %w", p.ng, syscall.EFBIG)
	}
	sb.InodesCount = p.ng * sb.InodesPerGroup
	sb.RBlocksCount = uint32(uint64(old.RBlocksCount) * uint64(sb.BlocksCount) /
		uint64(old.BlocksCount))
	// s_overhead_clusters: 0 makes the kernel count it itself.
	le.PutUint32(sb.Rest[0x248-0x180:], 0)
	for g := uint32(1); g < p.ng; g++ {
		if sb.groupHasSuper(g) {
			if g < p.oldNg {
				p.oldBackups = append(p.oldBackups, g)
			} else {
				p.newBkp = append(p.newBkp, g)
			}
		}
	}
	return p, nil
}

// grow runs a growth on an open, otherwise idle file system.
func (f *FS) grow(newSize int64) (*GrowResult, error) {
	if err := f.Sync(); err != nil {
		return nil, err
	}
	f.commitMu.Lock()
	defer f.commitMu.Unlock()
	f.op.Lock()
	defer f.op.Unlock()
	if f.fatal != nil {
		return nil, f.fatal
	}

	p, err := f.planGrow(newSize)
	if err != nil {
		return nil, err
	}
	// Descriptors: current ones (with in-memory counts), then new groups.
	p.descs = make([]groupDesc, p.ng)
	for i := range f.groups {
		f.groups[i].mu.Lock()
		p.descs[i] = f.groups[i].desc
		f.groups[i].mu.Unlock()
	}
	tx := map[uint32][]byte{} // journaled blocks of the old file system
	if err := f.growLastGroup(p, tx); err != nil {
		return nil, err
	}
	if err := f.growResizeInode(p, tx); err != nil {
		return nil, err
	}
	if err := f.writeNewGroups(p); err != nil {
		return nil, err
	}

	var freeB, freeI uint64
	for _, d := range p.descs {
		freeB += uint64(d.FreeBlocksCount)
		freeI += uint64(d.FreeInodesCount)
	}
	p.sb.FreeBlocksCount, p.sb.FreeInodesCount = uint32(freeB), uint32(freeI)
	p.sb.BlockGroupNr = 0
	gdt := p.encodeGDT(f.bs)
	for i := uint32(0); i < p.gdt; i++ {
		tx[p.sb.FirstDataBlock+1+i] = gdt[int(i)*f.bs : int(i+1)*f.bs]
	}
	if f.jnl != nil {
		p.sb.FeatureIncompat |= incompatRecover
		if err := setRecoverBit(f.dev, true); err != nil {
			return nil, err
		}
		f.cache.forget(superblockOffset / uint32(f.bs))
	}
	sbBlk := uint32(superblockOffset / f.bs)
	raw := make([]byte, f.bs)
	if _, err := f.dev.ReadAt(raw, int64(sbBlk)*int64(f.bs)); err != nil {
		return nil, fmt.Errorf("ext3: read superblock: %w", err)
	}
	p.sb.encode(raw[superblockOffset%f.bs:])
	tx[sbBlk] = raw

	if err := f.writeGrowTx(tx); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrGrowIncomplete, err)
	}
	// The new geometry is committed: adopt it, then refresh old backups.
	f.sbMu.Lock()
	f.sb = p.sb
	f.sbMu.Unlock()
	groups := make([]group, p.ng)
	for i := range groups {
		groups[i].desc = p.descs[i]
		if i < len(f.groups) {
			groups[i].hint = f.groups[i].hint
		}
	}
	f.groups = groups
	f.size = newSize
	f.freeBlocks, f.freeInodes = int64(freeB), int64(freeI)
	if err := f.writeBackups(p, gdt, 1, p.oldNg); err != nil {
		return nil, fmt.Errorf("%w: grown, but refreshing backup superblocks: %w",
			ErrGrowIncomplete, err)
	}
	return &GrowResult{OldBlocks: p.old.BlocksCount, NewBlocks: p.sb.BlocksCount,
		OldGroups: p.oldNg, NewGroups: p.ng, GDTBlocksAdded: p.gdt - p.oldGdt}, nil
}

// growLastGroup extends the old last group to its new length: the padding
// bits past its old end are cleared in its block bitmap.
func (f *FS) growLastGroup(p *growPlan, tx map[uint32][]byte) error {
	g := p.oldNg - 1
	oldLen, newLen := p.old.groupBlocks(g), p.sb.groupBlocks(g)
	if newLen == oldLen {
		return nil
	}
	d := &p.descs[g]
	bm := make([]byte, f.bs)
	if _, err := f.dev.ReadAt(bm, int64(d.BlockBitmap)*int64(f.bs)); err != nil {
		return fmt.Errorf("ext3: read block bitmap of group %d: %w", g, err)
	}
	for i := oldLen; i < newLen; i++ {
		if testBit(bm, i) {
			clearBit(bm, i)
			d.FreeBlocksCount++
		} else {
			return corrupt("block bitmap", d.BlockBitmap, 0,
				"group %d: padding bit %d past the end is clear", g, i)
		}
	}
	tx[d.BlockBitmap] = bm
	return nil
}

// growResizeInode moves reserved GDT blocks into use and makes the rest
// list their backups in the new groups, adjusting inode 7's block count.
func (f *FS) growResizeInode(p *growPlan, tx map[uint32][]byte) error {
	old := p.old
	if !old.has(compatResizeInode) || old.ReservedGDTBlocks == 0 {
		return nil
	}
	apb := uint32(f.apb)
	blk, off := f.inodeLoc(resizeIno)
	itb := make([]byte, f.bs)
	if _, err := f.dev.ReadAt(itb, int64(blk)*int64(f.bs)); err != nil {
		return fmt.Errorf("ext3: read resize inode: %w", err)
	}
	in := &inode{ino: resizeIno, raw: itb[off : off+f.inodeSize]}
	dindNr := in.blockPtr(indSlot + 1)
	bad := func(format string, args ...any) error {
		return corrupt("resize inode", dindNr, resizeIno, format+"; run e2fsck", args...)
	}
	if dindNr < old.FirstDataBlock || dindNr >= old.BlocksCount {
		return bad("double indirect block %d", dindNr)
	}
	dind := make([]byte, f.bs)
	if _, err := f.dev.ReadAt(dind, int64(dindNr)*int64(f.bs)); err != nil {
		return fmt.Errorf("ext3: read resize inode block %d: %w", dindNr, err)
	}
	moved := p.gdt - p.oldGdt
	for i := uint32(0); i < uint32(old.ReservedGDTBlocks); i++ {
		pri := old.FirstDataBlock + 1 + p.oldGdt + i
		slot := 4 * ((p.oldGdt + i) % apb)
		if got := le.Uint32(dind[slot:]); got != pri {
			return bad("reserved GDT block %d listed as %d", pri, got)
		}
		ind := make([]byte, f.bs)
		if _, err := f.dev.ReadAt(ind, int64(pri)*int64(f.bs)); err != nil {
			return fmt.Errorf("ext3: read reserved GDT block %d: %w", pri, err)
		}
		for j, g := range p.oldBackups {
			if got, want := le.Uint32(ind[4*j:]), pri+g*old.BlocksPerGroup; got != want {
				return bad("reserved GDT block %d: backup %d is %d, want %d", pri, j, got, want)
			}
		}
		if i < moved {
			le.PutUint32(dind[slot:], 0) // now a GDT block; tx sets its contents
			continue
		}
		if len(p.newBkp) == 0 {
			continue
		}
		if len(p.oldBackups)+len(p.newBkp) > int(apb) {
			return fmt.Errorf("ext3: %d backup groups do not fit one indirect block: %w",
				len(p.oldBackups)+len(p.newBkp), syscall.EFBIG)
		}
		for j, g := range p.newBkp {
			le.PutUint32(ind[4*(len(p.oldBackups)+j):], pri+g*p.sb.BlocksPerGroup)
		}
		tx[pri] = ind
	}
	perBlock := int64(f.bs / 512)
	delta := -int64(moved)*int64(1+len(p.oldBackups)) +
		int64(uint32(old.ReservedGDTBlocks)-moved)*int64(len(p.newBkp))
	in.set32(iBlocksLo, uint32(int64(in.u32(iBlocksLo))+delta*perBlock))
	if moved > 0 {
		tx[dindNr] = dind
	}
	if delta != 0 {
		tx[blk] = itb
	}
	return nil
}

// writeNewGroups writes the bitmaps, zeroed inode tables and superblock and
// GDT copies of the groups past the old end, and fills their descriptors.
// None of it is part of the old file system.
func (f *FS) writeNewGroups(p *growPlan) error {
	sb := p.sb
	for g := p.oldNg; g < p.ng; g++ {
		start, meta := sb.groupFirstBlock(g), sb.groupMetaBlocks(g)
		used := meta + 2 + f.itBlocks
		n := sb.groupBlocks(g)
		p.descs[g] = groupDesc{BlockBitmap: start + meta, InodeBitmap: start + meta + 1,
			InodeTable: start + meta + 2, FreeBlocksCount: uint16(n - used),
			FreeInodesCount: uint16(sb.InodesPerGroup)}
		bb, ib := make([]byte, f.bs), make([]byte, f.bs)
		for i := uint32(0); i < used; i++ {
			setBit(bb, i)
		}
		for i := n; i < uint32(8*f.bs); i++ {
			setBit(bb, i)
		}
		for i := sb.InodesPerGroup; i < uint32(8*f.bs); i++ {
			setBit(ib, i)
		}
		d := &p.descs[g]
		if err := f.writeBlock(d.BlockBitmap, bb); err != nil {
			return err
		}
		if err := f.writeBlock(d.InodeBitmap, ib); err != nil {
			return err
		}
		err := zeroIfNeeded(f.dev, int64(d.InodeTable)*int64(f.bs), int64(f.itBlocks)*int64(f.bs))
		if err != nil {
			return err
		}
		if meta > 0 {
			// Reserved GDT copies: zero, like mke2fs leaves them.
			rsv := start + 1 + p.gdt
			err := zeroIfNeeded(f.dev, int64(rsv)*int64(f.bs),
				int64(sb.ReservedGDTBlocks)*int64(f.bs))
			if err != nil {
				return err
			}
		}
	}
	if err := f.writeBackups(p, p.encodeGDT(f.bs), p.oldNg, p.ng); err != nil {
		return err
	}
	if err := f.dev.Sync(); err != nil {
		return fmt.Errorf("ext3: sync new groups: %w", err)
	}
	return nil
}

// writeBackups writes the superblock and GDT copies of groups [from, to)
// that carry one.
func (f *FS) writeBackups(p *growPlan, gdt []byte, from, to uint32) error {
	sb := *p.sb
	sb.FeatureIncompat &^= incompatRecover
	for g := max(from, 1); g < to; g++ {
		if !sb.groupHasSuper(g) {
			continue
		}
		start := sb.groupFirstBlock(g)
		sb.BlockGroupNr = uint16(g)
		b := make([]byte, f.bs)
		sb.encode(b)
		if err := f.writeBlock(start, b); err != nil {
			return err
		}
		if _, err := f.dev.WriteAt(gdt, int64(start+1)*int64(f.bs)); err != nil {
			return fmt.Errorf("ext3: write GDT copy of group %d: %w", g, err)
		}
	}
	return f.dev.Sync()
}

func (f *FS) writeBlock(nr uint32, b []byte) error {
	if _, err := f.dev.WriteAt(b, int64(nr)*int64(f.bs)); err != nil {
		return fmt.Errorf("ext3: write block %d: %w", nr, err)
	}
	return nil
}

// encodeGDT returns the whole new group descriptor table.
func (p *growPlan) encodeGDT(bs int) []byte {
	gdt := make([]byte, int(p.gdt)*bs)
	for g := range p.descs {
		p.descs[g].encode(gdt[g*groupDescSize:])
	}
	return gdt
}

// writeGrowTx commits the blocks of the old file system that growth
// changes as one journal transaction (in place, GDT first and superblock
// last, without a journal). Cached copies are dropped.
func (f *FS) writeGrowTx(tx map[uint32][]byte) error {
	sbBlk := uint32(superblockOffset / f.bs)
	blocks := make([]metaBlock, 0, len(tx))
	for nr, data := range tx {
		if nr != sbBlk {
			blocks = append(blocks, metaBlock{nr: nr, data: data})
		}
	}
	// In block order: the checkpoint merges neighbours into one write.
	slices.SortFunc(blocks, func(a, b metaBlock) int { return cmp.Compare(a.nr, b.nr) })
	blocks = append(blocks, metaBlock{nr: sbBlk, data: tx[sbBlk]})
	for nr := range tx {
		f.cache.forget(nr)
	}
	if f.jnl != nil {
		if len(blocks) > f.jnl.capacity() {
			return fmt.Errorf("ext3: growth changes %d blocks, the journal takes %d: %w",
				len(blocks), f.jnl.capacity(), ErrTxTooBig)
		}
		return f.jnl.commit(blocks)
	}
	if err := f.dev.Sync(); err != nil {
		return err
	}
	for _, b := range blocks {
		if err := f.writeBlock(b.nr, b.data); err != nil {
			return err
		}
	}
	return f.dev.Sync()
}
