package ext3

import (
	"encoding/binary"
	"hash/crc32"
)

// JBD2 uses two CRCs:
//   - csum v2/v3 (and the superblock checksum): crc32c as the kernel's
//     crc32c(seed, buf, len), which neither inverts the seed nor the result;
//   - COMPAT_CHECKSUM (v1): the kernel's crc32_be, MSB-first polynomial
//     0x04C11DB7, seeded with ~0 per transaction and not inverted.

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// jbdCRC32c is the kernel's crc32c(seed, p): Go's crc32.Update inverts
// on entry and exit, so undo both.
func jbdCRC32c(seed uint32, p []byte) uint32 {
	return ^crc32.Update(^seed, castagnoli, p)
}

// crc32BETable is the MSB-first table for polynomial 0x04C11DB7.
var crc32BETable = func() (t [256]uint32) {
	for i := range t {
		c := uint32(i) << 24
		for range 8 {
			if c&0x80000000 != 0 {
				c = c<<1 ^ 0x04C11DB7
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

// crc32BE is the kernel's crc32_be(crc, p, len).
func crc32BE(crc uint32, p []byte) uint32 {
	for _, b := range p {
		crc = crc<<8 ^ crc32BETable[byte(crc>>24)^b]
	}
	return crc
}

// blockTailCsum returns the checksum of a descriptor or revoke block,
// computed with its jbd2_journal_block_tail zeroed (the kernel's
// jbd2_descriptor_block_csum_set).
func (j *journal) blockTailCsum(b []byte) uint32 {
	tail := b[len(b)-jbdTailSize:]
	saved := binary.BigEndian.Uint32(tail)
	binary.BigEndian.PutUint32(tail, 0)
	c := jbdCRC32c(j.csumSeed, b)
	binary.BigEndian.PutUint32(tail, saved)
	return c
}

// tailCsumOK reports whether a descriptor or revoke block carries a valid
// tail checksum; always true without csum v2/v3.
func (j *journal) tailCsumOK(b []byte) bool {
	if !j.csumV23() {
		return true
	}
	return binary.BigEndian.Uint32(b[len(b)-jbdTailSize:]) == j.blockTailCsum(b)
}

// commitCsum returns the csum v2/v3 checksum of a commit block, computed
// with h_chksum[0] zeroed (jbd2_commit_block_csum_set).
func (j *journal) commitCsum(b []byte) uint32 {
	field := b[commitOffChecksum : commitOffChecksum+4]
	saved := binary.BigEndian.Uint32(field)
	binary.BigEndian.PutUint32(field, 0)
	c := jbdCRC32c(j.csumSeed, b)
	binary.BigEndian.PutUint32(field, saved)
	return c
}

// dataCsum returns the csum v2/v3 checksum of a journal data block as
// stored in the log (escaped), for transaction seq
// (jbd2_block_tag_csum_set). Csum v2 tags keep only the low 16 bits.
func (j *journal) dataCsum(seq uint32, b []byte) uint32 {
	var s [4]byte
	binary.BigEndian.PutUint32(s[:], seq)
	return jbdCRC32c(jbdCRC32c(j.csumSeed, s[:]), b)
}

// superblockCsum returns the checksum of a raw journal superblock,
// computed with s_checksum zeroed (jbd2_superblock_csum).
func superblockCsum(raw []byte) uint32 {
	var sb [jsbSize]byte
	copy(sb[:], raw)
	binary.BigEndian.PutUint32(sb[jsbOffChecksum:], 0)
	return jbdCRC32c(^uint32(0), sb[:])
}
