// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"encoding/binary"
	"fmt"
)

// Extended attributes live in their own metadata area starting at
// xattr_table_start. Inodes hold an index into the xattr id table
// (squashfs_xattr_id: xattr u64 reference into that area, count u32,
// size u32). Each attribute there is a key (squashfs_xattr_entry: type u16,
// name size u16, name without its namespace prefix) and a value
// (squashfs_xattr_val: size u32, bytes). With type bit 0x100 the value
// instead holds a u64 reference to a value stored elsewhere, shared
// between inodes.
const (
	xattrIDSize      = 16
	xattrIDsPerBlock = metaSize / xattrIDSize
	xattrOOL         = 0x100
	xattrPrefixMask  = 0xff
	maxXattrValue    = 64 << 10 // XATTR_SIZE_MAX
	maxXattrCount    = 32 << 10 // names alone must fit in XATTR_LIST_MAX (64 KiB)
	maxXattrTotal    = 16 << 20 // bytes of values per inode; see Xattrs
)

// xattrPrefixes maps the namespace type to the prefix of full names.
var xattrPrefixes = []string{"user.", "trusted.", "security."}

// Xattr is one extended attribute with its full name, e.g.
// "security.capability".
type Xattr struct {
	Name  string
	Value []byte
}

// xattrTable locates the xattr id table and the attribute area.
type xattrTable struct {
	start int64   // xattr_table_start: base of key/value references
	count uint32  // number of xattr ids
	index []int64 // section offsets of the id table's metadata blocks
}

// loadXattrTable reads the xattr id table header and its pointer array.
func (f *FS) loadXattrTable() error {
	if f.sb.XattrIDTableStart == noTable || f.sb.Flags&flagNoXattrs != 0 {
		return nil
	}
	const what = "xattr id table"
	var hdr [16]byte
	pos := int64(f.sb.XattrIDTableStart)
	if err := f.readRaw(hdr[:], pos, what); err != nil {
		return err
	}
	t := &xattrTable{
		start: int64(binary.LittleEndian.Uint64(hdr[0:])),
		count: binary.LittleEndian.Uint32(hdr[8:]),
	}
	if t.start < sbSize || t.start >= pos {
		return formatErr(pos, what, "attribute area start %d outside image", t.start)
	}
	if t.count == 0 {
		f.xattr = t
		return nil
	}
	ptrs, err := f.loadTablePointers(uint64(pos+16), int64(t.count), xattrIDSize, what)
	if err != nil {
		return err
	}
	for _, p := range ptrs {
		if p < t.start {
			return formatErr(pos, what, "id block %d before attribute area %d", p, t.start)
		}
	}
	t.index = ptrs
	f.xattr = t
	return nil
}

// Xattrs returns the extended attributes of n in on-disk order.
func (f *FS) Xattrs(n *Inode) ([]Xattr, error) {
	if n.xattr == noXattr || f.xattr == nil {
		return nil, nil
	}
	t := f.xattr
	what := fmt.Sprintf("xattrs of inode %d", n.Ino)
	if n.xattr >= t.count {
		return nil, formatErr(-1, what, "xattr index %d past table of %d", n.xattr,
			t.count)
	}
	m, err := f.newMetaReader(t.index[n.xattr/xattrIDsPerBlock],
		int(n.xattr%xattrIDsPerBlock)*xattrIDSize, what)
	if err != nil {
		return nil, err
	}
	r := fieldReader{m: m}
	ref, count := r.u64(), r.u32()
	if r.err != nil {
		return nil, r.err
	}
	if count > maxXattrCount {
		return nil, formatErr(-1, what, "%d attributes", count)
	}
	m, err = f.xattrReader(ref, what)
	if err != nil {
		return nil, err
	}
	out := make([]Xattr, 0, min(count, 64))
	total := 0
	for range count {
		x, err := f.readXattr(m, what)
		if err != nil {
			return nil, err
		}
		// Out-of-line values can be shared, so a small image could
		// otherwise expand one value many times over.
		if total += len(x.Name) + len(x.Value); total > maxXattrTotal {
			return nil, formatErr(-1, what, "more than %d bytes of attributes",
				maxXattrTotal)
		}
		out = append(out, x)
	}
	return out, nil
}

// xattrReader positions a reader at a reference into the attribute area.
func (f *FS) xattrReader(ref uint64, what string) (*metaReader, error) {
	blk := f.xattr.start + int64(ref>>16)
	if ref>>16 >= uint64(f.end) || blk >= int64(f.sb.XattrIDTableStart) {
		return nil, formatErr(blk, what, "reference %#x outside attribute area", ref)
	}
	return f.newMetaReader(blk, int(ref&0xffff), what)
}

// readXattr reads one key and its value, following an out-of-line value.
func (f *FS) readXattr(m *metaReader, what string) (Xattr, error) {
	r := fieldReader{m: m}
	typ, nameLen := r.u16(), r.u16()
	if r.err != nil {
		return Xattr{}, r.err
	}
	prefix := int(typ & xattrPrefixMask)
	if prefix >= len(xattrPrefixes) || typ&^(xattrPrefixMask|xattrOOL) != 0 {
		return Xattr{}, unsupportedErr(-1, what, "xattr namespace type %#x", typ)
	}
	name := make([]byte, nameLen)
	if err := m.read(name); err != nil {
		return Xattr{}, err
	}
	x := Xattr{Name: xattrPrefixes[prefix] + string(name)}

	vsize := r.u32()
	if r.err != nil {
		return Xattr{}, r.err
	}
	vm := m
	if typ&xattrOOL != 0 {
		if vsize != 8 {
			return Xattr{}, formatErr(-1, what, "out-of-line reference of %d bytes", vsize)
		}
		ref := r.u64()
		if r.err != nil {
			return Xattr{}, r.err
		}
		f.xattrOOLRefs.Add(1)
		var err error
		if vm, err = f.xattrReader(ref, what); err != nil {
			return Xattr{}, err
		}
		if vsize, err = vm.u32(); err != nil {
			return Xattr{}, err
		}
	}
	if vsize > maxXattrValue {
		return Xattr{}, formatErr(-1, what, "value of %s is %d bytes", x.Name, vsize)
	}
	x.Value = make([]byte, vsize)
	if err := vm.read(x.Value); err != nil {
		return Xattr{}, err
	}
	return x, nil
}
