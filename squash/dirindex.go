// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"fmt"
	"slices"
	"sort"
)

// The directory index follows a long directory inode in the inode table:
// idxCount records (squashfs_dir_index: index u32 = byte position of a
// header within the listing, start_block u32 = its metadata block relative
// to the directory table, size u32 = name length-1, name = first name
// under that header). mksquashfs writes one record per metadata block the
// listing crosses, so the records split the sorted names into ranges.
//
// The parsed index is cached beside the listings (one record per 8 KiB of
// listing, so about 1/300 of the listing's size), and so is each range a
// lookup needed, parsed into a sorted table: memory follows the ranges
// in use, not the directory's size.

// indexRec is one parsed squashfs_dir_index record.
type indexRec struct {
	name  string // first name of the range
	index uint32 // listing bytes before the range
	start uint32 // range's metadata block, relative to the directory table
}

// indexKeyBit marks a directory's cached index in the dirs cache, whose
// other keys are inode references (48 bits).
const indexKeyBit = 1 << 63

// dirIndex returns dir's parsed directory index through the dirs cache.
func (f *FS) dirIndex(dir *Inode) ([]indexRec, error) {
	l, err := f.dirs.getOrLoad(uint64(dir.Ref)|indexKeyBit,
		func() (*dirListing, int64, error) {
			recs, cost, err := f.parseDirIndex(dir)
			if err != nil {
				return nil, 0, err
			}
			return &dirListing{index: recs}, cost, nil
		})
	if err != nil {
		return nil, err
	}
	return l.index, nil
}

func (f *FS) parseDirIndex(dir *Inode) ([]indexRec, int64, error) {
	f.dirIndexLoads.Add(1)
	what := fmt.Sprintf("directory index of inode %d", dir.Ino)
	m, err := f.newMetaReader(dir.idxBlock, dir.idxOffset, what)
	if err != nil {
		return nil, 0, err
	}
	recs := make([]indexRec, 0, dir.idxCount)
	cost := int64(lruEntryCost)
	var rec [dirIndexSize]byte
	var buf [maxNameLen]byte
	for range dir.idxCount {
		if err := m.read(rec[:]); err != nil {
			return nil, 0, err
		}
		index, start, size := le32(rec[0:]), le32(rec[4:]), le32(rec[8:])+1
		if size > maxNameLen {
			return nil, 0, formatErr(dir.idxBlock, what, "index name length %d", size)
		}
		if err := m.read(buf[:size]); err != nil {
			return nil, 0, err
		}
		if uint64(index) >= dir.Size || uint64(start) >= uint64(f.end) {
			return nil, 0, formatErr(dir.idxBlock, what,
				"index record points outside the listing")
		}
		r := indexRec{name: string(buf[:size]), index: index, start: start}
		// Binary search needs increasing ranges; the kernel's linear scan
		// would stop at the first disorder, so refusing it loses nothing.
		if n := len(recs); n > 0 && (recs[n-1].name >= r.name || recs[n-1].index >= index) {
			return nil, 0, formatErr(dir.idxBlock, what, "index records not in order")
		}
		recs = append(recs, r)
		cost += int64(len(r.name)) + 40
	}
	return recs, cost, nil
}

// rangeKey is the dirs cache key of range r (0..len(index)) of dir's
// listing: range 0 runs from the listing's start to the first index
// record, range r from record r-1 to record r. ok is false when the
// range number does not fit in the key.
func rangeKey(dir *Inode, r int) (key uint64, ok bool) {
	const rangeBits = 15 // bits 48..62; bit 63 is indexKeyBit
	if r+1 >= 1<<rangeBits {
		return 0, false
	}
	return uint64(dir.Ref) | uint64(r+1)<<48 | indexKeyBit, true
}

// lookupIndexed finds name in dir by picking the last index range that
// starts at or before name (as the kernel's get_dir_index_using_name),
// then searching that range. Ranges are parsed into sorted tables on
// first use and cached, so a warm lookup in a huge directory is two
// binary searches and touches no metadata block.
func (f *FS) lookupIndexed(dir *Inode, name string) (DirEntry, bool, error) {
	recs, err := f.dirIndex(dir)
	if err != nil {
		return DirEntry{}, false, err
	}
	r := sort.Search(len(recs), func(i int) bool { return recs[i].name > name })
	key, ok := rangeKey(dir, r)
	if !ok {
		return f.scanRange(dir, recs, r, name)
	}
	l, err := f.dirs.getOrLoad(key, func() (*dirListing, int64, error) {
		return f.parseRange(dir, recs, r)
	})
	if err != nil {
		return DirEntry{}, false, err
	}
	e, found := l.find(name)
	return e, found, nil
}

// rangeScanner starts a scanner at range r and returns the first name of
// the following range ("" for the last), where the scan must stop.
func (f *FS) rangeScanner(dir *Inode, recs []indexRec, r int) (*dirScanner, string,
	error) {
	blk, off := f.dirStart(dir)
	skip := uint32(0)
	if r > 0 {
		rec := recs[r-1]
		skip = rec.index
		blk = int64(f.sb.DirTableStart) + int64(rec.start)
		off = (int(dir.dirOffset) + int(rec.index)) % metaSize
	}
	stop := ""
	if r < len(recs) {
		stop = recs[r].name
	}
	s, err := f.newDirScanner(dir, blk, off, skip)
	return s, stop, err
}

// parseRange parses range r of dir's listing into a sorted table.
func (f *FS) parseRange(dir *Inode, recs []indexRec, r int) (*dirListing, int64, error) {
	f.dirRangeLoads.Add(1)
	s, stop, err := f.rangeScanner(dir, recs, r)
	if err != nil {
		return nil, 0, err
	}
	l := &dirListing{}
	cost := int64(lruEntryCost)
	for {
		ok, err := s.next()
		if err != nil {
			return nil, 0, err
		}
		if !ok || (stop != "" && compareName(s.rawName(), stop) >= 0) {
			break
		}
		e, err := s.entry()
		if err != nil {
			return nil, 0, err
		}
		if n := len(l.entries); n > 0 && l.entries[n-1].Name >= e.Name {
			return nil, 0, s.corrupt("entry %q after %q: names not sorted or repeated",
				e.Name, l.entries[n-1].Name)
		}
		l.entries = append(l.entries, e)
		cost += int64(len(e.Name)) + 48
	}
	if cap(l.entries) > len(l.entries)+len(l.entries)/8 {
		l.entries = slices.Clone(l.entries)
	}
	return l, cost, nil
}

// scanRange searches range r for name without caching it: a linear scan
// that compares names in place.
func (f *FS) scanRange(dir *Inode, recs []indexRec, r int, name string) (DirEntry, bool,
	error) {
	s, _, err := f.rangeScanner(dir, recs, r)
	if err != nil {
		return DirEntry{}, false, err
	}
	for {
		ok, err := s.next()
		if err != nil || !ok {
			return DirEntry{}, false, err
		}
		switch c := compareName(s.rawName(), name); {
		case c == 0:
			e, err := s.entry()
			return e, err == nil, err
		case c > 0:
			return DirEntry{}, false, nil
		}
	}
}

// compareName compares a stored name with a wanted one without
// allocating.
func compareName(stored []byte, want string) int {
	switch s := string(stored); {
	case s < want:
		return -1
	case s > want:
		return 1
	}
	return 0
}
