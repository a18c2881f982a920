package ext3

import (
	"encoding/binary"
	"sync"
	"syscall"
)

// Special inode numbers.
const (
	RootIno       = 2
	resizeIno     = 7
	journalIno    = 8
	lostFoundName = "lost+found"
)

// Mode bits (S_IF*).
const (
	sIFMT   = 0xF000
	sIFSOCK = 0xC000
	sIFLNK  = 0xA000
	sIFREG  = 0x8000
	sIFBLK  = 0x6000
	sIFDIR  = 0x4000
	sIFCHR  = 0x2000
	sIFIFO  = 0x1000
)

// Inode flags (i_flags).
const (
	flIndex      = 0x1000     // EXT2_INDEX_FL: hashed directory
	flImmutable  = 0x10       // EXT2_IMMUTABLE_FL
	flAppend     = 0x20       // EXT2_APPEND_FL
	flHugeFile   = 0x40000    // EXT4_HUGE_FILE_FL
	flExtents    = 0x80000    // EXT4_EXTENTS_FL
	flEAInode    = 0x200000   // EXT4_EA_INODE_FL
	flInlineData = 0x10000000 // EXT4_INLINE_DATA_FL
)

// Byte offsets in struct ext2_inode (Documentation/filesystems/ext4/inodes.rst).
const (
	iMode        = 0x00
	iUID         = 0x02
	iSizeLo      = 0x04
	iAtime       = 0x08
	iCtime       = 0x0C
	iMtime       = 0x10
	iDtime       = 0x14
	iGID         = 0x18
	iLinks       = 0x1A
	iBlocksLo    = 0x1C
	iFlags       = 0x20
	iBlock       = 0x28 // 15 x uint32
	iGeneration  = 0x64
	iFileACL     = 0x68
	iSizeHigh    = 0x6C
	iBlocksHi    = 0x74
	iFileACLHi   = 0x76
	iUIDHigh     = 0x78
	iGIDHigh     = 0x7A
	iExtraIsize  = 0x80
	iCtimeExtra  = 0x84
	iMtimeExtra  = 0x88
	iAtimeExtra  = 0x8C
	iCrtime      = 0x90
	iCrtimeExtra = 0x94
	goodOldInode = 128
	// extraIsize is what mke2fs and the kernel put in i_extra_isize: it
	// covers the nanosecond and creation time fields.
	extraIsize = 32
)

// inode is an in-memory inode: its on-disk bytes plus runtime state.
type inode struct {
	ino uint32
	// mu guards raw and everything the inode owns: its block map,
	// directory entries, xattr block and file data.
	mu  sync.RWMutex
	raw []byte // the on-disk inode, inodeSize bytes

	// Guarded by FS.imu.
	refs  int
	opens int
	// orphan is set when nlink reached 0 while the inode was open; it is
	// freed on the last Release.
	orphan bool
	// dying is set once the inode is being freed: Open refuses it from
	// then on, where counting an open would leave a handle on a number
	// about to be handed out again.
	dying bool

	// dir is the in-memory name index of a big directory (guarded by mu).
	dir   *dirIndex
	idxMu sync.Mutex // serialises building dir under a shared mu
	// goal is where the next block allocation for this inode should start
	// (guarded by mu; 0 = the inode's group).
	goal uint32
	// wbStart and wbEnd are the device byte range of file data written
	// last and not yet handed to write-back (guarded by mu; writeback.go).
	wbStart, wbEnd int64
}

var le = binary.LittleEndian

func (in *inode) u16(off int) uint16      { return le.Uint16(in.raw[off:]) }
func (in *inode) u32(off int) uint32      { return le.Uint32(in.raw[off:]) }
func (in *inode) set16(off int, v uint16) { le.PutUint16(in.raw[off:], v) }
func (in *inode) set32(off int, v uint32) { le.PutUint32(in.raw[off:], v) }

func (in *inode) mode() uint32  { return uint32(in.u16(iMode)) }
func (in *inode) ftype() uint32 { return in.mode() & sIFMT }
func (in *inode) isDir() bool   { return in.ftype() == sIFDIR }
func (in *inode) isReg() bool   { return in.ftype() == sIFREG }
func (in *inode) isLnk() bool   { return in.ftype() == sIFLNK }

func (in *inode) uid() uint32 { return uint32(in.u16(iUID)) | uint32(in.u16(iUIDHigh))<<16 }
func (in *inode) gid() uint32 { return uint32(in.u16(iGID)) | uint32(in.u16(iGIDHigh))<<16 }
func (in *inode) setUID(v uint32) {
	in.set16(iUID, uint16(v))
	in.set16(iUIDHigh, uint16(v>>16))
}
func (in *inode) setGID(v uint32) {
	in.set16(iGID, uint16(v))
	in.set16(iGIDHigh, uint16(v>>16))
}

func (in *inode) size() uint64 {
	return uint64(in.u32(iSizeLo)) | uint64(in.u32(iSizeHigh))<<32
}
func (in *inode) setSize(v uint64) {
	in.set32(iSizeLo, uint32(v))
	in.set32(iSizeHigh, uint32(v>>32))
}

func (in *inode) nlink() uint32     { return uint32(in.u16(iLinks)) }
func (in *inode) setNlink(n uint32) { in.set16(iLinks, uint16(n)) }
func (in *inode) flags() uint32     { return in.u32(iFlags) }
func (in *inode) blocks512() uint64 { return uint64(in.u32(iBlocksLo)) }
func (in *inode) addBlocks(fsBlocks int64, bs int) {
	in.set32(iBlocksLo, uint32(int64(in.u32(iBlocksLo))+fsBlocks*int64(bs/512)))
}
func (in *inode) blockPtr(i int) uint32       { return in.u32(iBlock + 4*i) }
func (in *inode) setBlockPtr(i int, v uint32) { in.set32(iBlock+4*i, v) }
func (in *inode) fileACL() uint32             { return in.u32(iFileACL) }
func (in *inode) setFileACL(v uint32)         { in.set32(iFileACL, v) }

// extraSize is i_extra_isize for large inodes, 0 for 128-byte ones.
func (in *inode) extraSize() int {
	if len(in.raw) <= goodOldInode {
		return 0
	}
	return int(in.u16(iExtraIsize))
}

// Timestamp slots: the base field and the matching _extra field.
type tsSlot struct{ base, extra int }

var (
	tsAtime = tsSlot{iAtime, iAtimeExtra}
	tsMtime = tsSlot{iMtime, iMtimeExtra}
	tsCtime = tsSlot{iCtime, iCtimeExtra}
)

// Timespec is a time stamp in seconds and nanoseconds since the Unix epoch.
type Timespec struct {
	Sec  int64
	Nsec uint32
}

// time decodes a time stamp: the extra field's low two bits extend the
// signed 32-bit seconds (epoch bits), the upper 30 bits are nanoseconds.
func (in *inode) time(s tsSlot) Timespec {
	sec := int64(int32(in.u32(s.base)))
	if in.extraSize() >= s.extra+4-goodOldInode {
		x := in.u32(s.extra)
		sec += int64(x&3) << 32
		return Timespec{Sec: sec, Nsec: x >> 2}
	}
	return Timespec{Sec: sec}
}

// The seconds a time stamp can hold: a signed 32-bit field, which the
// two epoch bits of an _extra field extend upwards to 2446-05-10.
const (
	minTimeSec      = -1 << 31
	maxTimeSec      = 1<<31 - 1
	maxExtraTimeSec = 1<<34 - 1 + minTimeSec
)

// setTime stores t, clamped to what the slot can hold as the kernel
// clamps (timestamp_truncate): a time out of range would wrap, and 2500
// would read back as 1955.
func (in *inode) setTime(s tsSlot, t Timespec) {
	extra := in.extraSize() >= s.extra+4-goodOldInode
	hi := int64(maxTimeSec)
	if extra {
		hi = maxExtraTimeSec
	}
	if t.Sec <= minTimeSec || t.Sec >= hi {
		t = Timespec{Sec: min(max(t.Sec, minTimeSec), hi)}
	}
	in.set32(s.base, uint32(t.Sec))
	if extra {
		epoch := uint32((t.Sec-int64(int32(uint32(t.Sec))))>>32) & 3
		in.set32(s.extra, t.Nsec<<2|epoch)
	}
}

// rdev decodes a device number into the kernel's new_encode_dev format:
// old (16-bit) encoding in i_block[0], or new encoding in i_block[1].
func (in *inode) rdev() uint32 {
	if v := in.blockPtr(0); v != 0 {
		return (v>>8&0xff)<<8 | v&0xff
	}
	return in.blockPtr(1)
}

// setRdev stores dev like the kernel's ext4_set_inode: the old encoding if
// it fits, the new one otherwise.
func (in *inode) setRdev(dev uint32) {
	major, minor := (dev>>8)&0xfff, (dev&0xff)|((dev>>12)&0xfff00)
	if major < 256 && minor < 256 {
		in.setBlockPtr(0, major<<8|minor)
		in.setBlockPtr(1, 0)
		return
	}
	in.setBlockPtr(0, 0)
	in.setBlockPtr(1, dev)
}

// hasBlockMap reports whether i_block holds block pointers (not a device
// number or a fast symlink).
func (in *inode) hasBlockMap() bool {
	switch in.ftype() {
	case sIFREG, sIFDIR:
		return true
	case sIFLNK:
		return !in.isFastSymlink()
	}
	return false
}

// isFastSymlink reports whether the target lives in i_block. e2fsprogs'
// ext2fs_is_fast_symlink decides by size alone (shorter than i_block), and
// the kernel writes targets of up to 59 bytes that way.
func (in *inode) isFastSymlink() bool {
	return in.isLnk() && in.size() < 60
}

// Attr is the stat information of an inode.
type Attr struct {
	Ino    uint32
	Mode   uint32 // S_IF* | permission bits
	Nlink  uint32
	Uid    uint32
	Gid    uint32
	Size   uint64
	Blocks uint64 // 512-byte units
	Rdev   uint32
	Atime  Timespec
	Mtime  Timespec
	Ctime  Timespec
}

func (in *inode) attr() Attr {
	a := Attr{
		Ino: in.ino, Mode: in.mode(), Nlink: in.nlink(), Uid: in.uid(), Gid: in.gid(),
		Size: in.size(), Blocks: in.blocks512(),
		Atime: in.time(tsAtime), Mtime: in.time(tsMtime), Ctime: in.time(tsCtime),
	}
	if t := in.ftype(); t == sIFCHR || t == sIFBLK {
		a.Rdev = in.rdev()
	}
	return a
}

// inodeLoc returns the inode table block and byte offset of inode ino.
func (f *FS) inodeLoc(ino uint32) (uint32, int) {
	g := (ino - 1) / f.sb.InodesPerGroup
	idx := (ino - 1) % f.sb.InodesPerGroup
	off := int64(idx) * int64(f.inodeSize)
	return f.groups[g].desc.InodeTable + uint32(off/int64(f.bs)), int(off % int64(f.bs))
}

func (f *FS) validIno(ino uint32) bool {
	return ino == RootIno || (ino >= f.sb.firstIno() && ino <= f.sb.InodesCount) ||
		ino == journalIno || ino == resizeIno
}

// inodeReadahead is how many inode table blocks a cache miss reads.
const inodeReadahead = 16

// iget returns the in-memory inode ino with a reference; release it with iput.
func (f *FS) iget(ino uint32) (*inode, error) {
	if ino < 1 || ino > f.sb.InodesCount {
		return nil, syscall.ENOENT
	}
	f.imu.Lock()
	if in := f.inodes[ino]; in != nil {
		in.refs++
		f.imu.Unlock()
		return in, nil
	}
	f.imu.Unlock()

	blk, off := f.inodeLoc(ino)
	g := (ino - 1) / f.sb.InodesPerGroup
	if end := f.groups[g].desc.InodeTable + f.itBlocks; blk < end {
		f.cache.readahead(blk, int(min(end-blk, inodeReadahead)))
	}
	b, err := f.cache.get(blk)
	if err != nil {
		return nil, err
	}
	raw := make([]byte, f.inodeSize)
	b.mu.Lock()
	copy(raw, b.data[off:])
	b.mu.Unlock()
	f.cache.put(b)
	in := &inode{ino: ino, raw: raw, refs: 1}
	if err := f.checkInode(in); err != nil {
		return nil, err
	}

	f.imu.Lock()
	defer f.imu.Unlock()
	if old := f.inodes[ino]; old != nil {
		old.refs++
		return old, nil
	}
	f.inodes[ino] = in
	f.evictInodesLocked()
	return in, nil
}

func (f *FS) iput(in *inode) {
	f.imu.Lock()
	in.refs--
	f.imu.Unlock()
}

// evictInodesLocked drops unreferenced, unopened inodes past the limit. Their
// bytes are already in the inode table buffers, so nothing is lost.
func (f *FS) evictInodesLocked() {
	if len(f.inodes) <= f.maxInodes {
		return
	}
	n := len(f.inodes) / 4
	for ino, in := range f.inodes {
		if n == 0 {
			break
		}
		if in.refs == 0 && in.opens == 0 && !in.orphan {
			delete(f.inodes, ino)
			n--
		}
	}
}

// ext4InodeFlags are the inode flags that only an ext4 feature allows.
var ext4InodeFlags = []struct {
	flag uint32
	name string // the flag's feature
}{
	{flExtents, "extents"}, {flInlineData, "inline_data"},
	{flHugeFile, "huge_file"}, {flEAInode, "ea_inode"},
}

// checkInode refuses inodes husk cannot handle.
func (f *FS) checkInode(in *inode) error {
	if in.nlink() == 0 && in.mode() == 0 {
		return nil // free inode; callers treat it as absent
	}
	// load refused a superblock with any of these ext4 features, so an
	// inode carrying one of their flags is garbage (a damaged inode
	// table), not an ext4 file: say so rather than blame ext4.
	fl := in.flags()
	for _, x := range ext4InodeFlags {
		if fl&x.flag != 0 {
			return corrupt("inode", 0, in.ino,
				"%s flag set on a file system without the %s feature", x.name, x.name)
		}
	}
	if x := in.extraSize(); x != 0 && (x < 4 || goodOldInode+x > len(in.raw) || x&3 != 0) {
		return corrupt("inode", 0, in.ino, "i_extra_isize %d", x)
	}
	if in.isDir() && in.size()/uint64(f.bs) > uint64(f.sb.BlocksCount) {
		return corrupt("directory inode", 0, in.ino, "size %d exceeds the file system", in.size())
	}
	if in.isDir() && in.size()%uint64(f.bs) != 0 {
		return corrupt("directory inode", 0, in.ino,
			"size %d is not a multiple of the block size", in.size())
	}
	return nil
}

// writeInode copies in.raw into its inode table block and adds the block to
// the running transaction.
// Preconditions: in.mu held for writing; the op lock held shared.
func (f *FS) writeInode(in *inode) error {
	blk, off := f.inodeLoc(in.ino)
	b, err := f.cache.get(blk)
	if err != nil {
		return err
	}
	b.mu.Lock()
	copy(b.data[off:off+f.inodeSize], in.raw)
	f.cache.markDirty(b)
	b.mu.Unlock()
	f.cache.put(b)
	return nil
}
