// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"encoding/binary"
	"io"
)

// Superblock identity.
const (
	sbMagic    = 0x73717368 // "hsqs" read little-endian
	sbMajor    = 4
	sbMinor    = 0
	sbSize     = 96 // bytes of struct superblock on disk
	noTable    = ^uint64(0)
	metaSize   = 8192 // uncompressed size of a full metadata block
	minBlockSz = 4096
	maxBlockSz = 1 << 20
)

// Superblock flags (squashfs_fs.h SQUASHFS_*). Flags that only describe how
// the image was built (uncompressed tables, duplicates, exportable) need no
// action when reading: every block header says itself whether it is
// compressed.
const (
	flagUncompressedInodes    = 0x0001
	flagUncompressedData      = 0x0002
	flagCheck                 = 0x0004 // unused since 4.0
	flagUncompressedFragments = 0x0008
	flagNoFragments           = 0x0010
	flagAlwaysFragments       = 0x0020
	flagDuplicates            = 0x0040
	flagExportable            = 0x0080
	flagUncompressedXattrs    = 0x0100
	flagNoXattrs              = 0x0200
	flagCompressorOptions     = 0x0400
	flagUncompressedIDs       = 0x0800
	flagsKnown                = 0x0fff
)

// superblock is struct squashfs_super_block from the kernel's
// fs/squashfs/squashfs_fs.h, fields in disk order, little-endian.
// Table starts are byte offsets from the start of the image.
type superblock struct {
	Magic             uint32
	Inodes            uint32
	MkfsTime          uint32
	BlockSize         uint32
	Fragments         uint32
	Compression       uint16
	BlockLog          uint16
	Flags             uint16
	NoIDs             uint16
	Major             uint16
	Minor             uint16
	RootInode         uint64
	BytesUsed         uint64
	IDTableStart      uint64
	XattrIDTableStart uint64
	InodeTableStart   uint64
	DirTableStart     uint64
	FragTableStart    uint64
	ExportTableStart  uint64
}

// readSuperblock reads and validates the superblock of a section of size
// bytes. It names the first inconsistency it finds.
func readSuperblock(r io.ReaderAt, size int64) (*superblock, error) {
	var buf [sbSize]byte
	if size < sbSize {
		return nil, formatErr(0, "superblock", "image is %d bytes, smaller than "+
			"a superblock", size)
	}
	if _, err := r.ReadAt(buf[:], 0); err != nil {
		return nil, wrapFormat(0, "superblock", err)
	}
	sb := new(superblock)
	if _, err := binary.Decode(buf[:], binary.LittleEndian, sb); err != nil {
		return nil, wrapFormat(0, "superblock", err)
	}

	if sb.Magic != sbMagic {
		return nil, formatErr(0, "superblock", "bad magic %#x, not a squashfs image",
			sb.Magic)
	}
	if sb.Major != sbMajor || sb.Minor != sbMinor {
		return nil, unsupportedErr(28, "superblock", "version %d.%d (only 4.0)",
			sb.Major, sb.Minor)
	}
	if err := sb.checkGeometry(size); err != nil {
		return nil, err
	}
	if sb.Flags&^flagsKnown != 0 {
		return nil, unsupportedErr(24, "superblock", "unknown flags %#x",
			sb.Flags&^flagsKnown)
	}
	if _, ok := compressorNames[sb.Compression]; !ok {
		return nil, unsupportedErr(20, "superblock", "compressor id %d", sb.Compression)
	}
	return sb, nil
}

// checkGeometry checks block size, table order and that every table lies
// inside the section.
func (sb *superblock) checkGeometry(size int64) error {
	if sb.BlockSize < minBlockSz || sb.BlockSize > maxBlockSz ||
		sb.BlockSize&(sb.BlockSize-1) != 0 {
		return formatErr(12, "superblock", "block size %d out of range", sb.BlockSize)
	}
	if sb.BlockLog > 20 || uint32(1)<<sb.BlockLog != sb.BlockSize {
		return formatErr(22, "superblock", "block log %d does not match block size %d",
			sb.BlockLog, sb.BlockSize)
	}
	if sb.BytesUsed < sbSize || sb.BytesUsed > uint64(size) {
		return formatErr(40, "superblock", "bytes used %d outside section of %d bytes",
			sb.BytesUsed, size)
	}
	if sb.Inodes == 0 {
		return formatErr(4, "superblock", "inode count is zero")
	}

	// Tables that will be read must lie inside the used bytes. The
	// fragment table is read only when fragments exist, the xattr table
	// only when present, and the export table never.
	end := sb.BytesUsed
	tables := []struct {
		name  string
		start uint64
		used  bool
	}{
		{"inode table", sb.InodeTableStart, true},
		{"directory table", sb.DirTableStart, true},
		{"id table", sb.IDTableStart, true},
		{"fragment table", sb.FragTableStart, sb.Fragments > 0},
		{"xattr id table", sb.XattrIDTableStart, sb.XattrIDTableStart != noTable},
	}
	for _, t := range tables {
		if t.used && (t.start < sbSize || t.start >= end) {
			return formatErr(0, "superblock", "%s start %d outside image of %d bytes",
				t.name, t.start, end)
		}
	}
	if sb.InodeTableStart >= sb.DirTableStart {
		return formatErr(0, "superblock", "inode table (%d) does not precede "+
			"directory table (%d)", sb.InodeTableStart, sb.DirTableStart)
	}
	if sb.NoIDs == 0 {
		return formatErr(26, "superblock", "id count is zero")
	}
	return nil
}
