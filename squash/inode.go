// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"syscall"
)

// Inode types (squashfs_fs.h SQUASHFS_*_TYPE). The "long" forms add nlink,
// xattr index and wider fields.
const (
	typeDir      = 1
	typeReg      = 2
	typeSymlink  = 3
	typeBlkdev   = 4
	typeChrdev   = 5
	typeFifo     = 6
	typeSocket   = 7
	typeLDir     = 8
	typeLReg     = 9
	typeLSymlink = 10
	typeLBlkdev  = 11
	typeLChrdev  = 12
	typeLFifo    = 13
	typeLSocket  = 14
	longOffset   = 7 // long type = basic type + 7
)

// st_mode file type bits.
const (
	modeTypeMask = syscall.S_IFMT
	modeDir      = syscall.S_IFDIR
	modeReg      = syscall.S_IFREG
	modeSymlink  = syscall.S_IFLNK
	modeBlk      = syscall.S_IFBLK
	modeChr      = syscall.S_IFCHR
	modeFifo     = syscall.S_IFIFO
	modeSock     = syscall.S_IFSOCK
	modePermMask = 0o7777 // squashfs stores permission and suid/sgid/sticky bits
)

// typeModes maps a basic inode type to its st_mode type bits.
var typeModes = [8]uint32{0, modeDir, modeReg, modeSymlink, modeBlk, modeChr, modeFifo,
	modeSock}

const (
	noXattr      = 0xffffffff
	maxSymlink   = 4096 // PATH_MAX; the kernel refuses longer targets too
	inodeHdrSize = 16
)

// inodeHeader is struct squashfs_base_inode, common to all inode types.
type inodeHeader struct {
	Type  uint16
	Mode  uint16 // permission bits only
	UID   uint16 // id table index
	GID   uint16 // id table index
	Mtime uint32
	Ino   uint32
}

// Inode is a parsed inode. Inodes returned by [FS.Inode] are shared between
// callers and must not be modified.
type Inode struct {
	Ref      Ref
	Ino      uint32 // squashfs inode number
	Mode     uint32 // st_mode: S_IF* type | setuid/setgid/sticky | permissions
	Nlink    uint32
	Uid, Gid uint32 // resolved through the id table
	Mtime    int64
	Size     uint64 // file size; symlink target length; directory listing size+3
	Rdev     uint32 // Linux dev_t encoding (major<<8 | minor low 8 | minor high<<12)
	// Sparse is how many bytes of a regular file the image stores as
	// sparse blocks (all zeros, no data), as its extended inode records.
	Sparse uint64

	xattr  uint32 // xattr id table index, or noXattr
	parent uint32 // directories: parent inode number

	// Directories: the listing's position in the directory table and the
	// position and count of the directory index that follows the inode.
	dirBlock  uint32
	dirOffset uint16
	idxCount  uint16
	idxBlock  int64
	idxOffset int

	// Regular files: first data block, fragment, and the block list that
	// follows the inode (read on first use into blocks).
	start      uint64
	frag       uint32
	fragOffset uint32
	nblocks    int64
	listBlock  int64
	listOffset int
	blocks     atomic.Pointer[blockList]
	raNext     atomic.Int64 // block after the last one read, 0 before any read
	prefetched atomic.Bool  // a whole-file prefetch was started (readahead.go)

	target string // symlinks
}

// inodeCost is the cache cost of a parsed inode without its symlink
// target: the struct (about 200 bytes) and the cache entry. Block lists
// read later are not counted.
// TODO: count block lists (12 bytes a block) once the cache can re-cost
// an entry; a cached inode of a huge file holds its whole list.
const inodeCost = 200 + lruEntryCost

// IsDir reports whether n is a directory.
func (n *Inode) IsDir() bool { return n.Mode&modeTypeMask == modeDir }

// Inode returns the inode at ref, parsing it on first use.
func (f *FS) Inode(ref Ref) (*Inode, error) {
	return f.inodes.getOrLoad(uint64(ref), func() (*Inode, int64, error) {
		n, err := f.parseInode(ref)
		if err != nil {
			return nil, 0, annotate(err, "ref %d:%d", uint64(ref)>>16, uint64(ref)&0xffff)
		}
		return n, inodeCost + int64(len(n.target)), nil
	})
}

// parseInode reads the inode at ref from the inode table.
func (f *FS) parseInode(ref Ref) (*Inode, error) {
	const what = "inode"
	blk := int64(f.sb.InodeTableStart) + int64(uint64(ref)>>16)
	if uint64(ref)>>16 >= f.sb.DirTableStart-f.sb.InodeTableStart {
		return nil, formatErr(blk, what, "reference outside the inode table")
	}
	m, err := f.newMetaReader(blk, int(ref&0xffff), what)
	if err != nil {
		return nil, err
	}
	var raw [inodeHdrSize]byte
	if err := m.read(raw[:]); err != nil {
		return nil, err
	}
	h := inodeHeader{
		Type: le16(raw[0:]), Mode: le16(raw[2:]), UID: le16(raw[4:]),
		GID: le16(raw[6:]), Mtime: le32(raw[8:]), Ino: le32(raw[12:]),
	}

	n := &Inode{Ref: ref, Ino: h.Ino, Mtime: int64(h.Mtime), Nlink: 1, xattr: noXattr}
	if n.Uid, err = f.id(h.UID); err != nil {
		return nil, err
	}
	if n.Gid, err = f.id(h.GID); err != nil {
		return nil, err
	}
	if h.Type < typeDir || h.Type > typeLSocket {
		return nil, formatErr(blk, what, "unknown inode type %d", h.Type)
	}
	base := h.Type
	if base > typeSocket {
		base -= longOffset
	}
	n.Mode = typeModes[base] | uint32(h.Mode)&modePermMask
	if h.Ino == 0 || h.Ino > f.sb.Inodes {
		return nil, formatErr(blk, what, "inode number %d outside 1..%d", h.Ino,
			f.sb.Inodes)
	}

	switch h.Type {
	case typeDir, typeLDir:
		err = f.parseDir(m, n, h.Type == typeLDir)
	case typeReg, typeLReg:
		err = f.parseReg(m, n, h.Type == typeLReg)
	case typeSymlink, typeLSymlink:
		err = f.parseSymlink(m, n, h.Type == typeLSymlink)
	default:
		err = f.parseSpecial(m, n, h.Type > typeSocket,
			base == typeBlkdev || base == typeChrdev)
	}
	if err != nil {
		return nil, wrapFormat(blk, what, err)
	}
	if n.Nlink == 0 {
		return nil, formatErr(blk, what, "link count is zero")
	}
	return n, nil
}

// fieldReader decodes consecutive little-endian fields and remembers the
// first error, so parsers read like the on-disk struct.
type fieldReader struct {
	m   *metaReader
	b   [8]byte
	err error
}

func (r *fieldReader) next(n int) []byte {
	if r.err == nil {
		r.err = r.m.read(r.b[:n])
	}
	return r.b[:n]
}

func (r *fieldReader) u16() uint16 { return binary.LittleEndian.Uint16(r.next(2)) }
func (r *fieldReader) u32() uint32 { return binary.LittleEndian.Uint32(r.next(4)) }
func (r *fieldReader) u64() uint64 { return binary.LittleEndian.Uint64(r.next(8)) }

// parseDir reads squashfs_dir_inode or squashfs_ldir_inode. The long form
// is followed by its directory index, whose position is recorded.
func (f *FS) parseDir(m *metaReader, n *Inode, long bool) error {
	r := fieldReader{m: m}
	if !long {
		n.dirBlock, n.Nlink, n.Size = r.u32(), r.u32(), uint64(r.u16())
		n.dirOffset, n.parent = r.u16(), r.u32()
	} else {
		n.Nlink, n.Size, n.dirBlock, n.parent = r.u32(), uint64(r.u32()), r.u32(), r.u32()
		n.idxCount, n.dirOffset, n.xattr = r.u16(), r.u16(), r.u32()
		n.idxBlock, n.idxOffset = m.pos()
	}
	if r.err != nil {
		return r.err
	}
	if n.dirOffset >= metaSize {
		return fmt.Errorf("%w: directory listing offset %d", ErrCorrupt, n.dirOffset)
	}
	if uint64(n.dirBlock) >= uint64(f.end)-f.sb.DirTableStart {
		return fmt.Errorf("%w: directory listing block %d past image end", ErrCorrupt,
			n.dirBlock)
	}
	return nil
}

// parseReg reads squashfs_reg_inode or squashfs_lreg_inode and checks the
// block list it implies fits in the image.
func (f *FS) parseReg(m *metaReader, n *Inode, long bool) error {
	r := fieldReader{m: m}
	if !long {
		n.start, n.frag, n.fragOffset, n.Size = uint64(r.u32()), r.u32(), r.u32(),
			uint64(r.u32())
	} else {
		n.start, n.Size = r.u64(), r.u64()
		n.Sparse = r.u64()
		n.Nlink, n.frag, n.fragOffset, n.xattr = r.u32(), r.u32(), r.u32(), r.u32()
	}
	if r.err != nil {
		return r.err
	}
	bs := uint64(f.sb.BlockSize)
	nblocks := n.Size / bs
	if n.frag == noFragment {
		if n.Size%bs != 0 {
			nblocks++
		}
	} else {
		if f.sb.Fragments == 0 || n.frag >= f.sb.Fragments {
			return fmt.Errorf("%w: fragment index %d past table of %d", ErrCorrupt,
				n.frag, f.sb.Fragments)
		}
		if n.fragOffset >= f.sb.BlockSize {
			return fmt.Errorf("%w: fragment offset %d", ErrCorrupt, n.fragOffset)
		}
	}
	// Each block has a 4-byte size word in the inode table, whose metadata
	// blocks hold 2,048 of them and take at least 3 bytes each on disk
	// (header and data; a sparse file's list of zeros compresses to
	// little more): that bounds the count, and so the block-list
	// allocation, by the inode table's size.
	if words := uint64(metaSize / 4); nblocks > (f.sb.DirTableStart-
		f.sb.InodeTableStart)/3*words+words {
		return fmt.Errorf("%w: file size %d needs %d blocks, more than the inode "+
			"table can list", ErrCorrupt, n.Size, nblocks)
	}
	if n.start >= uint64(f.end) && nblocks > 0 {
		return fmt.Errorf("%w: data start %d past image end", ErrCorrupt, n.start)
	}
	n.nblocks = int64(nblocks)
	n.listBlock, n.listOffset = m.pos()
	return nil
}

// parseSymlink reads squashfs_symlink_inode; the long form appends an
// xattr index after the target.
func (f *FS) parseSymlink(m *metaReader, n *Inode, long bool) error {
	r := fieldReader{m: m}
	n.Nlink = r.u32()
	size := r.u32()
	if r.err != nil {
		return r.err
	}
	if size == 0 || size > maxSymlink {
		return fmt.Errorf("%w: symlink target length %d", ErrCorrupt, size)
	}
	buf := make([]byte, size)
	if err := m.read(buf); err != nil {
		return err
	}
	n.target, n.Size = string(buf), uint64(size)
	if long {
		n.xattr = r.u32()
	}
	return r.err
}

// parseSpecial reads device, fifo and socket inodes: nlink, then rdev for
// devices, then the xattr index for long forms.
func (f *FS) parseSpecial(m *metaReader, n *Inode, long, dev bool) error {
	r := fieldReader{m: m}
	n.Nlink = r.u32()
	if dev {
		n.Rdev = r.u32()
	}
	if long {
		n.xattr = r.u32()
	}
	return r.err
}

func le16(b []byte) uint16 { return binary.LittleEndian.Uint16(b) }
func le32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }
