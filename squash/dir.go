// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"fmt"
	"slices"
	"strings"
	"syscall"
)

// A directory listing in the directory table is a sequence of runs: a
// 12-byte header (squashfs_dir_header: count-1, start_block of the inodes'
// metadata block, base inode number) followed by count entries
// (squashfs_dir_entry: offset u16, inode number delta s16, type u16,
// name size-1 u16, name). The inode's file size counts three bytes more
// than the listing, for the "." and ".." entries that are not stored.
// Entries are sorted by name in byte order.
const (
	dirHeaderSize   = 12
	dirEntrySize    = 8
	dirMaxRun       = 256 // entries under one header (SQUASHFS_DIR_COUNT)
	maxNameLen      = 256 // SQUASHFS_NAME_LEN
	dirIndexSize    = 12  // squashfs_dir_index without the name
	dirPhantomBytes = 3
	// indexLookupsBeforeCache is how many index-guided lookups a big
	// directory gets before its whole listing is parsed and cached.
	indexLookupsBeforeCache = 2
)

// DirEntry is one name in a directory listing.
type DirEntry struct {
	Name string
	Ref  Ref
	Ino  uint32
	Type uint32 // S_IF* bits
}

// dirListing is a parsed listing, cached per directory. Names are strictly
// increasing (checked when parsing), so lookups binary-search.
type dirListing struct {
	entries []DirEntry
}

func (l *dirListing) find(name string) (DirEntry, bool) {
	i, ok := slices.BinarySearchFunc(l.entries, name, func(e DirEntry, n string) int {
		return strings.Compare(e.Name, n)
	})
	if ok {
		return l.entries[i], true
	}
	return DirEntry{}, false
}

func notDir(op string, dir *Inode) error {
	return &errnoError{op: op, name: fmt.Sprintf("inode %d", dir.Ino),
		errno: syscall.ENOTDIR}
}

// ReadDir returns the entries of dir in on-disk (name) order, without "."
// and "..". The slice is the caller's; the names are shared.
func (f *FS) ReadDir(dir *Inode) ([]DirEntry, error) {
	if !dir.IsDir() {
		return nil, notDir("readdir", dir)
	}
	l, err := f.listing(dir)
	if err != nil {
		return nil, err
	}
	return slices.Clone(l.entries), nil
}

// Lookup returns the inode named name in dir. A missing name gives an error
// matching both fs.ErrNotExist and syscall.ENOENT; a dir that is not a
// directory gives syscall.ENOTDIR, a name over 256 bytes
// syscall.ENAMETOOLONG. "." and ".." are not stored in squashfs and are not
// resolved here.
//
// Small directories are parsed whole and cached on first lookup, so later
// lookups are a binary search. Directories with a directory index (those
// spanning several metadata blocks) are first searched through the index,
// which touches one index run; after a few lookups the whole listing is
// cached as well.
func (f *FS) Lookup(dir *Inode, name string) (*Inode, error) {
	if !dir.IsDir() {
		return nil, notDir("lookup", dir)
	}
	if len(name) > maxNameLen {
		// As the kernel's squashfs_lookup: no stored name can be longer.
		return nil, &errnoError{op: "lookup", name: name, errno: syscall.ENAMETOOLONG}
	}
	if name == "" || strings.IndexByte(name, '/') >= 0 {
		return nil, &errnoError{op: "lookup", name: name, errno: syscall.ENOENT}
	}
	var (
		e     DirEntry
		found bool
	)
	l, cached := f.dirs.get(uint64(dir.Ref))
	switch {
	case cached:
		e, found = l.find(name)
	case dir.idxCount > 0 && dir.dirLookups.Add(1) <= indexLookupsBeforeCache:
		var err error
		if e, found, err = f.lookupIndexed(dir, name); err != nil {
			return nil, err
		}
	default:
		l, err := f.listing(dir)
		if err != nil {
			return nil, err
		}
		e, found = l.find(name)
	}
	if !found {
		return nil, &errnoError{op: "lookup", name: name, errno: syscall.ENOENT}
	}
	return f.Inode(e.Ref)
}

// listing returns dir's parsed listing through the directory cache.
func (f *FS) listing(dir *Inode) (*dirListing, error) {
	return f.dirs.getOrLoad(uint64(dir.Ref), func() (*dirListing, int64, error) {
		f.dirListLoads.Add(1)
		l := &dirListing{}
		cost := int64(64)
		var order error
		err := f.scanDir(dir, 0, func(e DirEntry) bool {
			// squashfs writers sort names (the directory index depends on
			// it). Refusing duplicates and disorder also stops a small,
			// highly compressible listing from repeating one entry into
			// a huge allocation.
			if n := len(l.entries); n > 0 && l.entries[n-1].Name >= e.Name {
				order = formatErr(-1, fmt.Sprintf("directory inode %d", dir.Ino),
					"entry %q after %q: names not sorted or repeated", e.Name,
					l.entries[n-1].Name)
				return false
			}
			l.entries = append(l.entries, e)
			cost += int64(len(e.Name)) + 40
			return true
		})
		if err == nil {
			err = order
		}
		if err != nil {
			return nil, 0, err
		}
		return l, cost, nil
	})
}

// dirStart returns the block and offset where dir's listing starts.
func (f *FS) dirStart(dir *Inode) (int64, int) {
	return int64(f.sb.DirTableStart) + int64(dir.dirBlock), int(dir.dirOffset)
}

// scanDir parses dir's listing from a position: skip bytes of the
// listing are already consumed (a directory index entry's "index"), and
// the reader starts at the block and offset that position maps to. visit
// returns false to stop early.
func (f *FS) scanDir(dir *Inode, skip uint32, visit func(DirEntry) bool) error {
	blk, off := f.dirStart(dir)
	return f.scanDirFrom(dir, blk, off, skip, visit)
}

func (f *FS) scanDirFrom(dir *Inode, blk int64, off int, skip uint32,
	visit func(DirEntry) bool) error {
	what := fmt.Sprintf("directory inode %d", dir.Ino)
	if dir.Size <= dirPhantomBytes {
		return nil
	}
	remain := int64(dir.Size) - dirPhantomBytes - int64(skip)
	if remain < 0 {
		return formatErr(blk, what, "directory index points past listing")
	}
	m, err := f.newMetaReader(blk, off, what)
	if err != nil {
		return err
	}
	var hdr [dirHeaderSize]byte
	var ent [dirEntrySize]byte
	var name [maxNameLen]byte
	// Every header and entry consumes bytes of remain, so this ends.
	for remain > 0 {
		if remain < dirHeaderSize {
			return formatErr(blk, what, "%d stray bytes at end of listing", remain)
		}
		if err := m.read(hdr[:]); err != nil {
			return err
		}
		remain -= dirHeaderSize
		count := le32(hdr[0:]) + 1
		start := le32(hdr[4:])
		base := le32(hdr[8:])
		if count > dirMaxRun {
			return formatErr(blk, what, "directory header claims %d entries", count)
		}
		for range count {
			if remain < dirEntrySize+1 {
				return formatErr(blk, what, "entry runs past end of listing")
			}
			if err := m.read(ent[:]); err != nil {
				return err
			}
			nlen := int(le16(ent[6:])) + 1
			remain -= dirEntrySize + int64(nlen)
			if nlen > maxNameLen || remain < 0 {
				return formatErr(blk, what, "entry name length %d", nlen)
			}
			if err := m.read(name[:nlen]); err != nil {
				return err
			}
			e, err := f.dirEntry(ent[:], name[:nlen], start, base, what, blk)
			if err != nil {
				return err
			}
			if !visit(e) {
				return nil
			}
		}
	}
	return nil
}

// dirEntry builds a DirEntry and checks the name is a valid file name.
func (f *FS) dirEntry(ent, name []byte, start, base uint32, what string,
	blk int64) (DirEntry, error) {
	typ := le16(ent[4:])
	if typ < typeDir || typ > typeLSocket {
		return DirEntry{}, formatErr(blk, what, "entry type %d", typ)
	}
	if typ > typeSocket {
		typ -= longOffset
	}
	s := string(name)
	if s == "." || s == ".." || strings.ContainsAny(s, "/\x00") {
		return DirEntry{}, formatErr(blk, what, "invalid entry name %q", s)
	}
	offset := le16(ent[0:])
	if offset >= metaSize {
		return DirEntry{}, formatErr(blk, what, "entry %q inode offset %d", s, offset)
	}
	delta := int16(le16(ent[2:]))
	return DirEntry{
		Name: s,
		Ref:  Ref(uint64(start)<<16 | uint64(offset)),
		Ino:  uint32(int64(base) + int64(delta)),
		Type: typeModes[typ],
	}, nil
}
