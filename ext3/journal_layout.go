package ext3

// On-disk layout of the JBD2 journal. Every journal structure is
// big-endian, unlike the rest of ext3. Field names follow
// include/linux/jbd2.h with the s_/h_/t_ prefixes dropped. See
// https://www.kernel.org/doc/html/latest/filesystems/ext4/journal.html

// Journal block header values (journal_header_t).
const (
	// jbdMagic starts every journal metadata block. A data block that
	// starts with it is stored escaped (first four bytes zeroed).
	jbdMagic = 0xC03B3998

	jbdDescriptorBlock = 1 // JBD2_DESCRIPTOR_BLOCK: tags for the data blocks after it
	jbdCommitBlock     = 2 // JBD2_COMMIT_BLOCK: the transaction is complete
	jbdSuperblockV1    = 3 // JBD2_SUPERBLOCK_V1: no feature fields
	jbdSuperblockV2    = 4 // JBD2_SUPERBLOCK_V2
	jbdRevokeBlock     = 5 // JBD2_REVOKE_BLOCK: blocks not to replay

	jbdHeaderSize = 12 // sizeof(journal_header_t)
)

// Journal feature bits (JBD2_FEATURE_*). The list of incompat bits is
// complete as of Linux 6.18; fast commit is known but refused.
const (
	jbdCompatChecksum = 0x1 // crc32_be of the transaction in the commit block

	jbdIncompatRevoke      = 0x1  // revoke blocks may be present
	jbdIncompat64bit       = 0x2  // tags carry t_blocknr_high
	jbdIncompatAsyncCommit = 0x4  // commit block written without a flush before it
	jbdIncompatCsumV2      = 0x8  // crc32c, 16-bit tag checksums
	jbdIncompatCsumV3      = 0x10 // crc32c, journal_block_tag3_t
	jbdIncompatFastCommit  = 0x20 // ext4 fast commit area at the journal's end

	// jbdIncompatKnown is what this package can replay and write.
	jbdIncompatKnown = jbdIncompatRevoke | jbdIncompat64bit |
		jbdIncompatAsyncCommit | jbdIncompatCsumV2 | jbdIncompatCsumV3
)

// jbdIncompatNames names the incompat bits for error messages.
var jbdIncompatNames = map[uint32]string{
	jbdIncompatRevoke:      "revoke",
	jbdIncompat64bit:       "64bit",
	jbdIncompatAsyncCommit: "async_commit",
	jbdIncompatCsumV2:      "csum_v2",
	jbdIncompatCsumV3:      "csum_v3",
	jbdIncompatFastCommit:  "fast_commit",
}

// Tag flags (JBD2_FLAG_*), in t_flags of journal_block_tag_t/tag3_t.
const (
	jbdFlagEscape   = 0x1 // the journal copy had its magic zeroed
	jbdFlagSameUUID = 0x2 // no 16-byte UUID follows this tag
	jbdFlagDeleted  = 0x4 // unused by replay
	jbdFlagLastTag  = 0x8 // last tag of the descriptor block
)

// Checksum types and sizes.
const (
	jbdChecksumCRC32  = 1 // h_chksum_type for COMPAT_CHECKSUM commits
	jbdChecksumCRC32C = 4 // s_checksum_type for csum v2/v3

	jbdCRC32Size = 4 // h_chksum_size for COMPAT_CHECKSUM commits
	jbdTailSize  = 4 // jbd2_journal_block_tail at the end of descriptor/revoke
	jbdUUIDSize  = 16
)

// Byte offsets inside a journal superblock that this package rewrites in
// place, so that fields it does not interpret (s_users, padding) survive.
const (
	jsbOffSequence = 0x18
	jsbOffStart    = 0x1C
	jsbOffChecksum = 0xFC
	jsbSize        = 1024 // sizeof(journal_superblock_t)
)

// Byte offsets inside blocks that are not decoded through a struct.
const (
	commitOffChecksum = 0x10 // h_chksum[0]
	commitOffSec      = 0x30 // h_commit_sec
	commitOffNsec     = 0x38 // h_commit_nsec
	revokeOffCount    = 0x0C // r_count: bytes used, header included
	revokeHeaderSize  = 16   // sizeof(jbd2_journal_revoke_header_t)
)

// jbdHeader is journal_header_t, the first 12 bytes of every journal
// metadata block.
type jbdHeader struct {
	Magic     uint32
	BlockType uint32
	Sequence  uint32
}

// jbdSuperblock is journal_superblock_t, found at journal block 0.
// Fields from FeatureCompat on exist only in a V2 superblock.
type jbdSuperblock struct {
	Header       jbdHeader
	BlockSize    uint32 // journal device block size, equals the fs block size
	MaxLen       uint32 // total blocks in the journal
	First        uint32 // first block of log information
	Sequence     uint32 // first commit ID expected in the log
	Start        uint32 // journal block of the log start; 0: clean
	Errno        int32
	Compat       uint32
	Incompat     uint32
	ROCompat     uint32
	UUID         [16]byte
	NrUsers      uint32
	DynSuper     uint32
	MaxTrans     uint32
	MaxTransData uint32
	ChecksumType uint8
	_            [3]byte
	NumFCBlocks  uint32 // fast commit blocks (ext4 only)
	Head         uint32 // journal head at the last mount (informational)
	_            [40]uint32
	Checksum     uint32 // crc32c of this struct with Checksum zeroed
	Users        [16 * 48]byte
}

// commit block layout (struct commit_header), decoded by offset:
//
//	0x00 header, 0x0C h_chksum_type u8, 0x0D h_chksum_size u8,
//	0x0E h_padding[2], 0x10 h_chksum[8] be32, 0x30 h_commit_sec be64,
//	0x38 h_commit_nsec be32.
const commitHeaderSize = 0x3C
