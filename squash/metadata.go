// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"encoding/binary"
	"fmt"
)

// Metadata blocks hold the inode, directory, fragment, id, export and xattr
// tables. Each starts with a 16-bit little-endian header: the low 15 bits
// are the stored length, bit 15 set means stored uncompressed. The
// decompressed payload is at most 8 KiB; only the last block of a table may
// be shorter.
const (
	metaUncompressed = 0x8000
	metaLenMask      = 0x7fff
)

// metaBlock is a decompressed metadata block and where the next one starts.
type metaBlock struct {
	data []byte
	next int64 // section offset of the following block's header
}

// metaBlock returns the decompressed metadata block whose header is at pos,
// through the metadata cache.
func (f *FS) metaBlock(pos int64) (*metaBlock, error) {
	return f.meta.getOrLoad(uint64(pos), func() (*metaBlock, int64, error) {
		b, err := f.loadMetaBlock(pos)
		if err != nil {
			return nil, 0, err
		}
		return b, int64(cap(b.data)) + lruEntryCost + 32, nil
	})
}

func (f *FS) loadMetaBlock(pos int64) (*metaBlock, error) {
	var hdr [2]byte
	if err := f.readRaw(hdr[:], pos, "metadata block header"); err != nil {
		return nil, err
	}
	h := binary.LittleEndian.Uint16(hdr[:])
	n := int64(h & metaLenMask)
	if n == 0 || n > metaSize {
		return nil, formatErr(pos, "metadata block", "stored length %d not in 1..%d",
			n, metaSize)
	}
	b := &metaBlock{next: pos + 2 + n}
	if h&metaUncompressed != 0 {
		b.data = make([]byte, n)
		if err := f.readRaw(b.data, pos+2, "metadata block"); err != nil {
			return nil, err
		}
		return b, nil
	}
	raw := f.getRaw(int(n))
	defer rawPool.Put(raw)
	if err := f.readRaw(raw.b, pos+2, "metadata block"); err != nil {
		return nil, err
	}
	out, err := f.dec.decompress(make([]byte, 0, metaSize), raw.b)
	if err != nil {
		return nil, wrapFormat(pos, "metadata block", err)
	}
	if len(out) == 0 {
		return nil, formatErr(pos, "metadata block", "decompressed to zero bytes")
	}
	b.data = out
	return b, nil
}

// metaReader reads a byte stream that continues across consecutive
// metadata blocks, as inodes and directory listings do. what names the
// record for errors.
type metaReader struct {
	f    *FS
	blk  int64 // section offset of the current block's header
	off  int   // offset inside the current decompressed block
	what string
	cur  *metaBlock
}

// newMetaReader positions a reader at offset off inside the block at blk.
func (f *FS) newMetaReader(blk int64, off int, what string) (*metaReader, error) {
	if off < 0 || off >= metaSize {
		return nil, formatErr(blk, what, "offset %d inside metadata block out of range",
			off)
	}
	m := &metaReader{f: f, blk: blk, off: off, what: what}
	b, err := f.metaBlock(blk)
	if err != nil {
		return nil, wrapFormat(blk, what, err)
	}
	if off > len(b.data) {
		return nil, formatErr(blk, what, "offset %d past end of %d-byte metadata block",
			off, len(b.data))
	}
	m.cur = b
	return m, nil
}

// read fills p, moving to following blocks as needed.
func (m *metaReader) read(p []byte) error {
	for len(p) > 0 {
		if m.off >= len(m.cur.data) {
			if err := m.advance(); err != nil {
				return err
			}
		}
		n := copy(p, m.cur.data[m.off:])
		m.off += n
		p = p[n:]
	}
	return nil
}

// skip discards n bytes.
func (m *metaReader) skip(n int64) error {
	for n > 0 {
		if m.off >= len(m.cur.data) {
			if err := m.advance(); err != nil {
				return err
			}
		}
		k := min(n, int64(len(m.cur.data)-m.off))
		m.off += int(k)
		n -= k
	}
	return nil
}

// advance moves to the next block. Each step moves forward on disk by at
// least three bytes, so a walk over a corrupt chain ends at the section end.
func (m *metaReader) advance() error {
	b, err := m.f.metaBlock(m.cur.next)
	if err != nil {
		return wrapFormat(m.cur.next, m.what, fmt.Errorf("record continues past "+
			"readable metadata: %w", err))
	}
	m.blk, m.cur, m.off = m.cur.next, b, 0
	return nil
}

func (m *metaReader) u16() (uint16, error) {
	var b [2]byte
	err := m.read(b[:])
	return binary.LittleEndian.Uint16(b[:]), err
}

func (m *metaReader) u32() (uint32, error) {
	var b [4]byte
	err := m.read(b[:])
	return binary.LittleEndian.Uint32(b[:]), err
}

// pos returns the current position as block offset and in-block offset.
// A position at the very end of a block is the start of the next one: a
// record that ends exactly at a block boundary is followed by data (a
// block list, a directory index) in the next block.
func (m *metaReader) pos() (int64, int) {
	if m.off >= len(m.cur.data) {
		return m.cur.next, 0
	}
	return m.blk, m.off
}
