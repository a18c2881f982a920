// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"fmt"
	"strings"
)

// The directory index follows a long directory inode in the inode table:
// idxCount records (squashfs_dir_index: index u32 = byte position of a
// header within the listing, start_block u32 = its metadata block relative
// to the directory table, size u32 = name length-1, name = first name
// under that header). mksquashfs writes one record per metadata block the
// listing crosses, so the records split the sorted names into ranges.

// lookupIndexed finds name in dir by scanning the directory index for the
// last range starting at or before name, then scanning only that range.
// This mirrors the kernel's get_dir_index_using_name.
func (f *FS) lookupIndexed(dir *Inode, name string) (DirEntry, bool, error) {
	what := fmt.Sprintf("directory index of inode %d", dir.Ino)
	m, err := f.newMetaReader(dir.idxBlock, dir.idxOffset, what)
	if err != nil {
		return DirEntry{}, false, err
	}
	blk, off := f.dirStart(dir)
	skip := uint32(0)
	var rec [dirIndexSize]byte
	var buf [maxNameLen]byte
	for range dir.idxCount {
		if err := m.read(rec[:]); err != nil {
			return DirEntry{}, false, err
		}
		index, start, size := le32(rec[0:]), le32(rec[4:]), le32(rec[8:])+1
		if size > maxNameLen {
			return DirEntry{}, false, formatErr(dir.idxBlock, what,
				"index name length %d", size)
		}
		if err := m.read(buf[:size]); err != nil {
			return DirEntry{}, false, err
		}
		if strings.Compare(string(buf[:size]), name) > 0 {
			break
		}
		if uint64(index) >= dir.Size || uint64(start) >= uint64(f.end) {
			return DirEntry{}, false, formatErr(dir.idxBlock, what,
				"index record points outside the listing")
		}
		skip = index
		blk = int64(f.sb.DirTableStart) + int64(start)
		off = (int(dir.dirOffset) + int(index)) % metaSize
	}

	var found DirEntry
	ok := false
	err = f.scanDirFrom(dir, blk, off, skip, func(e DirEntry) bool {
		if c := strings.Compare(e.Name, name); c >= 0 {
			found, ok = e, c == 0
			return false
		}
		return true
	})
	return found, ok, err
}
