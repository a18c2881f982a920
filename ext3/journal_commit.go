package ext3

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// commit writes blocks as one transaction and checkpoints it, following
// the protocol described at the top of journal.go. It returns
// ErrTxTooBig, without writing, when blocks exceed capacity. After any
// I/O error the journal is aborted: later commits fail with
// ErrJournalAborted until recover succeeds.
func (j *journal) commit(blocks []metaBlock) error {
	if err := j.checkCommit(blocks); err != nil {
		return err
	}
	if len(blocks) == 0 {
		return nil
	}
	if j.beforeWrite != nil {
		// The file system marks itself in use (needs_recovery) first.
		if err := j.beforeWrite(); err != nil {
			return err
		}
	}
	if err := j.commitLocked(blocks); err != nil {
		j.aborted = err
		return err
	}
	return nil
}

// checkCommit refuses a commit that cannot be written safely.
func (j *journal) checkCommit(blocks []metaBlock) error {
	switch {
	case j.aborted != nil:
		return fmt.Errorf("%w: %w", ErrJournalAborted, j.aborted)
	case j.start != 0:
		return errors.New("ext3: journal needs recovery before commit")
	case len(blocks) > j.capacity():
		return fmt.Errorf("%w: %d blocks, capacity %d", ErrTxTooBig, len(blocks), j.capacity())
	}
	for i, m := range blocks {
		if len(m.data) != j.bs {
			return fmt.Errorf("ext3: commit block %d (fs block %d): %d bytes, want %d",
				i, m.nr, len(m.data), j.bs)
		}
		if uint64(m.nr) >= j.limit || j.isJournalBlock(uint64(m.nr)) {
			return fmt.Errorf("ext3: commit of fs block %d: outside the filesystem "+
				"or inside the journal", m.nr)
		}
	}
	return nil
}

// commitLocked runs the four steps of a commit.
func (j *journal) commitLocked(blocks []metaBlock) error {
	seq := j.sequence

	// Step 1: superblock marking the log non-empty, descriptors, copies.
	if err := j.writeSuper(j.first, seq); err != nil {
		return err
	}
	crc, err := j.writeLog(seq, blocks)
	if err != nil {
		return err
	}
	if err := j.dev.Sync(); err != nil {
		return fmt.Errorf("ext3: sync journal transaction %d: %w", seq, err)
	}

	// Step 2: the commit block makes the transaction durable.
	end := j.first + uint32(j.logBlocks(len(blocks)))
	if err := j.writeBlocks(end, j.commitBlock(seq, crc)); err != nil {
		return err
	}
	if err := j.dev.Sync(); err != nil {
		return fmt.Errorf("ext3: sync commit block of transaction %d: %w", seq, err)
	}

	// Step 3: checkpoint.
	if err := j.checkpoint(blocks); err != nil {
		return err
	}

	// Step 4: the journal is empty again.
	if err := j.writeSuper(0, seq+1); err != nil {
		return err
	}
	if err := j.dev.Sync(); err != nil {
		return fmt.Errorf("ext3: sync journal superblock: %w", err)
	}
	return nil
}

// logBlocks is the number of log blocks before the commit block of a
// transaction of n blocks: descriptors and copies.
func (j *journal) logBlocks(n int) int {
	per := j.tagsPerDescriptor()
	return (n+per-1)/per + n
}

// writeLog writes the descriptor blocks and journal copies of a
// transaction to the log from s_first and returns the COMPAT_CHECKSUM
// crc32_be over them. It builds one descriptor block and its copies at a
// time, so the scratch memory is bounded by one descriptor's worth of
// blocks whatever the size of the transaction.
func (j *journal) writeLog(seq uint32, blocks []metaBlock) (uint32, error) {
	per := j.tagsPerDescriptor()
	crc := ^uint32(0)
	at := j.first
	for d := 0; d*per < len(blocks); d++ {
		group := blocks[d*per : min((d+1)*per, len(blocks))]
		buf := j.scratchBuf(&j.logBuf, (len(group)+1)*j.bs)
		j.buildGroup(seq, group, buf)
		if j.compat&jbdCompatChecksum != 0 {
			crc = crc32BE(crc, buf)
		}
		if err := j.writeBlocks(at, buf); err != nil {
			return 0, err
		}
		at += uint32(len(group) + 1)
	}
	return crc, nil
}

// buildGroup writes into out, zeroed and len(group)+1 blocks long, one
// descriptor block followed by the journal copies of group.
func (j *journal) buildGroup(seq uint32, group []metaBlock, out []byte) {
	bs := j.bs
	desc := out[:bs]
	j.putHeader(desc, jbdDescriptorBlock, seq)
	off := jbdHeaderSize
	for i, m := range group {
		copyBlk := out[(i+1)*bs : (i+2)*bs]
		copy(copyBlk, m.data)
		t := jbdTag{nr: uint64(m.nr)}
		if binary.BigEndian.Uint32(m.data) == jbdMagic {
			t.flags |= jbdFlagEscape
			binary.BigEndian.PutUint32(copyBlk, 0)
		}
		if i > 0 {
			t.flags |= jbdFlagSameUUID
		}
		if i == len(group)-1 {
			t.flags |= jbdFlagLastTag
		}
		if j.csumV23() {
			t.csum = j.dataCsum(seq, copyBlk)
		}
		j.encodeTag(desc[off:off+j.tagBytes], t)
		off += j.tagBytes
		if i == 0 {
			copy(desc[off:], j.uuid[:])
			off += jbdUUIDSize
		}
	}
	if j.csumV23() {
		binary.BigEndian.PutUint32(desc[bs-jbdTailSize:], j.blockTailCsum(desc))
	}
}

// scratchBuf returns *buf resized to n zeroed bytes, reallocating only
// when it is too small, so that commits of similar size reuse memory.
func (j *journal) scratchBuf(buf *[]byte, n int) []byte {
	if cap(*buf) < n {
		*buf = make([]byte, n)
	}
	b := (*buf)[:n]
	clear(b)
	return b
}

// putHeader writes a journal_header_t at the start of b.
func (j *journal) putHeader(b []byte, typ, seq uint32) {
	binary.BigEndian.PutUint32(b[0:], jbdMagic)
	binary.BigEndian.PutUint32(b[4:], typ)
	binary.BigEndian.PutUint32(b[8:], seq)
}

// commitBlock returns the commit block of transaction seq, with its
// commit time and the checksums the journal's features ask for.
func (j *journal) commitBlock(seq, crc uint32) []byte {
	b := make([]byte, j.bs)
	j.putHeader(b, jbdCommitBlock, seq)
	now := j.now()
	binary.BigEndian.PutUint64(b[commitOffSec:], uint64(now.Unix()))
	binary.BigEndian.PutUint32(b[commitOffNsec:], uint32(now.Nanosecond()))
	if j.compat&jbdCompatChecksum != 0 {
		b[0x0C], b[0x0D] = jbdChecksumCRC32, jbdCRC32Size
		binary.BigEndian.PutUint32(b[commitOffChecksum:], crc)
	}
	if j.csumV23() {
		binary.BigEndian.PutUint32(b[commitOffChecksum:], j.commitCsum(b))
	}
	return b
}

// checkpointRun bounds the bytes checkpoint merges into one write.
const checkpointRun = 1 << 20

// checkpoint writes every block home, merging runs of consecutive
// blocks into one WriteAt, and syncs. A block listed twice ends with its
// last contents, as replay would leave it.
func (j *journal) checkpoint(blocks []metaBlock) error {
	last := make(map[uint32]int, len(blocks))
	for i, m := range blocks {
		last[m.nr] = i
	}
	// Runs of consecutive blocks are copied together into one buffer of
	// at most checkpointRun bytes; a lone block is written from the
	// caller's slice.
	maxRun := uint32(max(1, checkpointRun/j.bs))
	if cap(j.runBuf) < int(maxRun)*j.bs {
		j.runBuf = make([]byte, 0, int(maxRun)*j.bs)
	}
	run := j.runBuf[:0]
	var runStart, runLen uint32
	var lone []byte
	flush := func() error {
		if runLen == 0 {
			return nil
		}
		buf := run
		if runLen == 1 {
			buf = lone
		}
		_, err := j.dev.WriteAt(buf, int64(runStart)*int64(j.bs))
		run = run[:0]
		if err != nil {
			return fmt.Errorf("ext3: checkpoint fs blocks %d-%d: %w",
				runStart, runStart+runLen-1, err)
		}
		runLen = 0
		return nil
	}
	for i, m := range blocks {
		if last[m.nr] != i {
			continue
		}
		if runLen > 0 && (m.nr != runStart+runLen || runLen == maxRun) {
			if err := flush(); err != nil {
				return err
			}
		}
		if runLen == 0 {
			runStart, lone = m.nr, m.data
		}
		if runLen == 1 {
			run = append(run, lone...)
		}
		if runLen > 0 {
			run = append(run, m.data...)
		}
		runLen++
	}
	if err := flush(); err != nil {
		return err
	}
	if err := j.dev.Sync(); err != nil {
		return fmt.Errorf("ext3: sync checkpoint: %w", err)
	}
	return nil
}
