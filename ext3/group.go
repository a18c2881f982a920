package ext3

import (
	"encoding/binary"
	"sync"
)

// groupDescSize is sizeof(struct ext2_group_desc); without 64bit the
// descriptor is always 32 bytes.
const groupDescSize = 32

// groupDesc is struct ext2_group_desc in disk order (little endian).
type groupDesc struct {
	BlockBitmap     uint32 // 0x00
	InodeBitmap     uint32 // 0x04
	InodeTable      uint32 // 0x08
	FreeBlocksCount uint16 // 0x0C
	FreeInodesCount uint16 // 0x0E
	UsedDirsCount   uint16 // 0x10
	Flags           uint16 // 0x12
	Rest            [12]byte
}

func decodeGroupDesc(b []byte) groupDesc {
	var g groupDesc
	le := binary.LittleEndian
	g.BlockBitmap = le.Uint32(b[0:])
	g.InodeBitmap = le.Uint32(b[4:])
	g.InodeTable = le.Uint32(b[8:])
	g.FreeBlocksCount = le.Uint16(b[12:])
	g.FreeInodesCount = le.Uint16(b[14:])
	g.UsedDirsCount = le.Uint16(b[16:])
	g.Flags = le.Uint16(b[18:])
	copy(g.Rest[:], b[20:32])
	return g
}

func (g *groupDesc) encode(b []byte) {
	le := binary.LittleEndian
	le.PutUint32(b[0:], g.BlockBitmap)
	le.PutUint32(b[4:], g.InodeBitmap)
	le.PutUint32(b[8:], g.InodeTable)
	le.PutUint16(b[12:], g.FreeBlocksCount)
	le.PutUint16(b[14:], g.FreeInodesCount)
	le.PutUint16(b[16:], g.UsedDirsCount)
	le.PutUint16(b[18:], g.Flags)
	copy(b[20:32], g.Rest[:])
}

// group is the in-memory state of one block group.
type group struct {
	mu sync.Mutex // guards desc and the group's bitmap blocks
	// desc is the descriptor; serialised into the GDT block at commit.
	desc groupDesc
	// pendingFree counts blocks freed in this group whose bitmap bits are
	// cleared only when the freeing transaction commits (see alloc.go).
	pendingFree []uint32
	// quarantine holds blocks whose bitmap bits the committing
	// transaction clears: free on disk once it is durable, but not to be
	// handed out before, or new data could land in a block the last
	// durable metadata still points at. Emptied when the commit ends.
	quarantine map[uint32]struct{}
	// dirty marks desc as changed since the last commit.
	dirty bool
	// hint is where the next block search in this group starts.
	hint uint32
	// checked is set once the group's bitmaps were validated (see
	// bitmapcheck.go); bad is the sticky error if they failed: nothing is
	// allocated from or freed into the group afterwards.
	checked bool
	bad     error
}

// gdtBlocks is the number of blocks the group descriptor table occupies.
func (sb *superblock) gdtBlocks() uint32 {
	perBlock := uint32(sb.blockSize() / groupDescSize)
	return (sb.groupCount() + perBlock - 1) / perBlock
}

// groupFirstBlock is the first block of group g.
func (sb *superblock) groupFirstBlock(g uint32) uint32 {
	return sb.FirstDataBlock + g*sb.BlocksPerGroup
}

// groupBlocks is the number of blocks in group g (the last may be short).
func (sb *superblock) groupBlocks(g uint32) uint32 {
	if g == sb.groupCount()-1 {
		return sb.BlocksCount - sb.groupFirstBlock(g)
	}
	return sb.BlocksPerGroup
}

// groupMetaBlocks is the number of blocks at the start of group g used by
// the superblock backup, GDT and reserved GDT blocks (0 if none).
func (sb *superblock) groupMetaBlocks(g uint32) uint32 {
	if !sb.groupHasSuper(g) {
		return 0
	}
	return 1 + sb.gdtBlocks() + uint32(sb.ReservedGDTBlocks)
}

// validateGroups checks every descriptor points inside its own group and
// that its free counts are possible.
func (f *FS) validateGroups() error {
	sb := f.sb
	itBlocks := (sb.InodesPerGroup*uint32(f.inodeSize) + uint32(f.bs) - 1) / uint32(f.bs)
	for i := range f.groups {
		g := &f.groups[i].desc
		gi := uint32(i)
		lo := sb.groupFirstBlock(gi)
		hi := lo + sb.groupBlocks(gi)
		in := func(b, n uint32) bool { return b >= lo && b+n <= hi && b+n > b }
		bad := func(what string, v uint32) error {
			return corrupt("group descriptor", 0, 0, "group %d: %s %d outside blocks %d-%d",
				i, what, v, lo, hi-1)
		}
		switch {
		case !in(g.BlockBitmap, 1):
			return bad("block bitmap", g.BlockBitmap)
		case !in(g.InodeBitmap, 1):
			return bad("inode bitmap", g.InodeBitmap)
		case !in(g.InodeTable, itBlocks):
			return bad("inode table", g.InodeTable)
		case uint32(g.FreeBlocksCount) > sb.groupBlocks(gi):
			return corrupt("group descriptor", 0, 0, "group %d: %d free blocks", i, g.FreeBlocksCount)
		case uint32(g.FreeInodesCount) > sb.InodesPerGroup:
			return corrupt("group descriptor", 0, 0, "group %d: %d free inodes", i, g.FreeInodesCount)
		}
	}
	return nil
}

// isMetaBlock reports whether b is a fixed metadata block (superblock, GDT,
// bitmaps, inode table) that no inode may point at.
func (f *FS) isMetaBlock(b uint32) bool {
	sb := f.sb
	if b < sb.FirstDataBlock || b >= sb.BlocksCount {
		return true
	}
	g := (b - sb.FirstDataBlock) / sb.BlocksPerGroup
	off := b - sb.groupFirstBlock(g)
	if off < sb.groupMetaBlocks(g) {
		return true
	}
	d := &f.groups[g].desc
	return b == d.BlockBitmap || b == d.InodeBitmap ||
		(b >= d.InodeTable && b < d.InodeTable+f.itBlocks)
}
