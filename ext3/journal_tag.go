package ext3

import "encoding/binary"

// Block tags live in descriptor blocks, one per data block that follows
// the descriptor in the log. Three encodings exist, chosen by the journal
// superblock's incompat features (journal_tag_bytes in the kernel):
//
//	journal_block_tag_t:  blocknr be32, checksum be16, flags be16,
//	                      blocknr_high be32 (64bit only); csum v2 adds two
//	                      bytes of padding: 8, 10, 12 or 14 bytes.
//	journal_block_tag3_t: blocknr be32, flags be32, blocknr_high be32,
//	                      checksum be32: always 16 bytes (csum v3).
//
// A 16-byte UUID follows every tag without JBD2_FLAG_SAME_UUID.

// jbdTag is one decoded block tag.
type jbdTag struct {
	nr    uint64 // home fs block number
	flags uint32 // jbdFlag* bits
	csum  uint32 // data block checksum: 16 bits (v2) or 32 bits (v3)
}

// computeTagBytes returns the size of one tag without its UUID, for the
// given incompat feature set (journal_tag_bytes).
func computeTagBytes(incompat uint32) int {
	if incompat&jbdIncompatCsumV3 != 0 {
		return 16
	}
	n := 12
	if incompat&jbdIncompatCsumV2 != 0 {
		n += 2
	}
	if incompat&jbdIncompat64bit == 0 {
		n -= 4
	}
	return n
}

// tagAreaEnd is the offset in a descriptor block where tags must stop:
// the block end, less the checksum tail when the journal has one.
func (j *journal) tagAreaEnd() int {
	if j.csumV23() {
		return j.bs - jbdTailSize
	}
	return j.bs
}

// decodeTags returns the tags of descriptor block b, stopping at the tag
// flagged LAST_TAG or where the next tag no longer fits (count_tags).
func (j *journal) decodeTags(b []byte) []jbdTag {
	var tags []jbdTag
	end := j.tagAreaEnd()
	for off := jbdHeaderSize; off+j.tagBytes <= end; {
		t := j.decodeTag(b[off : off+j.tagBytes])
		tags = append(tags, t)
		off += j.tagBytes
		if t.flags&jbdFlagSameUUID == 0 {
			off += jbdUUIDSize
		}
		if t.flags&jbdFlagLastTag != 0 {
			break
		}
	}
	return tags
}

// decodeTag decodes one tag of j.tagBytes bytes.
func (j *journal) decodeTag(b []byte) jbdTag {
	be := binary.BigEndian
	t := jbdTag{nr: uint64(be.Uint32(b[0:]))}
	if j.incompat&jbdIncompatCsumV3 != 0 {
		t.flags = be.Uint32(b[4:])
		t.csum = be.Uint32(b[12:])
		if j.incompat&jbdIncompat64bit != 0 {
			t.nr |= uint64(be.Uint32(b[8:])) << 32
		}
		return t
	}
	t.csum = uint32(be.Uint16(b[4:]))
	t.flags = uint32(be.Uint16(b[6:]))
	if j.incompat&jbdIncompat64bit != 0 {
		t.nr |= uint64(be.Uint32(b[8:])) << 32
	}
	return t
}

// encodeTag writes t into b, which holds j.tagBytes zeroed bytes.
func (j *journal) encodeTag(b []byte, t jbdTag) {
	be := binary.BigEndian
	be.PutUint32(b[0:], uint32(t.nr))
	if j.incompat&jbdIncompatCsumV3 != 0 {
		be.PutUint32(b[4:], t.flags)
		be.PutUint32(b[12:], t.csum)
		if j.incompat&jbdIncompat64bit != 0 {
			be.PutUint32(b[8:], uint32(t.nr>>32))
		}
		return
	}
	be.PutUint16(b[4:], uint16(t.csum))
	be.PutUint16(b[6:], uint16(t.flags))
	if j.incompat&jbdIncompat64bit != 0 {
		be.PutUint32(b[8:], uint32(t.nr>>32))
	}
}

// tagsPerDescriptor is how many tags one descriptor block written by
// this package holds: the first tag carries the journal UUID, the others
// are SAME_UUID.
func (j *journal) tagsPerDescriptor() int {
	room := j.tagAreaEnd() - jbdHeaderSize - jbdUUIDSize
	return room / j.tagBytes
}

// tagChecksumOK reports whether the journal copy b of the block described
// by t matches the tag's checksum; always true without csum v2/v3.
func (j *journal) tagChecksumOK(t jbdTag, seq uint32, b []byte) bool {
	switch {
	case j.incompat&jbdIncompatCsumV3 != 0:
		return t.csum == j.dataCsum(seq, b)
	case j.incompat&jbdIncompatCsumV2 != 0:
		return t.csum == j.dataCsum(seq, b)&0xFFFF
	}
	return true
}
