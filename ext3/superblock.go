package ext3

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
)

// Superblock location and magic.
const (
	superblockOffset = 1024
	superblockSize   = 1024
	ext2Magic        = 0xEF53
)

// Superblock s_state bits.
const (
	stateValid  = 0x1 // cleanly unmounted
	stateErrors = 0x2 // errors detected
)

// Compatible features (s_feature_compat). Unknown compat bits are harmless
// by definition; the ones listed here are those husk knows about.
const (
	compatDirPrealloc = 0x1
	compatHasJournal  = 0x4
	compatExtAttr     = 0x8
	compatResizeInode = 0x10
	compatDirIndex    = 0x20
)

// Incompatible features (s_feature_incompat).
const (
	incompatFiletype = 0x2
	incompatRecover  = 0x4
	incompatJnlDev   = 0x8
)

// Read-only compatible features (s_feature_ro_compat).
const (
	roCompatSparseSuper = 0x1
	roCompatLargeFile   = 0x2
	roCompatBtreeDir    = 0x4 // never used by Linux; tolerated
)

// Superblock s_flags bits.
const (
	flagsSignedHash   = 0x1
	flagsUnsignedHash = 0x2
)

// Default mount options (s_default_mount_opts).
const (
	defmXattrUser = 0x4
	defmACL       = 0x8
)

// Features husk refuses, by bit, with the names e2fsprogs uses. The lists
// are complete as of e2fsprogs 1.47; an unknown bit is refused by number.
var (
	incompatNames = map[uint32]string{
		0x1: "compression", 0x8: "journal_dev", 0x10: "meta_bg", 0x40: "extents",
		0x80: "64bit", 0x100: "mmp", 0x200: "flex_bg", 0x400: "ea_inode",
		0x1000: "dirdata", 0x2000: "metadata_csum_seed", 0x4000: "large_dir",
		0x8000: "inline_data", 0x10000: "encrypt", 0x20000: "casefold",
	}
	roCompatNames = map[uint32]string{
		0x8: "huge_file", 0x10: "uninit_bg", 0x20: "dir_nlink", 0x40: "extra_isize",
		0x80: "snapshot", 0x100: "quota", 0x200: "bigalloc", 0x400: "metadata_csum",
		0x800: "replica", 0x1000: "read-only", 0x2000: "project", 0x4000: "shared_blocks",
		0x8000: "verity", 0x10000: "orphan_present",
	}
	compatNames = map[uint32]string{
		0x1: "dir_prealloc", 0x2: "imagic_inodes", 0x4: "has_journal", 0x8: "ext_attr",
		0x10: "resize_inode", 0x20: "dir_index", 0x40: "lazy_bg", 0x80: "exclude_inode",
		0x100: "exclude_bitmap", 0x200: "sparse_super2", 0x400: "fast_commit",
		0x800: "stable_inodes", 0x1000: "orphan_file",
	}
)

const (
	supportedIncompat = incompatFiletype | incompatRecover
	supportedRoCompat = roCompatSparseSuper | roCompatLargeFile | roCompatBtreeDir
	// Compat features that change on-disk structures husk writes.
	refusedCompat = 0x200 | 0x400 | 0x1000 | 0x100 | 0x80
)

// superblock is struct ext2_super_block (ext4_super_block) in disk order,
// little endian, as documented in the kernel's
// Documentation/filesystems/ext4/super.rst. Fields after s_kbytes_written
// are kept verbatim in Rest.
type superblock struct {
	InodesCount       uint32     // 0x00
	BlocksCount       uint32     // 0x04
	RBlocksCount      uint32     // 0x08
	FreeBlocksCount   uint32     // 0x0C
	FreeInodesCount   uint32     // 0x10
	FirstDataBlock    uint32     // 0x14
	LogBlockSize      uint32     // 0x18
	LogClusterSize    uint32     // 0x1C
	BlocksPerGroup    uint32     // 0x20
	ClustersPerGroup  uint32     // 0x24
	InodesPerGroup    uint32     // 0x28
	Mtime             uint32     // 0x2C
	Wtime             uint32     // 0x30
	MntCount          uint16     // 0x34
	MaxMntCount       uint16     // 0x36
	Magic             uint16     // 0x38
	State             uint16     // 0x3A
	Errors            uint16     // 0x3C
	MinorRevLevel     uint16     // 0x3E
	Lastcheck         uint32     // 0x40
	Checkinterval     uint32     // 0x44
	CreatorOS         uint32     // 0x48
	RevLevel          uint32     // 0x4C
	DefResuid         uint16     // 0x50
	DefResgid         uint16     // 0x52
	FirstIno          uint32     // 0x54
	InodeSize         uint16     // 0x58
	BlockGroupNr      uint16     // 0x5A
	FeatureCompat     uint32     // 0x5C
	FeatureIncompat   uint32     // 0x60
	FeatureROCompat   uint32     // 0x64
	UUID              [16]byte   // 0x68
	VolumeName        [16]byte   // 0x78
	LastMounted       [64]byte   // 0x88
	AlgoBitmap        uint32     // 0xC8
	PreallocBlocks    uint8      // 0xCC
	PreallocDirBlocks uint8      // 0xCD
	ReservedGDTBlocks uint16     // 0xCE
	JournalUUID       [16]byte   // 0xD0
	JournalInum       uint32     // 0xE0
	JournalDev        uint32     // 0xE4
	LastOrphan        uint32     // 0xE8
	HashSeed          [4]uint32  // 0xEC
	DefHashVersion    uint8      // 0xFC
	JnlBackupType     uint8      // 0xFD
	DescSize          uint16     // 0xFE
	DefaultMountOpts  uint32     // 0x100
	FirstMetaBg       uint32     // 0x104
	MkfsTime          uint32     // 0x108
	JnlBlocks         [17]uint32 // 0x10C
	BlocksCountHi     uint32     // 0x150
	RBlocksCountHi    uint32     // 0x154
	FreeBlocksCountHi uint32     // 0x158
	MinExtraIsize     uint16     // 0x15C
	WantExtraIsize    uint16     // 0x15E
	Flags             uint32     // 0x160
	RaidStride        uint16     // 0x164
	MmpInterval       uint16     // 0x166
	MmpBlock          uint64     // 0x168
	RaidStripeWidth   uint32     // 0x170
	LogGroupsPerFlex  uint8      // 0x174
	ChecksumType      uint8      // 0x175
	ReservedPad       uint16     // 0x176
	KbytesWritten     uint64     // 0x178
	Rest              [0x280]byte
}

func decodeSuperblock(b []byte) *superblock {
	sb := new(superblock)
	binary.Read(bytes.NewReader(b[:superblockSize]), binary.LittleEndian, sb)
	return sb
}

func (sb *superblock) encode(b []byte) {
	var w bytes.Buffer
	binary.Write(&w, binary.LittleEndian, sb)
	copy(b, w.Bytes())
}

func (sb *superblock) blockSize() int { return 1024 << sb.LogBlockSize }

func (sb *superblock) inodeSize() int {
	if sb.RevLevel == 0 {
		return 128
	}
	return int(sb.InodeSize)
}

func (sb *superblock) firstIno() uint32 {
	if sb.RevLevel == 0 {
		return 11
	}
	return sb.FirstIno
}

func (sb *superblock) groupCount() uint32 {
	// In 64 bits: near 2^32 blocks the sum overflows (a 16 TiB image
	// had 0 groups, and mkfs divided by it).
	n := uint64(sb.BlocksCount) - uint64(sb.FirstDataBlock) + uint64(sb.BlocksPerGroup) - 1
	return uint32(n / uint64(sb.BlocksPerGroup))
}

func (sb *superblock) has(compat uint32) bool { return sb.FeatureCompat&compat != 0 }

// checkFeatures refuses features husk cannot honour, naming the first one.
func (sb *superblock) checkFeatures(path string) error {
	if sb.RevLevel == 0 {
		return nil
	}
	names := func(v uint32, known map[uint32]string) string {
		for bit := uint32(1); bit != 0; bit <<= 1 {
			if v&bit != 0 {
				if n, ok := known[bit]; ok {
					return n
				}
				return fmt.Sprintf("0x%x", bit)
			}
		}
		return ""
	}
	if x := sb.FeatureIncompat &^ supportedIncompat; x != 0 {
		return &unsupportedError{path, names(x, incompatNames)}
	}
	if x := sb.FeatureROCompat &^ supportedRoCompat; x != 0 {
		return &unsupportedError{path, names(x, roCompatNames)}
	}
	if x := sb.FeatureCompat & refusedCompat; x != 0 {
		return &unsupportedError{path, names(x, compatNames)}
	}
	return nil
}

// validate checks the geometry so that later arithmetic cannot overflow or
// index out of range. size is the device size in bytes.
func (sb *superblock) validate(size int64) error {
	bad := func(format string, args ...any) error {
		return corrupt("superblock", 0, 0, format, args...)
	}
	switch {
	case sb.Magic != ext2Magic:
		return bad("bad magic 0x%04x, not an ext2/ext3 file system", sb.Magic)
	case sb.RevLevel > 1:
		return bad("unknown revision %d", sb.RevLevel)
	case sb.LogBlockSize > 6:
		return bad("block size 1024<<%d too large", sb.LogBlockSize)
	}
	bs := uint32(sb.blockSize())
	isz := sb.inodeSize()
	switch {
	case sb.LogClusterSize != sb.LogBlockSize:
		return bad("fragment size differs from block size")
	case sb.BlocksPerGroup == 0 || sb.BlocksPerGroup > 8*bs:
		return bad("%d blocks per group", sb.BlocksPerGroup)
	case sb.InodesPerGroup == 0 || sb.InodesPerGroup > 8*bs:
		return bad("%d inodes per group", sb.InodesPerGroup)
	case isz < 128 || isz > int(bs) || isz&(isz-1) != 0:
		return bad("inode size %d", isz)
	case bs == 1024 && sb.FirstDataBlock != 1, bs > 1024 && sb.FirstDataBlock != 0:
		return bad("first data block %d for block size %d", sb.FirstDataBlock, bs)
	case sb.BlocksCount <= sb.FirstDataBlock:
		return bad("%d blocks", sb.BlocksCount)
	case int64(sb.BlocksCount)*int64(bs) > size:
		return bad("%d blocks of %d bytes do not fit the %d-byte device", sb.BlocksCount, bs, size)
	case uint64(sb.InodesCount) != uint64(sb.groupCount())*uint64(sb.InodesPerGroup):
		return bad("inode count %d is not %d groups x %d",
			sb.InodesCount, sb.groupCount(), sb.InodesPerGroup)
	case sb.firstIno() < 11 || sb.firstIno() >= sb.InodesCount:
		return bad("first inode %d", sb.firstIno())
	case sb.RBlocksCount > sb.BlocksCount:
		return bad("reserved block count %d", sb.RBlocksCount)
	case sb.BlocksCountHi != 0:
		return bad("blocks_count_hi set without 64bit")
	}
	return nil
}

func (sb *superblock) label() string {
	return strings.TrimRight(string(sb.VolumeName[:]), "\x00")
}

// FeatureNames names the feature bits set in compat, incompat and
// rocompat (superblock fields s_feature_*) as e2fsprogs does, for
// messages about images husk cannot use; unknown bits by number.
func FeatureNames(compat, incompat, rocompat uint32) []string {
	var out []string
	for _, f := range []struct {
		v     uint32
		names map[uint32]string
	}{{compat, compatNames}, {incompat, incompatNames}, {rocompat, roCompatNames}} {
		for bit := uint32(1); bit != 0; bit <<= 1 {
			if f.v&bit == 0 {
				continue
			}
			if n, ok := f.names[bit]; ok {
				out = append(out, n)
			} else {
				out = append(out, fmt.Sprintf("0x%x", bit))
			}
		}
	}
	return out
}

// featureString lists the features in the order dumpe2fs prints them.
func (sb *superblock) featureString() string {
	var out []string
	add := func(v uint32, m map[uint32]string) {
		for bit := uint32(1); bit != 0; bit <<= 1 {
			if v&bit != 0 {
				if n, ok := m[bit]; ok {
					out = append(out, n)
				} else {
					out = append(out, fmt.Sprintf("0x%x", bit))
				}
			}
		}
	}
	add(sb.FeatureCompat, compatNames)
	add(sb.FeatureIncompat, map[uint32]string{0x2: "filetype", 0x4: "needs_recovery"})
	add(sb.FeatureIncompat&^(incompatFiletype|incompatRecover), incompatNames)
	add(sb.FeatureROCompat, map[uint32]string{
		0x1: "sparse_super", 0x2: "large_file", 0x4: "btree_dir"})
	add(sb.FeatureROCompat&^supportedRoCompat, roCompatNames)
	return strings.Join(out, " ")
}

// groupHasSuper reports whether group g holds a superblock backup: with
// sparse_super only groups 0, 1 and powers of 3, 5 and 7 do.
func (sb *superblock) groupHasSuper(g uint32) bool {
	if g <= 1 || sb.FeatureROCompat&roCompatSparseSuper == 0 {
		return true
	}
	if g&1 == 0 {
		return false
	}
	for _, p := range []uint32{3, 5, 7} {
		n := p
		for n < g {
			n *= p
		}
		if n == g {
			return true
		}
	}
	return false
}
