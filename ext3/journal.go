// Journal commit protocol.
//
// The journal is JBD2 as ext3 uses it: an internal journal (inode 8)
// whose blocks phys[0..s_maxlen) hold the journal superblock at journal
// block 0 and a circular log in [s_first, s_maxlen). This package keeps
// the journal empty (s_start == 0) between commits and checkpoints every
// transaction before commit returns, so each transaction is written at
// s_first and never wraps. Recovery still follows the log around the end
// of the area, as journals written by the kernel do.
//
// commit writes one transaction with sequence S = s_sequence:
//
//  1. The journal superblock with s_start = s_first (s_sequence still S),
//     the descriptor blocks and the journal copies of the blocks, as few
//     WriteAt calls as the physical layout of the journal allows; Sync.
//  2. The commit block (sequence S, commit time); Sync. The transaction
//     is durable from here on.
//  3. Every block to its home location; Sync.
//  4. The journal superblock with s_start = 0, s_sequence = S+1; Sync.
//
// Why a crash at any point leaves the old or the new state after recover:
//   - Before step 2 is durable, either s_start is 0 (nothing is
//     replayed) or the scan starting at s_first finds no commit block for
//     S, so nothing is replayed and home blocks were not touched yet.
//   - After step 2, s_start is non-zero and the whole transaction is in
//     the log, so recover replays all of it, whatever part of step 3
//     reached the disk; replay is idempotent.
//   - After step 4 the journal is empty and the home blocks are new.
//
// Stale log blocks cannot pass for transaction S: every block in the log
// carries a sequence below the superblock's s_sequence, because the
// sequence only grows: commit moves it to S+1, recover moves it past the
// last transaction it found (as the kernel does), and a commit that fails
// halfway marks the journal aborted so that no later commit reuses S
// before recover has run. Sequence comparisons allow wraparound at 2^32.
//
// Data blocks that begin with the JBD2 magic are escaped in the log
// (first four bytes zeroed, JBD2_FLAG_ESCAPE in their tag) so that a scan
// can never take them for a journal metadata block.
//
// Why four syncs and not fewer: writing the commit block together with
// the copies (steps 1 and 2 in one flush) is only safe when recovery
// rejects a transaction with any torn block, which this package does for
// checksummed journals but the kernel and e2fsck do not (they skip a bad
// data block and replay the rest), and the images must stay safe for
// them. The sync of step 4 keeps the journal durably empty when commit
// returns, so a later crash can never replay a transaction over blocks
// that were reused outside the journal (the job revoke records do for
// the kernel; this package writes none). After a transaction that fails
// its checks, blocks of later transactions may remain in the log, so
// recover then restarts the sequence past every ID in the journal area
// (the kernel and e2fsck only past the damaged transaction).
//
// Formats: superblock V1 and V2; tags of 8/12 bytes, csum v2 (10/14) and
// csum v3 (16); revoke records of 4 or 8 bytes; COMPAT_CHECKSUM (crc32_be
// in the commit block), csum v2/v3 (crc32c) for superblock, descriptor,
// revoke, commit and data blocks. Commits are written in the journal's
// own format, so a kernel-made journal keeps working. fast_commit and
// unknown incompat or ro_compat features are refused by name.

package ext3

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"time"
)

// Journal errors. Functions wrap them with the journal block or
// transaction concerned.
var (
	// ErrTxTooBig means a commit holds more blocks than the journal can
	// take in one transaction; see journal.capacity.
	ErrTxTooBig = errors.New("ext3: transaction too big for the journal")
	// ErrJournalCorrupt means the journal superblock or a committed
	// transaction is not valid JBD2.
	ErrJournalCorrupt = errors.New("ext3: corrupt journal")
	// ErrJournalAborted means an earlier commit failed part-way; the
	// journal must be recovered before it takes more commits.
	ErrJournalAborted = errors.New("ext3: journal aborted by an earlier error")
)

// metaBlock is one filesystem block to be written through the journal.
type metaBlock struct {
	nr   uint32 // fs block number of the home location
	data []byte // exactly one fs block
}

// journal is an open JBD2 journal. It is not safe for concurrent use.
type journal struct {
	dev  Device
	bs   int      // block size, fs and journal alike
	phys []uint32 // phys[i] is the fs block holding journal block i; len is s_maxlen

	raw      []byte // journal block 0 as last read or written
	first    uint32 // s_first: first log block
	maxlen   uint32 // s_maxlen: journal blocks in use, log ends before it
	start    uint32 // s_start as on disk: 0 when the journal is empty
	sequence uint32 // s_sequence as on disk: ID of the next transaction
	compat   uint32 // s_feature_compat (0 for a V1 superblock)
	incompat uint32 // s_feature_incompat (0 for a V1 superblock)
	uuid     [16]byte
	errno    int32  // s_errno: non-zero if the kernel aborted the journal
	csumSeed uint32 // crc32c of uuid, for csum v2/v3
	tagBytes int    // size of one block tag without UUID

	// limit bounds home block numbers: a tag or metaBlock naming a block
	// at or past it is refused. loadJournal sets it from the device size;
	// the core may lower it to the filesystem's block count.
	limit uint64
	// own is phys sorted, to refuse home blocks inside the journal.
	own []uint32
	// aborted is the error that stopped a commit part-way; commits are
	// refused until recover succeeds.
	aborted error
	// failedCommit is, after recover, the ID of a transaction whose commit
	// block was found but failed its checksum (replay stopped before it),
	// or 0. The core should then mark the filesystem as having errors, as
	// e2fsck does ("journal transaction N was corrupt").
	failedCommit uint32
	// logBuf and runBuf are scratch buffers reused by commit for the log
	// and the checkpoint runs; they grow to the largest commit seen.
	logBuf, runBuf []byte
	// replayed describes what the last recover found.
	replayed jbdReplayStats
	// now returns the commit time; tests replace it.
	now func() time.Time
	// beforeWrite, if set, runs before a commit writes anything (the file
	// system sets needs_recovery in its superblock there).
	beforeWrite func() error
}

// loadJournal reads and validates the journal superblock. phys maps
// journal blocks to fs blocks and must cover at least s_maxlen blocks.
func loadJournal(dev Device, blockSize int, phys []uint32) (*journal, error) {
	if len(phys) == 0 {
		return nil, fmt.Errorf("%w: journal inode maps no blocks", ErrJournalCorrupt)
	}
	j := &journal{dev: dev, bs: blockSize, phys: phys, now: time.Now}
	if err := j.readSuper(); err != nil {
		return nil, err
	}
	j.phys = phys[:j.maxlen]
	for i, p := range j.phys {
		if p == 0 {
			return nil, fmt.Errorf("%w: journal block %d is a hole", ErrJournalCorrupt, i)
		}
	}
	j.own = slices.Clone(j.phys)
	slices.Sort(j.own)
	j.limit = deviceBlocks(dev, blockSize)
	return j, nil
}

// alsoOwn adds fs blocks of the journal inode that hold no log: its
// indirect blocks, and any it maps past s_maxlen. A transaction that
// logs one of them would have its replay rewrite the journal's own map
// (a trial's crafted journal left an image e2fsck could not check), and
// the allocator must not hand them out either.
func (j *journal) alsoOwn(blocks ...[]uint32) {
	j.own = slices.Concat(append([][]uint32{j.own}, blocks...)...)
	slices.Sort(j.own)
}

// readSuper reads journal block 0 and validates it
// (load_superblock/journal_get_superblock in the kernel).
func (j *journal) readSuper() error {
	raw := make([]byte, j.bs)
	if j.bs < jsbSize {
		return fmt.Errorf("%w: block size %d below %d", ErrJournalCorrupt, j.bs, jsbSize)
	}
	if _, err := j.dev.ReadAt(raw, int64(j.phys[0])*int64(j.bs)); err != nil {
		return fmt.Errorf("ext3: read journal superblock at block %d: %w", j.phys[0], err)
	}
	var sb jbdSuperblock
	if _, err := binary.Decode(raw, binary.BigEndian, &sb); err != nil {
		return fmt.Errorf("ext3: decode journal superblock: %w", err)
	}
	if err := j.checkSuper(&sb, raw); err != nil {
		if errors.Is(err, ErrUnsupported) {
			return fmt.Errorf("ext3: journal superblock: %w", err)
		}
		return fmt.Errorf("%w: superblock: %w", ErrJournalCorrupt, err)
	}
	j.raw = raw
	j.first, j.maxlen = sb.First, sb.MaxLen
	j.start, j.sequence = sb.Start, sb.Sequence
	j.uuid, j.errno = sb.UUID, sb.Errno
	j.compat, j.incompat = 0, 0
	if sb.Header.BlockType == jbdSuperblockV2 {
		j.compat, j.incompat = sb.Compat, sb.Incompat
	}
	j.tagBytes = computeTagBytes(j.incompat)
	j.csumSeed = jbdCRC32c(^uint32(0), j.uuid[:])
	return nil
}

// checkSuper validates a decoded superblock against the journal's
// mapping and the features this package supports.
func (j *journal) checkSuper(sb *jbdSuperblock, raw []byte) error {
	h := sb.Header
	switch {
	case h.Magic != jbdMagic:
		return fmt.Errorf("bad magic %#x", h.Magic)
	case h.BlockType != jbdSuperblockV1 && h.BlockType != jbdSuperblockV2:
		return fmt.Errorf("unknown superblock type %d", h.BlockType)
	case sb.BlockSize != uint32(j.bs):
		return fmt.Errorf("block size %d, filesystem has %d", sb.BlockSize, j.bs)
	case uint64(sb.MaxLen) > uint64(len(j.phys)):
		return fmt.Errorf("s_maxlen %d beyond the %d blocks of the journal inode",
			sb.MaxLen, len(j.phys))
	case sb.First == 0 || uint64(sb.First)+3 > uint64(sb.MaxLen):
		return fmt.Errorf("s_first %d leaves no log in %d blocks", sb.First, sb.MaxLen)
	case sb.Start != 0 && (sb.Start < sb.First || sb.Start >= sb.MaxLen):
		return fmt.Errorf("s_start %d outside the log [%d,%d)", sb.Start, sb.First, sb.MaxLen)
	}
	if h.BlockType == jbdSuperblockV1 {
		return nil
	}
	return checkFeatures(sb, raw)
}

// checkFeatures refuses feature sets this package cannot replay or write,
// naming the feature, and verifies the superblock checksum.
func checkFeatures(sb *jbdSuperblock, raw []byte) error {
	if bad := sb.Incompat &^ jbdIncompatKnown; bad != 0 {
		for bit := uint32(1); bit != 0; bit <<= 1 {
			if bad&bit == 0 {
				continue
			}
			if name, ok := jbdIncompatNames[bit]; ok {
				return fmt.Errorf("%w: journal incompat %s", ErrUnsupported, name)
			}
			return fmt.Errorf("%w: unknown journal incompat %#x", ErrUnsupported, bit)
		}
	}
	if sb.ROCompat != 0 {
		return fmt.Errorf("%w: unknown journal ro_compat %#x", ErrUnsupported, sb.ROCompat)
	}
	v2, v3 := sb.Incompat&jbdIncompatCsumV2 != 0, sb.Incompat&jbdIncompatCsumV3 != 0
	switch {
	case v2 && v3:
		return errors.New("both csum_v2 and csum_v3 set")
	case (v2 || v3) && sb.Compat&jbdCompatChecksum != 0:
		return errors.New("both checksum (v1) and csum_v2/v3 set")
	case !v2 && !v3:
		return nil
	case sb.ChecksumType != jbdChecksumCRC32C:
		return fmt.Errorf("unknown checksum type %d", sb.ChecksumType)
	}
	if got := superblockCsum(raw); got != sb.Checksum {
		return fmt.Errorf("checksum %#08x, computed %#08x", sb.Checksum, got)
	}
	return nil
}

// deviceBlocks returns how many whole blocks dev holds: from Size or Stat
// when dev has them, else by probing reads.
func deviceBlocks(dev Device, bs int) uint64 {
	if s, ok := dev.(interface{ Size() int64 }); ok {
		return uint64(max(s.Size(), 0)) / uint64(bs)
	}
	if s, ok := dev.(interface{ Stat() (fs.FileInfo, error) }); ok {
		if fi, err := s.Stat(); err == nil && fi.Mode().IsRegular() {
			return uint64(fi.Size()) / uint64(bs)
		}
	}
	// Binary search for the first block that cannot be read.
	var one [1]byte
	readable := func(b uint64) bool {
		n, _ := dev.ReadAt(one[:], int64(b)*int64(bs)+int64(bs)-1)
		return n == 1
	}
	lo, hi := uint64(0), uint64(1)<<32 // lo readable count, hi not
	for lo+1 < hi {
		mid := lo + (hi-lo)/2
		if readable(mid - 1) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// needsRecovery reports whether the log holds transactions that may not
// have reached their home blocks (s_start != 0).
func (j *journal) needsRecovery() bool { return j.start != 0 }

// csumV23 reports whether the journal uses crc32c checksums.
func (j *journal) csumV23() bool {
	return j.incompat&(jbdIncompatCsumV2|jbdIncompatCsumV3) != 0
}

// capacity returns the most blocks one commit can take: the log less one
// commit block and the descriptor blocks the tags need.
func (j *journal) capacity() int {
	log := int(j.maxlen - j.first)
	per := j.tagsPerDescriptor()
	// n blocks need ceil(n/per) descriptors and one commit block.
	n := (log - 1) * per / (per + 1)
	for n > 0 && n+(n+per-1)/per+1 > log {
		n--
	}
	return n
}

// formatJournal returns journal block 0 of a new, empty journal of
// nblocks blocks, as mke2fs writes it for ext3: a V2 superblock, no
// features, s_first 1, s_sequence 1, one user.
func formatJournal(blockSize int, nblocks uint32, uuid [16]byte) []byte {
	sb := jbdSuperblock{
		Header:    jbdHeader{Magic: jbdMagic, BlockType: jbdSuperblockV2},
		BlockSize: uint32(blockSize),
		MaxLen:    nblocks,
		First:     1,
		Sequence:  1,
		UUID:      uuid,
		NrUsers:   1,
	}
	b := make([]byte, blockSize)
	if _, err := binary.Encode(b, binary.BigEndian, &sb); err != nil {
		panic(fmt.Sprintf("ext3: encode journal superblock: %v", err))
	}
	return b
}

// writeSuper rewrites s_start and s_sequence of the journal superblock
// in place (with its checksum) and writes block 0. It does not sync.
func (j *journal) writeSuper(start, sequence uint32) error {
	j.encodeSuper(start, sequence)
	if _, err := j.dev.WriteAt(j.raw, int64(j.phys[0])*int64(j.bs)); err != nil {
		return fmt.Errorf("ext3: write journal superblock at block %d: %w", j.phys[0], err)
	}
	return nil
}

// encodeSuper sets s_start and s_sequence in j.raw and the in-memory
// copies, and updates the checksum when the journal has one.
func (j *journal) encodeSuper(start, sequence uint32) {
	be := binary.BigEndian
	be.PutUint32(j.raw[jsbOffStart:], start)
	be.PutUint32(j.raw[jsbOffSequence:], sequence)
	if j.csumV23() {
		be.PutUint32(j.raw[jsbOffChecksum:], superblockCsum(j.raw))
	}
	j.start, j.sequence = start, sequence
}

// readBlock reads journal block i into b.
func (j *journal) readBlock(i uint32, b []byte) error {
	off := int64(j.phys[i]) * int64(j.bs)
	// io.ReaderAt may report io.EOF along with a full read at the end.
	if n, err := j.dev.ReadAt(b, off); n < len(b) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("ext3: read journal block %d (fs block %d): %w", i, j.phys[i], err)
	}
	return nil
}

// writeBlocks writes data, a whole number of blocks, to journal blocks
// from i on, with one WriteAt per physically contiguous run.
func (j *journal) writeBlocks(i uint32, data []byte) error {
	bs := j.bs
	for len(data) > 0 {
		n := 1
		for n*bs < len(data) && j.phys[i+uint32(n)] == j.phys[i]+uint32(n) {
			n++
		}
		if _, err := j.dev.WriteAt(data[:n*bs], int64(j.phys[i])*int64(bs)); err != nil {
			return fmt.Errorf("ext3: write journal blocks %d-%d: %w", i, i+uint32(n)-1, err)
		}
		i, data = i+uint32(n), data[n*bs:]
	}
	return nil
}

// isJournalBlock reports whether fs block nr belongs to the journal.
func (j *journal) isJournalBlock(nr uint64) bool {
	_, found := slices.BinarySearch(j.own, uint32(min(nr, 1<<32-1)))
	return found && nr < 1<<32
}
