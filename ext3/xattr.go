package ext3

import (
	"sort"
	"strings"
	"syscall"
)

// Extended attributes, stored in the inode body after i_extra_isize
// (256-byte inodes) and in one external block named by i_file_acl, which
// several inodes may share through its reference count
// (Documentation/filesystems/ext4/attributes.rst).

const (
	xattrMagic     = 0xEA020000
	xattrHdrSize   = 32 // struct ext2_ext_attr_header
	xattrEntrySize = 16 // struct ext2_ext_attr_entry without the name
	xattrSizeMax   = 65536
	xattrCreate    = 1
	xattrReplace   = 2
)

// Name index values (e_name_index) and the prefixes they stand for.
var xattrPrefixes = []struct {
	index  uint8
	prefix string
}{
	{2, "system.posix_acl_access"},
	{3, "system.posix_acl_default"},
	{8, "system.richacl"},
	{1, "user."},
	{4, "trusted."},
	{6, "security."},
	{7, "system."},
}

type xattr struct {
	index uint8
	name  string // without the prefix
	value []byte
}

func (x *xattr) fullName() string {
	for _, p := range xattrPrefixes {
		if p.index == x.index {
			return p.prefix + x.name
		}
	}
	return ""
}

func splitXattrName(full string) (uint8, string, error) {
	for _, p := range xattrPrefixes {
		if p.index == 2 || p.index == 3 || p.index == 8 {
			if full == p.prefix {
				return p.index, "", nil
			}
			continue
		}
		if strings.HasPrefix(full, p.prefix) {
			name := full[len(p.prefix):]
			if name == "" || len(name) > 255 {
				return 0, "", syscall.EINVAL
			}
			return p.index, name, nil
		}
	}
	return 0, "", syscall.EOPNOTSUPP
}

// entryHash is ext2_xattr_hash_entry: the name (as signed chars) and the
// value as little-endian 32-bit words.
func entryHash(name string, value []byte) uint32 {
	var h uint32
	for i := 0; i < len(name); i++ {
		h = h<<5 ^ h>>27 ^ uint32(int32(int8(name[i])))
	}
	for i := 0; i < len(value); i += 4 {
		var w [4]byte
		copy(w[:], value[i:])
		h = h<<16 ^ h>>16 ^ le.Uint32(w[:])
	}
	return h
}

func pad4(n int) int { return (n + 3) &^ 3 }

// parseXattrs decodes the entry table at data[start:], with value offsets
// relative to data[base:] and ending before limit.
func parseXattrs(data []byte, start, base, limit int, what string,
	blk, ino uint32) ([]xattr, error) {
	var out []xattr
	off := start
	for {
		if off+4 > limit {
			return nil, corrupt(what, blk, ino, "entry table runs past the end")
		}
		if le.Uint32(data[off:]) == 0 {
			return out, nil
		}
		if off+xattrEntrySize > limit {
			return nil, corrupt(what, blk, ino, "entry at %d runs past the end", off)
		}
		nlen := int(data[off])
		idx := data[off+1]
		voff := int(le.Uint16(data[off+2:]))
		vino := le.Uint32(data[off+4:])
		vsize := int(le.Uint32(data[off+8:]))
		if vino != 0 {
			return nil, &unsupportedError{feature: "ea_inode"}
		}
		if off+xattrEntrySize+nlen > limit || base+voff+vsize > limit || vsize > xattrSizeMax ||
			(vsize > 0 && base+voff < off+xattrEntrySize+nlen) {
			return nil, corrupt(what, blk, ino, "entry at %d: value %d+%d", off, voff, vsize)
		}
		out = append(out, xattr{
			index: idx,
			name:  string(data[off+xattrEntrySize : off+xattrEntrySize+nlen]),
			value: append([]byte(nil), data[base+voff:base+voff+vsize]...),
		})
		off += pad4(xattrEntrySize + nlen)
	}
}

// layoutXattrs writes entries into data[start:limit] with values packed
// from limit downwards and offsets relative to base. It reports false if
// they do not fit. data[start:limit] is cleared first.
func layoutXattrs(data []byte, start, base, limit int, list []xattr) bool {
	need := 4
	for _, x := range list {
		need += pad4(xattrEntrySize+len(x.name)) + pad4(len(x.value))
	}
	if start+need > limit {
		return false
	}
	clear(data[start:limit])
	off, vend := start, limit
	for _, x := range list {
		vend -= pad4(len(x.value))
		copy(data[vend:], x.value)
		data[off] = byte(len(x.name))
		data[off+1] = x.index
		voff := vend - base
		if len(x.value) == 0 {
			voff = 0
		}
		le.PutUint16(data[off+2:], uint16(voff))
		le.PutUint32(data[off+4:], 0)
		le.PutUint32(data[off+8:], uint32(len(x.value)))
		le.PutUint32(data[off+12:], entryHash(x.name, x.value))
		copy(data[off+xattrEntrySize:], x.name)
		off += pad4(xattrEntrySize + len(x.name))
	}
	return true
}

// ibodyRange returns the in-inode xattr area [start, end), or ok=false.
func (f *FS) ibodyRange(in *inode) (int, int, bool) {
	x := in.extraSize()
	start := goodOldInode + x
	if x == 0 || start+4+4 > len(in.raw) {
		return 0, 0, false
	}
	return start, len(in.raw), true
}

// readXattrs returns all xattrs of in: body ones first.
// Preconditions: in.mu held.
func (f *FS) readXattrs(in *inode) (body, block []xattr, err error) {
	if s, e, ok := f.ibodyRange(in); ok && le.Uint32(in.raw[s:]) == xattrMagic {
		body, err = parseXattrs(in.raw, s+4, s+4, e, "in-inode xattrs", 0, in.ino)
		if err != nil {
			return nil, nil, err
		}
	}
	if p := in.fileACL(); p != 0 {
		b, err := f.getXattrBlock(in, p)
		if err != nil {
			return nil, nil, err
		}
		b.mu.Lock()
		block, err = parseXattrs(b.data, xattrHdrSize, 0, f.bs, "xattr block", p, in.ino)
		b.mu.Unlock()
		f.cache.put(b)
		if err != nil {
			return nil, nil, err
		}
	}
	return body, block, nil
}

func (f *FS) getXattrBlock(in *inode, p uint32) (*buf, error) {
	if f.isMetaBlock(p) {
		return nil, corrupt("xattr block", p, in.ino, "outside the data area")
	}
	b, err := f.cache.get(p)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	magic, nblk := le.Uint32(b.data), le.Uint32(b.data[8:])
	b.mu.Unlock()
	if magic != xattrMagic || nblk != 1 {
		f.cache.put(b)
		return nil, corrupt("xattr block", p, in.ino, "magic 0x%08x, %d blocks", magic, nblk)
	}
	return b, nil
}

// xattrsOf returns every xattr of a live inode, in-inode ones first, read
// under the inode's read lock.
func (f *FS) xattrsOf(ino uint32) ([]xattr, error) {
	in, err := f.igetLive(ino)
	if err != nil {
		return nil, err
	}
	defer f.iput(in)
	in.mu.RLock()
	body, block, err := f.readXattrs(in)
	in.mu.RUnlock()
	return append(body, block...), err
}

// Getxattr returns the value of xattr name, or ENODATA.
func (f *FS) Getxattr(ino uint32, name string) ([]byte, error) {
	idx, n, err := splitXattrName(name)
	if err != nil {
		return nil, err
	}
	xs, err := f.xattrsOf(ino)
	if err != nil {
		return nil, err
	}
	for _, x := range xs {
		if x.index == idx && x.name == n {
			if idx == 2 || idx == 3 {
				return aclFromDisk(x.value, ino)
			}
			return x.value, nil
		}
	}
	return nil, syscall.ENODATA
}

// Listxattr returns the full names of all xattrs of ino.
func (f *FS) Listxattr(ino uint32) ([]string, error) {
	xs, err := f.xattrsOf(ino)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, x := range xs {
		if n := x.fullName(); n != "" {
			out = append(out, n)
		}
	}
	return out, nil
}

// Setxattr sets xattr name; flags are XATTR_CREATE or XATTR_REPLACE.
func (f *FS) Setxattr(ino uint32, name string, value []byte, flags uint32) error {
	idx, n, err := splitXattrName(name)
	if err != nil {
		return err
	}
	if len(value) > xattrSizeMax {
		return syscall.E2BIG
	}
	if idx == 2 || idx == 3 {
		if value, err = aclToDisk(value); err != nil {
			return err
		}
	}
	return f.changeXattr(ino, idx, n, func(found bool) ([]byte, bool, error) {
		switch {
		case found && flags&xattrCreate != 0:
			return nil, false, syscall.EEXIST
		case !found && flags&xattrReplace != 0:
			return nil, false, syscall.ENODATA
		}
		return value, true, nil
	})
}

// Removexattr deletes xattr name, or returns ENODATA.
func (f *FS) Removexattr(ino uint32, name string) error {
	idx, n, err := splitXattrName(name)
	if err != nil {
		return err
	}
	return f.changeXattr(ino, idx, n, func(found bool) ([]byte, bool, error) {
		if !found {
			return nil, false, syscall.ENODATA
		}
		return nil, false, nil
	})
}

// changeXattr applies decide to the xattr (idx, name): it returns the new
// value and whether to keep the attribute at all.
func (f *FS) changeXattr(ino uint32, idx uint8, name string,
	decide func(found bool) ([]byte, bool, error)) error {
	return f.retryNoSpace(func() error { return f.changeXattr1(ino, idx, name, decide) })
}

func (f *FS) changeXattr1(ino uint32, idx uint8, name string,
	decide func(found bool) ([]byte, bool, error)) error {
	if err := f.begin(); err != nil {
		return err
	}
	defer f.end()
	in, err := f.igetLive(ino)
	if err != nil {
		return err
	}
	defer f.iput(in)
	in.mu.Lock()
	defer in.mu.Unlock()
	if f.gone(in) {
		return syscall.ENOENT
	}
	body, block, err := f.readXattrs(in)
	if err != nil {
		return err
	}
	all := append(body, block...)
	found := -1
	for i, x := range all {
		if x.index == idx && x.name == name {
			found = i
		}
	}
	value, keep, err := decide(found >= 0)
	if err != nil {
		return err
	}
	if found >= 0 {
		all = append(all[:found], all[found+1:]...)
	}
	if keep {
		all = append(all, xattr{index: idx, name: name, value: value})
	}
	if err := f.storeXattrs(in, all); err != nil {
		return err
	}
	in.setTime(tsCtime, now())
	return f.writeInode(in)
}

// storeXattrs lays out list: as much as fits in the inode body, the rest in
// an external block (copy-on-write if shared).
// Preconditions: in.mu held exclusively, op held shared.
func (f *FS) storeXattrs(in *inode, list []xattr) error {
	// Sorting like the kernel (index, name length, name) keeps layouts
	// stable; e2fsck does not require it.
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if a.index != b.index {
			return a.index < b.index
		}
		if len(a.name) != len(b.name) {
			return len(a.name) < len(b.name)
		}
		return a.name < b.name
	})
	var inBody, inBlock []xattr
	s, e, hasBody := f.ibodyRange(in)
	used := 4
	for _, x := range list {
		sz := pad4(xattrEntrySize+len(x.name)) + pad4(len(x.value))
		if hasBody && len(inBlock) == 0 && s+4+used+sz <= e {
			inBody = append(inBody, x)
			used += sz
		} else {
			inBlock = append(inBlock, x)
		}
	}
	if hasBody {
		if len(inBody) == 0 {
			clear(in.raw[s:e])
		} else {
			le.PutUint32(in.raw[s:], xattrMagic)
			layoutXattrs(in.raw, s+4, s+4, e, inBody)
		}
	}
	return f.storeXattrBlock(in, inBlock)
}

func (f *FS) storeXattrBlock(in *inode, list []xattr) error {
	old := in.fileACL()
	if len(list) == 0 {
		return f.xattrDropBlock(in)
	}
	data := make([]byte, f.bs)
	if !layoutXattrs(data, xattrHdrSize, 0, f.bs, list) {
		return syscall.ENOSPC
	}
	le.PutUint32(data[0:], xattrMagic)
	le.PutUint32(data[8:], 1)
	var h uint32
	for off := xattrHdrSize; le.Uint32(data[off:]) != 0; {
		h = h<<16 ^ h>>16 ^ le.Uint32(data[off+12:])
		off += pad4(xattrEntrySize + int(data[off]))
	}
	le.PutUint32(data[12:], h)

	if old != 0 {
		b, err := f.getXattrBlock(in, old)
		if err != nil {
			return err
		}
		b.mu.Lock()
		if le.Uint32(b.data[4:]) <= 1 {
			// Ours alone: rewrite in place.
			le.PutUint32(data[4:], 1)
			copy(b.data, data)
			f.cache.markDirty(b)
			b.mu.Unlock()
			f.cache.put(b)
			return nil
		}
		b.mu.Unlock()
		f.cache.put(b)
		if err := f.xattrDropBlock(in); err != nil {
			return err
		}
	}
	goal := f.goalFor(in)
	p, _, err := f.allocBlocks(goal, 1, f.mayUseReserve(in))
	if err != nil {
		return err
	}
	le.PutUint32(data[4:], 1)
	b := f.cache.getNew(p)
	b.mu.Lock()
	copy(b.data, data)
	f.cache.markDirty(b)
	b.mu.Unlock()
	f.cache.put(b)
	in.setFileACL(p)
	in.addBlocks(1, f.bs)
	return nil
}

// xattrDropBlock releases in's reference to its xattr block, freeing it
// when it was the last.
// Preconditions: in.mu held exclusively, op held shared.
func (f *FS) xattrDropBlock(in *inode) error {
	p := in.fileACL()
	if p == 0 {
		return nil
	}
	in.setFileACL(0)
	in.addBlocks(-1, f.bs)
	b, err := f.getXattrBlock(in, p)
	if err != nil {
		return err
	}
	b.mu.Lock()
	refs := le.Uint32(b.data[4:])
	if refs > 1 {
		le.PutUint32(b.data[4:], refs-1)
		f.cache.markDirty(b)
	}
	b.mu.Unlock()
	f.cache.put(b)
	if refs <= 1 {
		f.freeBlock(p)
	}
	return nil
}
