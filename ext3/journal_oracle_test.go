package ext3

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// These tests replay journals written by e2fsprogs' debugfs (journal_open,
// journal_write, journal_close write real JBD2 transactions without
// checkpointing them) and compare the result with e2fsck replaying a copy
// of the same image.

// debugfsCase is one journal format to exercise.
type debugfsCase struct {
	name   string
	mkfs   string
	args   []string // mkfs arguments
	sizeKB int
	jopen  string // journal_open options: checksum version
	rotate bool   // move the log so it wraps at the end of the journal
	wantIn uint32 // incompat bits the journal must end up with
	wantCo uint32 // compat bits the journal must end up with
	// v1Revoke: debugfs 1.47 writes a COMPAT_CHECKSUM crc that e2fsck and
	// the kernel reject for a revoke-only transaction, so replay must stop
	// before it (with failedCommit set) rather than follow the script.
	v1Revoke bool
}

var debugfsCases = []debugfsCase{
	{name: "ext3-1k", mkfs: "mkfs.ext3", args: []string{"-b", "1024"}, sizeKB: 16384,
		wantIn: jbdIncompatRevoke},
	{name: "ext3-4k", mkfs: "mkfs.ext3", args: []string{"-b", "4096"}, sizeKB: 32768,
		wantIn: jbdIncompatRevoke},
	{name: "ext3-1k-wrap", mkfs: "mkfs.ext3", args: []string{"-b", "1024"}, sizeKB: 16384,
		rotate: true, wantIn: jbdIncompatRevoke},
	{name: "ext3-1k-csum-v1", mkfs: "mkfs.ext3", args: []string{"-b", "1024"},
		sizeKB: 16384, jopen: "-c", wantCo: jbdCompatChecksum, v1Revoke: true},
	{name: "ext3-4k-csum-v1-wrap", mkfs: "mkfs.ext3", args: []string{"-b", "4096"},
		sizeKB: 32768, jopen: "-c", rotate: true, wantCo: jbdCompatChecksum, v1Revoke: true},
	{name: "ext4-4k-csum-v2", mkfs: "mkfs.ext4",
		args: []string{"-b", "4096", "-O", "metadata_csum,^64bit"}, sizeKB: 32768,
		jopen: "-c -v 2", wantIn: jbdIncompatCsumV2},
	{name: "ext4-1k-csum-v3-wrap", mkfs: "mkfs.ext4",
		args: []string{"-b", "1024", "-O", "metadata_csum,^64bit"}, sizeKB: 16384,
		jopen: "-c -v 3", rotate: true, wantIn: jbdIncompatCsumV3},
	{name: "ext4-4k-64bit", mkfs: "mkfs.ext4",
		args: []string{"-b", "4096", "-O", "64bit,^metadata_csum"}, sizeKB: 32768,
		wantIn: jbdIncompat64bit},
	{name: "ext4-1k-64bit-csum-v2", mkfs: "mkfs.ext4",
		args: []string{"-b", "1024", "-O", "64bit,metadata_csum"}, sizeKB: 16384,
		jopen: "-c -v 2", wantIn: jbdIncompat64bit | jbdIncompatCsumV2},
	{name: "ext4-1k-64bit-csum-v3-wrap", mkfs: "mkfs.ext4",
		args: []string{"-b", "1024", "-O", "64bit,metadata_csum"}, sizeKB: 16384,
		jopen: "-c", rotate: true, wantIn: jbdIncompat64bit | jbdIncompatCsumV3},
}

func TestRecoverDebugfsJournals(t *testing.T) {
	for _, tc := range debugfsCases {
		t.Run(tc.name, func(t *testing.T) {
			img := mkfsImage(t, tc.mkfs, tc.sizeKB, tc.args...)
			want := writeDebugfsTransactions(t, img, tc)
			if tc.rotate {
				rotateLog(t, img)
			}
			before := copyFile(t, img)
			j, _ := openImageJournal(t, img)
			if j.incompat&tc.wantIn != tc.wantIn || j.compat&tc.wantCo != tc.wantCo {
				t.Fatalf("journal features compat %#x incompat %#x, want %#x %#x",
					j.compat, j.incompat, tc.wantCo, tc.wantIn)
			}
			if !j.needsRecovery() {
				t.Fatal("needsRecovery() = false after debugfs journal_write")
			}
			stats := compareWithE2fsck(t, img)
			if stats.wrapped != tc.rotate {
				t.Errorf("log wrapped = %v, want %v", stats.wrapped, tc.rotate)
			}
			checkHomeBlocks(t, img, before, want)
		})
	}
}

// writeDebugfsTransactions writes six transactions with debugfs: plain
// blocks, some starting with the JBD2 magic (escaped in the log);
// overlapping blocks; a revoke before a block is logged again (no
// effect) and one after (cancels every earlier copy); and a last
// transaction without commit block, which must not replay.
//
// It returns the expected home contents after replay: nil means the
// block must keep its contents from before the replay.
func writeDebugfsTransactions(t *testing.T, img string, tc debugfsCase) map[int][]byte {
	bs := imageBlockSize(t, img)
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(len(tc.name)), 7))
	contents := map[string][]byte{}
	file := func(name string, nblocks int, magicAt ...int) string {
		b := make([]byte, nblocks*bs)
		contents[name] = b
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		for _, m := range magicAt {
			binary.BigEndian.PutUint32(b[m*bs:], jbdMagic)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Write past the journal, where mke2fs leaves free blocks.
	b := int(slices.Max(journalPhys(t, img))) + 50
	// debugfs 1.47 writes no commit block for a journal_write with both
	// -b and -r, so revokes go in transactions of their own.
	script := fmt.Sprintf(`jo %s
jw -b %d-%d %s
jw -b %d-%d %s
jw -r %d %s
jw -b %d,%d %s
jw -r %d,%d %s
jw -b %d-%d -c %s
jc
`, tc.jopen,
		b, b+9, file("d1", 10, 0, 3),
		b+5, b+14, file("d2", 10, 9),
		b+20, file("d4", 1),
		b+20, b+21, file("d3", 2),
		b+21, b+6, file("d4", 1),
		b+30, b+33, file("d5", 4, 1))
	out := runCmd(t, script, "debugfs", "-w", img, "-f", "-")
	if strings.Contains(out, "rror") {
		t.Fatalf("debugfs:\n%s", out)
	}
	blk := func(name string, i int) []byte { return contents[name][i*bs : (i+1)*bs] }
	want := map[int][]byte{b + 20: blk("d3", 0), b + 21: nil, b + 6: nil}
	for i := range 5 {
		want[b+i] = blk("d1", i)
	}
	for i := range 10 {
		if i != 1 {
			want[b+5+i] = blk("d2", i)
		}
	}
	for i := range 4 {
		want[b+30+i] = nil
	}
	if tc.v1Revoke {
		// Only the first two transactions replay.
		want[b+6], want[b+20] = blk("d2", 1), nil
	}
	return want
}

// checkHomeBlocks checks the replayed contents of the blocks in want.
func checkHomeBlocks(t *testing.T, img, before string, want map[int][]byte) {
	bs := imageBlockSize(t, img)
	for nr, w := range want {
		got := readRange(t, img, int64(nr)*int64(bs), bs)
		if w == nil {
			w = readRange(t, before, int64(nr)*int64(bs), bs)
		}
		if !bytes.Equal(got, w) {
			t.Errorf("fs block %d after replay: got %x..., want %x...", nr, got[:8], w[:8])
		}
	}
}

// rotateLog moves the whole log area of img's journal so that the log
// starts five blocks before the end of the area and wraps: a valid
// journal, since nothing in JBD2 depends on a block's position.
func rotateLog(t *testing.T, img string) {
	j, f := openImageJournal(t, img)
	if j.start == 0 {
		t.Fatal("rotateLog: journal is empty")
	}
	n := j.maxlen - j.first
	area := make([][]byte, n)
	for i := range n {
		area[i] = make([]byte, j.bs)
		if err := j.readBlock(j.first+i, area[i]); err != nil {
			t.Fatal(err)
		}
	}
	// The log restarts on the journal's last block, so any log of two
	// blocks or more wraps (a start 5 blocks from the end did not when a
	// loaded machine let the kernel checkpoint all but a short log).
	newStart := n - 1 // relative to first
	shift := newStart + n - (j.start - j.first)
	for i := range n {
		to := j.first + (i+shift)%n
		if err := j.writeBlocks(to, area[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.writeSuper(j.first+newStart, j.sequence); err != nil {
		t.Fatal(err)
	}
	f.Sync()
}

// compareWithE2fsck replays img with recover and a copy with
// "e2fsck -E journal_only", then requires identical images (the ext
// superblock after clearing RECOVER, which the core does) and a clean
// "e2fsck -fn" of the result.
func compareWithE2fsck(t *testing.T, img string) jbdReplayStats {
	oracle := copyFile(t, img)
	out, code := runCmdCode(t, "", "e2fsck", "-E", "journal_only", "-y", oracle)
	if code > 1 {
		t.Fatalf("e2fsck -E journal_only: exit %d\n%s", code, out)
	}

	j, f := openImageJournal(t, img)
	start := j.start
	if err := j.recover(); err != nil {
		t.Fatalf("recover: %v", err)
	}
	var corrupt uint32
	if _, rest, ok := strings.Cut(out, "Journal transaction "); ok {
		fmt.Sscanf(rest, "%d was corrupt", &corrupt)
	}
	if j.failedCommit != corrupt {
		t.Errorf("failedCommit = %d, e2fsck reports transaction %d corrupt",
			j.failedCommit, corrupt)
	}
	if j.needsRecovery() {
		t.Fatal("needsRecovery() = true after recover")
	}
	t.Logf("replayed %d transactions from journal block %d of [%d,%d), log wrapped: %v",
		j.replayed.txs, start, j.first, j.maxlen, j.replayed.wrapped)
	if j.replayed.txs == 0 {
		t.Error("recover found no committed transaction")
	}
	f.Close()
	clearRecoverFlag(t, img)
	copySuperBookkeeping(t, oracle, img, corrupt != 0)
	if corrupt != 0 {
		// recover restarts past every transaction left in the log after
		// a corrupt one; e2fsck only past the corrupt one.
		off := int64(j.phys[0])*int64(j.bs) + jsbOffSequence
		ours := binary.BigEndian.Uint32(readRange(t, img, off, 4))
		theirs := readRange(t, oracle, off, 4)
		// Every corrupt case here has later transactions in the log.
		if !tidGT(ours, binary.BigEndian.Uint32(theirs)) {
			t.Errorf("s_sequence %d after recover, e2fsck has %d: the transactions "+
				"after the corrupt one were not skipped", ours, binary.BigEndian.Uint32(theirs))
		}
		patchFile(t, img, off, theirs)
	}

	if diff := diffBlocks(t, img, oracle, j.bs); len(diff) > 0 {
		for _, d := range diff {
			a := readRange(t, img, int64(d)*int64(j.bs), j.bs)
			o := readRange(t, oracle, int64(d)*int64(j.bs), j.bs)
			var offs []int
			for i := range a {
				if a[i] != o[i] && len(offs) < 8 {
					offs = append(offs, i)
				}
			}
			t.Errorf("block %d differs from e2fsck's replay at bytes %v", d, offs)
		}
		dumpJournalSuper(t, img, oracle, j)
	}
	if out, code := runCmdCode(t, "", "e2fsck", "-fn", img); code != 0 {
		t.Errorf("e2fsck -fn after recover: exit %d\n%s", code, out)
	}
	return j.replayed
}

// patchFile writes b at off in path.
func patchFile(t *testing.T, path string, off int64, b []byte) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// dumpJournalSuper logs both journal superblocks to explain a diff.
func dumpJournalSuper(t *testing.T, a, b string, j *journal) {
	off := int64(j.phys[0]) * int64(j.bs)
	ja, jb := readRange(t, a, off, 64), readRange(t, b, off, 64)
	if !bytes.Equal(ja, jb) {
		t.Logf("journal superblock\nours:   %x\ne2fsck: %x", ja, jb)
	}
}
