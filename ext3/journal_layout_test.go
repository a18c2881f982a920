package ext3

import (
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"
)

func TestJournalStructSizes(t *testing.T) {
	for _, c := range []struct {
		name string
		v    any
		want int
	}{
		{"journal_header_t", jbdHeader{}, jbdHeaderSize},
		{"journal_superblock_t", jbdSuperblock{}, jsbSize},
	} {
		if got := binary.Size(c.v); got != c.want {
			t.Errorf("binary.Size(%s) = %d, want %d", c.name, got, c.want)
		}
	}
}

func TestJournalCRCVectors(t *testing.T) {
	check := []byte("123456789")
	// CRC-32/MPEG-2 is crc32_be seeded with ~0 and not inverted.
	if got := crc32BE(^uint32(0), check); got != 0x0376E6E7 {
		t.Errorf("crc32BE = %#08x, want 0x0376e6e7", got)
	}
	// The kernel's crc32c(~0, p) is the standard CRC-32C without the
	// final inversion.
	if got := jbdCRC32c(^uint32(0), check); got != ^uint32(0xE3069283) {
		t.Errorf("jbdCRC32c = %#08x, want %#08x", got, ^uint32(0xE3069283))
	}
}

func TestTagBytes(t *testing.T) {
	for _, c := range []struct {
		incompat uint32
		want     int
	}{
		{0, 8},
		{jbdIncompat64bit, 12},
		{jbdIncompatCsumV2, 10},
		{jbdIncompatCsumV2 | jbdIncompat64bit, 14},
		{jbdIncompatCsumV3, 16},
		{jbdIncompatCsumV3 | jbdIncompat64bit, 16},
	} {
		if got := computeTagBytes(c.incompat); got != c.want {
			t.Errorf("tag bytes for incompat %#x = %d, want %d", c.incompat, got, c.want)
		}
	}
}

// TestFormatJournalMatchesMke2fs compares formatJournal with the journal
// superblock mke2fs writes for ext3.
func TestFormatJournalMatchesMke2fs(t *testing.T) {
	for _, bs := range []string{"1024", "4096"} {
		t.Run(bs, func(t *testing.T) {
			img := mkfsImage(t, "mkfs.ext3", 32768, "-b", bs)
			phys := journalPhys(t, img)
			b := imageBlockSize(t, img)
			got := readRange(t, img, int64(phys[0])*int64(b), b)
			var uuid [16]byte
			copy(uuid[:], readRange(t, img, extSBOff+0x68, 16))
			want := formatJournal(b, uint32(len(phys)), uuid)
			if string(got) != string(want) {
				t.Errorf("journal superblock\nmke2fs: %x\nours:   %x", got[:0x50], want[:0x50])
			}
		})
	}
}

// memJournal returns an in-memory device of 2048 blocks with a
// formatted journal of nblocks at fs blocks 10.. and the journal loaded.
func memJournal(t *testing.T, bs int, nblocks uint32, incompat uint32) (*crashDev, *journal) {
	t.Helper()
	base := make([]byte, 2048*bs)
	sb := formatJournal(bs, nblocks, [16]byte{1, 2, 3})
	binary.BigEndian.PutUint32(sb[0x28:], incompat)
	if incompat&(jbdIncompatCsumV2|jbdIncompatCsumV3) != 0 {
		sb[0x50] = jbdChecksumCRC32C
		binary.BigEndian.PutUint32(sb[jsbOffChecksum:], superblockCsum(sb))
	}
	copy(base[10*bs:], sb)
	phys := make([]uint32, nblocks)
	for i := range phys {
		phys[i] = 10 + uint32(i)
	}
	dev := newCrashDev(base, bs, nil)
	j, err := loadJournal(dev, bs, phys)
	if err != nil {
		t.Fatal(err)
	}
	return dev, j
}

func TestLoadJournalRefuses(t *testing.T) {
	be := binary.BigEndian
	for _, c := range []struct {
		name    string
		edit    func(sb []byte)
		want    string
		wantErr error
	}{
		{"magic", func(sb []byte) { sb[0] = 0 }, "bad magic", ErrJournalCorrupt},
		{"type", func(sb []byte) { be.PutUint32(sb[4:], 1) }, "superblock type 1",
			ErrJournalCorrupt},
		{"blocksize", func(sb []byte) { be.PutUint32(sb[0xC:], 2048) }, "block size 2048",
			ErrJournalCorrupt},
		{"maxlen", func(sb []byte) { be.PutUint32(sb[0x10:], 300) }, "s_maxlen 300",
			ErrJournalCorrupt},
		{"first", func(sb []byte) { be.PutUint32(sb[0x14:], 0) }, "s_first 0",
			ErrJournalCorrupt},
		{"start", func(sb []byte) { be.PutUint32(sb[0x1C:], 256) }, "s_start 256",
			ErrJournalCorrupt},
		{"fast_commit", func(sb []byte) { be.PutUint32(sb[0x28:], jbdIncompatFastCommit) },
			"fast_commit", ErrUnsupported},
		{"unknown", func(sb []byte) { be.PutUint32(sb[0x28:], 0x400) }, "0x400",
			ErrUnsupported},
		{"ro_compat", func(sb []byte) { be.PutUint32(sb[0x2C:], 1) }, "ro_compat",
			ErrUnsupported},
		{"v2+v3", func(sb []byte) {
			be.PutUint32(sb[0x28:], jbdIncompatCsumV2|jbdIncompatCsumV3)
		}, "both csum_v2 and csum_v3", ErrJournalCorrupt},
		{"csum", func(sb []byte) {
			be.PutUint32(sb[0x28:], jbdIncompatCsumV3)
			sb[0x50] = jbdChecksumCRC32C
		}, "checksum", ErrJournalCorrupt},
	} {
		t.Run(c.name, func(t *testing.T) {
			sb := formatJournal(1024, 256, [16]byte{})
			c.edit(sb)
			base := make([]byte, 512*1024)
			copy(base[10*1024:], sb)
			phys := make([]uint32, 256)
			for i := range phys {
				phys[i] = 10 + uint32(i)
			}
			_, err := loadJournal(newCrashDev(base, 1024, nil), 1024, phys)
			if err == nil || !strings.Contains(err.Error(), c.want) ||
				!errors.Is(err, c.wantErr) {
				t.Fatalf("loadJournal: %v, want %q wrapping %v", err, c.want, c.wantErr)
			}
		})
	}
}

func TestCommitCapacity(t *testing.T) {
	for _, c := range []struct {
		bs       int
		incompat uint32
	}{
		{1024, 0}, {4096, 0}, {1024, jbdIncompatCsumV3 | jbdIncompat64bit},
		{1024, jbdIncompatCsumV2},
	} {
		dev, j := memJournal(t, c.bs, 256, c.incompat)
		n := j.capacity()
		mk := func(n int) []metaBlock {
			bl := make([]metaBlock, n)
			for i := range bl {
				bl[i] = metaBlock{nr: 1000 + uint32(i)%1000, data: make([]byte, c.bs)}
			}
			return bl
		}
		writes := dev.writes
		if err := j.commit(mk(n + 1)); !errors.Is(err, ErrTxTooBig) {
			t.Errorf("bs %d incompat %#x: commit of %d: %v, want ErrTxTooBig",
				c.bs, c.incompat, n+1, err)
		}
		if dev.writes != writes {
			t.Error("a refused commit wrote to the device")
		}
		if err := j.commit(mk(n)); err != nil {
			t.Errorf("bs %d incompat %#x: commit of capacity %d: %v", c.bs, c.incompat, n, err)
		}
		// The log is full: descriptors + blocks + commit = s_maxlen - s_first.
		per := j.tagsPerDescriptor()
		if used := n + (n+per-1)/per + 1; used > 255 || used < 254 {
			t.Errorf("capacity %d uses %d of 255 log blocks", n, used)
		}
	}
}

func TestCommitRefusesBadBlocks(t *testing.T) {
	_, j := memJournal(t, 1024, 256, 0)
	for _, m := range []metaBlock{
		{nr: 20, data: make([]byte, 1024)},   // inside the journal
		{nr: 2048, data: make([]byte, 1024)}, // past the device
		{nr: 1000, data: make([]byte, 512)},  // short block
	} {
		if err := j.commit([]metaBlock{m}); err == nil {
			t.Errorf("commit of block %d (%d bytes) succeeded", m.nr, len(m.data))
		}
	}
}

// TestSequenceWraparound commits across the 2^32 transaction ID wrap and
// recovers a transaction committed with ID 0.
func TestSequenceWraparound(t *testing.T) {
	dev, j := memJournal(t, 1024, 256, jbdIncompatCsumV3)
	j.encodeSuper(0, 0xFFFFFFFE)
	blk := func(v byte) []metaBlock {
		b := make([]byte, 1024)
		for i := range b {
			b[i] = v
		}
		return []metaBlock{{nr: 1500, data: b}}
	}
	for v := range byte(2) {
		if err := j.commit(blk(v)); err != nil {
			t.Fatal(err)
		}
	}
	if j.sequence != 0 {
		t.Fatalf("sequence = %d after two commits from 0xfffffffe, want 0", j.sequence)
	}
	dev.failAtSyncs = dev.syncs + 2 // stop after the commit block
	if err := j.commit(blk(9)); err == nil {
		t.Fatal("commit on a failing device succeeded")
	}
	after := newCrashDev(dev.base, 1024, dev.durable)
	rj, err := loadJournal(after, 1024, j.phys)
	if err != nil {
		t.Fatal(err)
	}
	if err := rj.recover(); err != nil {
		t.Fatal(err)
	}
	if got := after.block(1500)[0]; got != 9 {
		t.Errorf("block after recovering transaction 0: %d, want 9", got)
	}
	if rj.sequence != 2 || !tidGT(0, 0xFFFFFFFF) || tidGT(0xFFFFFFFF, 0) {
		t.Errorf("sequence %d after recovering transaction 0, want 2", rj.sequence)
	}
}

// TestRecoverFileDevice recovers through an *os.File, the Device the core
// uses, where deviceBlocks reads the size from Stat.
func TestRecoverFileDevice(t *testing.T) {
	img := mkfsImage(t, "mkfs.ext3", 8192, "-b", "1024")
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	j, err := loadJournal(f, 1024, journalPhys(t, img))
	if err != nil {
		t.Fatal(err)
	}
	if j.limit != 8192 {
		t.Errorf("limit = %d blocks, want 8192", j.limit)
	}
	if j.needsRecovery() {
		t.Error("fresh journal needs recovery")
	}
}

// TestJournalSuperblockV1 loads a V1 superblock, whose feature fields do
// not exist: whatever bytes sit there must be ignored, and commit and
// recover must work without features.
func TestJournalSuperblockV1(t *testing.T) {
	bs := 1024
	base := make([]byte, 2048*bs)
	sb := formatJournal(bs, 256, [16]byte{})
	binary.BigEndian.PutUint32(sb[4:], jbdSuperblockV1)
	binary.BigEndian.PutUint32(sb[0x28:], 0xFFFFFFFF) // would be s_feature_incompat
	copy(base[10*bs:], sb)
	phys := make([]uint32, 256)
	for i := range phys {
		phys[i] = 10 + uint32(i)
	}
	dev := newCrashDev(base, bs, nil)
	j, err := loadJournal(dev, bs, phys)
	if err != nil {
		t.Fatal(err)
	}
	if j.incompat != 0 || j.tagBytes != 8 {
		t.Fatalf("V1 journal: incompat %#x, tag bytes %d", j.incompat, j.tagBytes)
	}
	dev.failAtSyncs = 2
	blk := metaBlock{nr: 1500, data: make([]byte, bs)}
	blk.data[5] = 42
	if err := j.commit([]metaBlock{blk}); err == nil {
		t.Fatal("commit on a failing device succeeded")
	}
	after := newCrashDev(base, bs, dev.durable)
	rj, err := loadJournal(after, bs, phys)
	if err != nil {
		t.Fatal(err)
	}
	if err := rj.recover(); err != nil || after.block(1500)[5] != 42 {
		t.Fatalf("recover of a V1 journal: %v, block byte %d", err, after.block(1500)[5])
	}
}
