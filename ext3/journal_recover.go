package ext3

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// Recovery follows jbd2_journal_recover and e2fsck's recovery.c: scan
// the log from s_start for consecutive transactions s_sequence,
// s_sequence+1, ... each closed by a valid commit block; collect the
// revoke records of those transactions; write the newest unrevoked copy
// of every logged block home. Scanning and revoke collection share one
// pass here, because revokes only count once their transaction's commit
// block has been found and checked.
//
// Unlike the kernel, a checksum failure anywhere in a transaction (tail,
// data tag, commit) ends the log just before that transaction instead of
// skipping the bad block: replaying half a transaction would break the
// atomicity the ext3 core relies on.

// jbdLogged is one block copy found in a committed transaction.
type jbdLogged struct {
	jblock uint32 // journal block holding the copy
	nr     uint64 // home fs block
	seq    uint32 // transaction ID
	escape bool   // the copy's first four bytes stand for the magic
}

// jbdScan is what the scan of the log found.
type jbdScan struct {
	end     uint32            // first transaction ID not in the log
	failed  uint32            // transaction whose commit block failed its checksum, or 0
	txs     int               // committed transactions found
	wrapped bool              // the log runs past the end of the journal area
	badStop bool              // the scan ended on a damaged block of transaction end
	logged  []jbdLogged       // blocks of committed transactions, log order
	revokes map[uint64]uint32 // home block -> newest transaction revoking it
}

// jbdReplayStats describes the last recovery, for tests and debugging.
type jbdReplayStats struct {
	txs     int  // committed transactions replayed
	wrapped bool // the log wrapped at the end of the journal area
}

// tidGT compares transaction IDs modulo 2^32 (tid_gt in jbd2.h).
func tidGT(x, y uint32) bool { return int32(x-y) > 0 }

// recover replays the committed transactions of the log, syncs, then
// marks the journal empty with s_sequence past the last transaction and
// syncs again. It re-reads the superblock first, so it also repairs a
// journal whose commit failed part-way.
func (j *journal) recover() error {
	if err := j.readSuper(); err != nil {
		return err
	}
	aborted := j.aborted != nil
	if j.start == 0 && !aborted {
		return nil
	}
	j.failedCommit = 0
	scan := jbdScan{end: j.sequence, revokes: map[uint64]uint32{}}
	if j.start != 0 {
		var err error
		if scan, err = j.scanLog(); err != nil {
			return err
		}
		if err := j.replay(&scan); err != nil {
			return err
		}
		j.failedCommit = scan.failed
		j.replayed = jbdReplayStats{txs: scan.txs, wrapped: scan.wrapped}
	}
	// As the kernel does, skip one ID past the end of the log so that no
	// stale block can carry the next expected sequence.
	next := scan.end + 1
	if scan.badStop {
		next = j.pastArea(next)
	}
	if err := j.writeSuper(0, next); err != nil {
		return err
	}
	if err := j.dev.Sync(); err != nil {
		return fmt.Errorf("ext3: sync journal superblock: %w", err)
	}
	j.aborted = nil
	return nil
}

// logCursor walks the circular log area [first, maxlen).
type logCursor struct {
	j    *journal
	pos  uint32 // next journal block to read
	seen uint32 // blocks read so far; a log longer than the area is corrupt
	// wrapped is set once a block past the end of the area was read.
	wrapped bool
	atEnd   bool // pos went back to first; the next block read wraps
}

// next returns the journal block at the cursor and advances it, or false
// when the walk has gone once around the whole area.
func (c *logCursor) next() (uint32, bool) {
	if c.seen >= c.j.maxlen-c.j.first {
		return 0, false
	}
	p := c.pos
	c.seen++
	c.pos++
	c.wrapped = c.wrapped || c.atEnd
	if c.pos >= c.j.maxlen {
		c.pos = c.j.first
		c.atEnd = true
	}
	return p, true
}

// jbdTx collects one transaction while it is scanned.
type jbdTx struct {
	logged  []jbdLogged
	revokes []uint64
	crc     uint32 // COMPAT_CHECKSUM running crc32_be
}

// scanLog finds the committed transactions (PASS_SCAN and PASS_REVOKE).
// It returns an error only for a committed transaction that would write
// outside the filesystem or into the journal itself.
func (j *journal) scanLog() (jbdScan, error) {
	s := jbdScan{revokes: map[uint64]uint32{}}
	c := logCursor{j: j, pos: j.start}
	seq := j.sequence
	b := make([]byte, j.bs)
	data := make([]byte, j.bs)
	tx := jbdTx{crc: ^uint32(0)}
	for {
		p, ok := c.next()
		if !ok || j.readBlock(p, b) != nil {
			break
		}
		var h jbdHeader
		binary.Decode(b, binary.BigEndian, &h)
		if h.Magic != jbdMagic || h.Sequence != seq {
			break
		}
		var good bool
		switch h.BlockType {
		case jbdDescriptorBlock:
			good = j.scanDescriptor(&c, seq, b, data, &tx)
		case jbdRevokeBlock:
			good = j.scanRevoke(b, &tx)
		case jbdCommitBlock:
			if good = j.commitOK(b, tx.crc); !good {
				s.failed = seq
			} else {
				if err := j.checkTx(seq, &tx, &s); err != nil {
					return s, err
				}
				seq++
				s.txs++
				s.wrapped = s.wrapped || c.wrapped
				tx = jbdTx{crc: ^uint32(0)}
			}
		}
		if !good {
			s.badStop = true
			break
		}
	}
	s.end = seq
	return s, nil
}

// pastArea returns next, or one past the newest transaction ID found in
// any block header of the journal area if that is later. After a scan
// that stopped on a damaged transaction, valid blocks of later
// transactions may remain further on; the next commit must not reuse
// their IDs, or a crash could replay them.
func (j *journal) pastArea(next uint32) uint32 {
	b := make([]byte, j.bs)
	for p := j.first; p < j.maxlen; p++ {
		if j.readBlock(p, b) != nil {
			continue
		}
		var h jbdHeader
		binary.Decode(b, binary.BigEndian, &h)
		if h.Magic == jbdMagic && !tidGT(next, h.Sequence) {
			next = h.Sequence + 1
		}
	}
	return next
}

// scanDescriptor checks descriptor block b of transaction seq and the
// data blocks it describes, adding them to tx.
func (j *journal) scanDescriptor(c *logCursor, seq uint32, b, data []byte, tx *jbdTx) bool {
	if !j.tailCsumOK(b) {
		return false
	}
	v1 := j.compat&jbdCompatChecksum != 0
	if v1 {
		tx.crc = crc32BE(tx.crc, b)
	}
	for _, t := range j.decodeTags(b) {
		p, ok := c.next()
		if !ok {
			return false
		}
		// Data blocks are read here only when a checksum covers them.
		if v1 || j.csumV23() {
			if j.readBlock(p, data) != nil || !j.tagChecksumOK(t, seq, data) {
				return false
			}
			if v1 {
				tx.crc = crc32BE(tx.crc, data)
			}
		}
		tx.logged = append(tx.logged, jbdLogged{
			jblock: p, nr: t.nr, seq: seq, escape: t.flags&jbdFlagEscape != 0,
		})
	}
	return true
}

// scanRevoke checks revoke block b and adds its records to tx.
func (j *journal) scanRevoke(b []byte, tx *jbdTx) bool {
	if !j.tailCsumOK(b) {
		return false
	}
	count := binary.BigEndian.Uint32(b[revokeOffCount:])
	if count < revokeHeaderSize || count > uint32(j.tagAreaEnd()) {
		return false
	}
	size := uint32(4)
	if j.incompat&jbdIncompat64bit != 0 {
		size = 8
	}
	for off := uint32(revokeHeaderSize); off+size <= count; off += size {
		if size == 8 {
			tx.revokes = append(tx.revokes, binary.BigEndian.Uint64(b[off:]))
		} else {
			tx.revokes = append(tx.revokes, uint64(binary.BigEndian.Uint32(b[off:])))
		}
	}
	return true
}

// commitOK checks the checksums of commit block b; crc is the running
// COMPAT_CHECKSUM crc of the transaction.
func (j *journal) commitOK(b []byte, crc uint32) bool {
	sum := binary.BigEndian.Uint32(b[commitOffChecksum:])
	if j.compat&jbdCompatChecksum != 0 {
		typ, size := b[0x0C], b[0x0D]
		unused := typ == 0 && size == 0 && sum == 0
		if !unused && (typ != jbdChecksumCRC32 || size != jbdCRC32Size || sum != crc) {
			return false
		}
	}
	if j.csumV23() && sum != j.commitCsum(b) {
		return false
	}
	return true
}

// checkTx adds committed transaction tx to s. It refuses blocks that
// would be written outside the filesystem or over the journal, unless a
// revoke record of the same transaction cancels them.
func (j *journal) checkTx(seq uint32, tx *jbdTx, s *jbdScan) error {
	for _, nr := range tx.revokes {
		if old, ok := s.revokes[nr]; !ok || tidGT(seq, old) {
			s.revokes[nr] = seq
		}
	}
	for _, l := range tx.logged {
		if j.revoked(s, l) {
			continue
		}
		if l.nr >= j.limit || j.isJournalBlock(l.nr) {
			return fmt.Errorf("%w: transaction %d logs fs block %d (journal block %d), "+
				"outside the filesystem's %d blocks or inside the journal",
				ErrJournalCorrupt, seq, l.nr, l.jblock, j.limit)
		}
	}
	s.logged = append(s.logged, tx.logged...)
	return nil
}

// revoked reports whether a revoke record of the same or a later
// transaction cancels l (jbd2_journal_test_revoke).
func (j *journal) revoked(s *jbdScan, l jbdLogged) bool {
	rs, ok := s.revokes[l.nr]
	return ok && !tidGT(l.seq, rs)
}

// replay writes the newest unrevoked copy of each logged block home and
// syncs (PASS_REPLAY). Writing only the newest copy gives the same result
// as replaying every copy in log order.
func (j *journal) replay(s *jbdScan) error {
	newest := map[uint64]jbdLogged{}
	for _, l := range s.logged {
		if !j.revoked(s, l) {
			newest[l.nr] = l
		}
	}
	nrs := make([]uint64, 0, len(newest))
	for nr := range newest {
		nrs = append(nrs, nr)
	}
	slices.Sort(nrs)

	b := make([]byte, j.bs)
	for _, nr := range nrs {
		l := newest[nr]
		// The scan read past this block; re-check the bound before writing.
		if nr >= j.limit || j.isJournalBlock(nr) {
			return fmt.Errorf("%w: replay of fs block %d refused", ErrJournalCorrupt, nr)
		}
		if err := j.readBlock(l.jblock, b); err != nil {
			return err
		}
		if l.escape {
			binary.BigEndian.PutUint32(b, jbdMagic)
		}
		if _, err := j.dev.WriteAt(b, int64(nr)*int64(j.bs)); err != nil {
			return fmt.Errorf("ext3: replay journal block %d to fs block %d: %w",
				l.jblock, nr, err)
		}
	}
	if err := j.dev.Sync(); err != nil {
		return fmt.Errorf("ext3: sync replayed blocks: %w", err)
	}
	return nil
}
