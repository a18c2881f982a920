// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"fmt"
	"iter"
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
	// maxCachedListing sizes the dirs cache's shards: listings of up to
	// this cost share a shard with a few others.
	maxCachedListing = 64 << 10
)

// DirEntry is one name in a directory listing.
type DirEntry struct {
	Name string
	Ref  Ref
	Ino  uint32
	Type uint32 // S_IF* bits
}

// dirListing is a parsed listing, cached per directory, or (under the
// directory's key with indexKeyBit) its parsed directory index. Names are
// strictly increasing (checked when parsing), so lookups binary-search.
type dirListing struct {
	entries []DirEntry
	index   []indexRec
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

// DirEntries returns the entries of dir in on-disk (name) order, as
// ReadDir lists them, and how many there are, without copying the cached
// listing: a caller that converts every entry anyway need not pay for a
// copy per directory.
func (f *FS) DirEntries(dir *Inode) (iter.Seq[DirEntry], int, error) {
	if !dir.IsDir() {
		return nil, 0, notDir("readdir", dir)
	}
	l, err := f.listing(dir)
	if err != nil {
		return nil, 0, err
	}
	return slices.Values(l.entries), len(l.entries), nil
}

// Lookup returns the inode named name in dir. A missing name gives an error
// matching both fs.ErrNotExist and syscall.ENOENT; a dir that is not a
// directory gives syscall.ENOTDIR, a name over 256 bytes
// syscall.ENAMETOOLONG. "." and ".." are not stored in squashfs and are not
// resolved here.
//
// Small directories are parsed whole and cached on first lookup, so later
// lookups are a binary search. Directories with a directory index (those
// spanning several metadata blocks) are searched through the index: only
// the range of the listing that can hold the name (about one metadata
// block) is parsed, and cached, so a lookup in a 100,000-entry directory
// neither reads nor keeps the whole listing. A listing cached by ReadDir
// serves lookups too.
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
	if !cached {
		l, cached = f.bigListing(dir.Ref)
	}
	switch {
	case cached:
		e, found = l.find(name)
	case dir.idxCount > 0:
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

// bigListing is a listing kept outside the dirs cache.
type bigListing struct {
	ref Ref
	l   *dirListing
}

// bigListing returns the kept large listing of dir, if it is dir's.
func (f *FS) bigListing(dir Ref) (*dirListing, bool) {
	if b := f.bigDir.Load(); b != nil && b.ref == dir {
		return b.l, true
	}
	return nil, false
}

// listing returns dir's parsed listing through the directory cache.
//
// A listing costlier than a shard of the cache is not kept there; the
// last such one is kept aside instead (bigDir), or every opendir of a
// large directory (and the kernel lists it again for each process that
// reads it, and after its cached pages are dropped) would parse it all
// again: 100,000 names take tens of milliseconds.
func (f *FS) listing(dir *Inode) (*dirListing, error) {
	if l, ok := f.bigListing(dir.Ref); ok {
		return l, nil
	}
	var big *bigListing
	l, err := f.dirs.getOrLoad(uint64(dir.Ref), func() (*dirListing, int64, error) {
		f.dirListLoads.Add(1)
		l := &dirListing{}
		cost := int64(64)
		var order error
		err := f.scanDir(dir, func(e DirEntry) bool {
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
			cost += int64(len(e.Name)) + 48
			return true
		})
		if err == nil {
			err = order
		}
		if err != nil {
			return nil, 0, err
		}
		// append can leave up to half of the array unused.
		if cap(l.entries) > len(l.entries)+len(l.entries)/8 {
			l.entries = slices.Clone(l.entries)
		}
		if !f.dirs.fits(cost) && cost <= f.bigDirMax {
			big = &bigListing{ref: dir.Ref, l: l}
		}
		return l, cost, nil
	})
	if big != nil {
		f.bigDir.Store(big)
	}
	return l, err
}

// dirStart returns the block and offset where dir's listing starts.
func (f *FS) dirStart(dir *Inode) (int64, int) {
	return int64(f.sb.DirTableStart) + int64(dir.dirBlock), int(dir.dirOffset)
}

// scanDir parses dir's whole listing. visit returns false to stop early.
func (f *FS) scanDir(dir *Inode, visit func(DirEntry) bool) error {
	blk, off := f.dirStart(dir)
	s, err := f.newDirScanner(dir, blk, off, 0)
	if err != nil {
		return err
	}
	for {
		ok, err := s.next()
		if err != nil || !ok {
			return err
		}
		e, err := s.entry()
		if err != nil {
			return err
		}
		if !visit(e) {
			return nil
		}
	}
}

// dirScanner walks the entries of a listing from a position without
// allocating: names are compared in place and turned into a [DirEntry]
// only when wanted.
type dirScanner struct {
	f      *FS
	dir    *Inode
	m      *metaReader
	blk    int64 // where the scan started, for errors
	remain int64 // listing bytes not yet consumed
	left   uint32
	start  uint32 // current header's inode metadata block
	base   uint32 // current header's base inode number
	ent    [dirEntrySize]byte
	name   [maxNameLen]byte
	nlen   int
}

// newDirScanner starts at block blk, offset off, where skip bytes of the
// listing are already consumed (a directory index entry's "index").
func (f *FS) newDirScanner(dir *Inode, blk int64, off int, skip uint32) (*dirScanner, error) {
	s := &dirScanner{f: f, dir: dir, blk: blk}
	if dir.Size <= dirPhantomBytes {
		return s, nil
	}
	s.remain = int64(dir.Size) - dirPhantomBytes - int64(skip)
	if s.remain < 0 {
		return nil, s.corrupt("directory index points past listing")
	}
	var err error
	s.m, err = f.newMetaReader(blk, off, "directory listing")
	if err != nil {
		return nil, annotate(err, "directory inode %d", dir.Ino)
	}
	return s, nil
}

func (s *dirScanner) corrupt(format string, args ...any) error {
	return formatErr(s.blk, fmt.Sprintf("directory inode %d", s.dir.Ino), format, args...)
}

// next reads the next entry; false means the listing ended. Every header
// and entry consumes bytes of remain, so a scan ends.
func (s *dirScanner) next() (bool, error) {
	if s.left == 0 {
		if s.remain == 0 {
			return false, nil
		}
		if s.remain < dirHeaderSize {
			return false, s.corrupt("%d stray bytes at end of listing", s.remain)
		}
		var hdr [dirHeaderSize]byte
		if err := s.m.read(hdr[:]); err != nil {
			return false, annotate(err, "directory inode %d", s.dir.Ino)
		}
		s.remain -= dirHeaderSize
		count := le32(hdr[0:]) + 1
		if count > dirMaxRun {
			return false, s.corrupt("directory header claims %d entries", count)
		}
		s.left, s.start, s.base = count, le32(hdr[4:]), le32(hdr[8:])
	}
	if s.remain < dirEntrySize+1 {
		return false, s.corrupt("entry runs past end of listing")
	}
	if err := s.m.read(s.ent[:]); err != nil {
		return false, annotate(err, "directory inode %d", s.dir.Ino)
	}
	s.nlen = int(le16(s.ent[6:])) + 1
	s.remain -= dirEntrySize + int64(s.nlen)
	if s.nlen > maxNameLen || s.remain < 0 {
		return false, s.corrupt("entry name length %d", s.nlen)
	}
	if err := s.m.read(s.name[:s.nlen]); err != nil {
		return false, annotate(err, "directory inode %d", s.dir.Ino)
	}
	s.left--
	return true, nil
}

// rawName is the current entry's name, valid until the next call to next.
func (s *dirScanner) rawName() []byte { return s.name[:s.nlen] }

// entry builds the current entry, checking it.
func (s *dirScanner) entry() (DirEntry, error) {
	return s.f.dirEntry(s.ent[:], s.rawName(), s.start, s.base, s)
}

// dirEntry builds a DirEntry and checks the name is a valid file name.
func (f *FS) dirEntry(ent, name []byte, start, base uint32, sc *dirScanner) (DirEntry,
	error) {
	typ := le16(ent[4:])
	if typ < typeDir || typ > typeLSocket {
		return DirEntry{}, sc.corrupt("entry type %d", typ)
	}
	if typ > typeSocket {
		typ -= longOffset
	}
	s := string(name)
	if s == "." || s == ".." || strings.ContainsAny(s, "/\x00") {
		return DirEntry{}, sc.corrupt("invalid entry name %q", s)
	}
	offset := le16(ent[0:])
	if offset >= metaSize {
		return DirEntry{}, sc.corrupt("entry %q inode offset %d", s, offset)
	}
	delta := int16(le16(ent[2:]))
	return DirEntry{
		Name: s,
		Ref:  Ref(uint64(start)<<16 | uint64(offset)),
		Ino:  uint32(int64(base) + int64(delta)),
		Type: typeModes[typ],
	}, nil
}
