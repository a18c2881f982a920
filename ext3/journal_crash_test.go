package ext3

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
)

// crashDev is an in-memory Device that remembers which block writes are
// durable (before the last Sync) and which are pending, so a test can
// rebuild the device as a crash would have left it: the durable state
// plus any subset of the pending block writes. Blocks live in overlays
// on a shared, read-only base image, so rebuilding is cheap.
type crashDev struct {
	base    []byte           // image before the test's writes; never modified
	durable map[int64][]byte // block offset -> contents as of the last Sync
	view    map[int64][]byte // block offset -> contents reads see
	pending []blockWrite     // block writes since the last Sync, in order
	bs      int
	writes  int // WriteAt calls so far
	syncs   int // Sync calls so far
	// failAfter makes the WriteAt after that many WriteAt calls, and
	// everything after it, fail like a device that went away; -1 never.
	failAfter int
	// failAtSyncs makes writes fail once that many Syncs succeeded; -1 never.
	failAtSyncs int
	gone        bool
}

// blockWrite is one block of a WriteAt.
type blockWrite struct {
	off  int64
	data []byte
}

// newCrashDev returns a device holding base plus the blocks of overlay.
func newCrashDev(base []byte, bs int, overlay map[int64][]byte) *crashDev {
	if overlay == nil {
		overlay = map[int64][]byte{}
	}
	return &crashDev{base: base, durable: maps.Clone(overlay), view: maps.Clone(overlay),
		bs: bs, failAfter: -1, failAtSyncs: -1}
}

func (d *crashDev) Size() int64 { return int64(len(d.base)) }

func (d *crashDev) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(d.base)) {
		return 0, fmt.Errorf("crashDev: read %d at %d out of range", len(p), off)
	}
	for n := 0; n < len(p); {
		blk := (off + int64(n)) / int64(d.bs) * int64(d.bs)
		in := int(off + int64(n) - blk)
		src, ok := d.view[blk]
		if !ok {
			src = d.base[blk : blk+int64(d.bs)]
		}
		n += copy(p[n:], src[in:])
	}
	return len(p), nil
}

func (d *crashDev) WriteAt(p []byte, off int64) (int, error) {
	if d.gone || d.failAfter >= 0 && d.writes >= d.failAfter ||
		d.failAtSyncs >= 0 && d.syncs >= d.failAtSyncs {
		d.gone = true
		return 0, fmt.Errorf("crashDev: device gone")
	}
	if off < 0 || off+int64(len(p)) > int64(len(d.base)) || off%int64(d.bs) != 0 ||
		len(p)%d.bs != 0 {
		return 0, fmt.Errorf("crashDev: write %d at %d out of range or unaligned", len(p), off)
	}
	d.writes++
	for i := 0; i < len(p); i += d.bs {
		b := slices.Clone(p[i : i+d.bs])
		d.view[off+int64(i)] = b
		d.pending = append(d.pending, blockWrite{off + int64(i), b})
	}
	return len(p), nil
}

func (d *crashDev) Sync() error {
	if d.gone {
		return fmt.Errorf("crashDev: device gone")
	}
	d.syncs++
	d.durable = maps.Clone(d.view)
	d.pending = nil
	return nil
}

// crashed returns the overlay a crash leaves when the pending writes
// whose bit is set in mask reached the disk.
func (d *crashDev) crashed(mask uint64) map[int64][]byte {
	o := maps.Clone(d.durable)
	for i, w := range d.pending {
		if i >= 64 || mask&(1<<i) != 0 {
			o[w.off] = w.data
		}
	}
	return o
}

// flatten returns the durable image as a byte slice.
func (d *crashDev) flatten() []byte {
	img := slices.Clone(d.base)
	for off, b := range d.durable {
		copy(img[off:], b)
	}
	return img
}

// block returns the current contents of fs block nr.
func (d *crashDev) block(nr uint32) []byte {
	b := make([]byte, d.bs)
	d.ReadAt(b, int64(nr)*int64(d.bs))
	return b
}

// crashMasks lists the pending-write subsets to try: all of them when
// there are few, else none, all, each prefix and random samples.
func crashMasks(n int, rng *rand.Rand) []uint64 {
	if n <= 8 {
		masks := make([]uint64, 1<<n)
		for i := range masks {
			masks[i] = uint64(i)
		}
		return masks
	}
	masks := []uint64{0, ^uint64(0)}
	for i := 1; i < min(n, 64); i++ {
		masks = append(masks, 1<<i-1)
	}
	for range 32 {
		masks = append(masks, rng.Uint64())
	}
	return masks
}

// journalFormat is a journal feature set for the commit tests; jopen are
// the debugfs journal_open options that set it on a fresh image.
type journalFormat struct {
	name  string
	mkfs  string
	args  []string
	jopen string // "" leaves mke2fs's journal without features
}

var journalFormats = []journalFormat{
	{"ext3-1k", "mkfs.ext3", []string{"-b", "1024"}, ""},
	{"ext3-4k", "mkfs.ext3", []string{"-b", "4096"}, ""},
	{"ext3-1k-csum-v1", "mkfs.ext3", []string{"-b", "1024"}, "-c"},
	{"ext4-1k-64bit-csum-v2", "mkfs.ext4", []string{"-b", "1024", "-O", "64bit,metadata_csum"},
		"-c -v 2"},
	{"ext4-4k-csum-v3", "mkfs.ext4", []string{"-b", "4096", "-O", "^64bit,metadata_csum"},
		"-c -v 3"},
	{"ext4-1k-64bit", "mkfs.ext4", []string{"-b", "1024", "-O", "64bit,^metadata_csum"}, ""},
}

// formatImage makes a small image with a clean journal of the format.
func formatImage(t *testing.T, jf journalFormat) string {
	size := 4096 // KiB: the smallest image with a 1024-block journal
	if slices.Contains(jf.args, "4096") {
		size = 32768
	}
	img := mkfsImage(t, jf.mkfs, size, jf.args...)
	if jf.jopen != "" {
		runCmd(t, "jo "+jf.jopen+"\njc\n", "debugfs", "-w", img, "-f", "-")
	}
	return img
}

// testBlocks returns n blocks of new contents for fs blocks from base
// on: random, block 0 starting with the JBD2 magic, the last block
// repeating the first block number with other contents.
func testBlocks(rng *rand.Rand, bs, n int, base uint32) []metaBlock {
	blocks := make([]metaBlock, n)
	for i := range blocks {
		b := make([]byte, bs)
		for k := range b {
			b[k] = byte(rng.Uint32())
		}
		blocks[i] = metaBlock{nr: base + uint32(i), data: b}
	}
	copy(blocks[0].data, []byte{0xC0, 0x3B, 0x39, 0x98})
	if n > 2 {
		blocks[n-1].nr = base
	}
	return blocks
}

// homeState returns the contents blocks would have if written in order.
func homeState(blocks []metaBlock) map[uint32][]byte {
	st := map[uint32][]byte{}
	for _, m := range blocks {
		st[m.nr] = m.data
	}
	return st
}

// matches reports whether dev holds want.
func matches(dev *crashDev, want map[uint32][]byte) bool {
	for nr, w := range want {
		if !bytes.Equal(dev.block(nr), w) {
			return false
		}
	}
	return true
}

// TestCommitCrashAtEveryWrite commits two transactions and, for every
// number of completed writes in each, rebuilds the image a crash could
// leave (any subset of the unsynced block writes), recovers it, and
// requires the home blocks to hold exactly the old or exactly the new
// contents.
func TestCommitCrashAtEveryWrite(t *testing.T) {
	for _, jf := range journalFormats {
		t.Run(jf.name, func(t *testing.T) {
			img := formatImage(t, jf)
			bs, phys := imageBlockSize(t, img), journalPhys(t, img)
			raw, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			base := slices.Max(phys) + 20
			rng := rand.New(rand.NewPCG(1, uint64(bs)))
			first := testBlocks(rng, bs, 5, base)
			second := testBlocks(rng, bs, 40, base+2)

			// State after the first commit, to crash the second one from.
			dev := newCrashDev(raw, bs, nil)
			j, err := loadJournal(dev, bs, phys)
			if err != nil {
				t.Fatal(err)
			}
			if err := j.commit(first); err != nil {
				t.Fatal(err)
			}
			afterFirst := dev.durable

			oldFirst, oldSecond := map[uint32][]byte{}, map[uint32][]byte{}
			for _, m := range first {
				oldFirst[m.nr] = make([]byte, bs) // mke2fs left them zero
			}
			for _, m := range second {
				oldSecond[m.nr] = dev.block(m.nr)
			}
			crashEveryWrite(t, raw, nil, bs, phys, first, oldFirst, rng)
			crashEveryWrite(t, raw, afterFirst, bs, phys, second, oldSecond, rng)
		})
	}
}

// crashEveryWrite commits blocks on img once per possible crash point.
func crashEveryWrite(t *testing.T, img []byte, overlay map[int64][]byte, bs int,
	phys []uint32, blocks []metaBlock, old map[uint32][]byte, rng *rand.Rand) {
	t.Helper()
	neu := homeState(blocks)

	// A run without failure counts the writes.
	full := newCrashDev(img, bs, overlay)
	j, err := loadJournal(full, bs, phys)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.commit(blocks); err != nil {
		t.Fatal(err)
	}
	if full.syncs != 4 {
		t.Errorf("commit used %d syncs, want 4", full.syncs)
	}
	full.view = full.durable
	if !matches(full, neu) {
		t.Fatal("home blocks not written by commit")
	}

	states := 0
	for k := 0; k <= full.writes; k++ {
		dev := newCrashDev(img, bs, overlay)
		dev.failAfter = k
		j, err := loadJournal(dev, bs, phys)
		if err != nil {
			t.Fatal(err)
		}
		err = j.commit(blocks)
		if (err == nil) != (k == full.writes) {
			t.Fatalf("crash after %d of %d writes: commit returned %v", k, full.writes, err)
		}
		if k < full.writes {
			if err := j.commit(blocks); err == nil {
				t.Fatalf("commit after a failed commit succeeded")
			}
		}
		for _, mask := range crashMasks(len(dev.pending), rng) {
			states++
			after := newCrashDev(img, bs, dev.crashed(mask))
			rj, err := loadJournal(after, bs, phys)
			if err != nil {
				t.Fatalf("crash after %d writes, mask %b: load: %v", k, mask, err)
			}
			if err := rj.recover(); err != nil {
				t.Fatalf("crash after %d writes, mask %b: recover: %v", k, mask, err)
			}
			isOld, isNew := matches(after, old), matches(after, neu)
			switch {
			case !isOld && !isNew:
				t.Fatalf("crash after %d writes, mask %b: home blocks mix old and new",
					k, mask)
			case dev.syncs >= 2 && !isNew:
				t.Fatalf("crash after %d writes: commit block was durable, old state", k)
			case dev.syncs == 0 && !isOld:
				t.Fatalf("crash after %d writes: no commit block yet, new state", k)
			}
			// The recovered journal must take the next commit.
			if err := rj.commit(blocks); err != nil {
				t.Fatalf("crash after %d writes: commit after recover: %v", k, err)
			}
			if !matches(after, neu) {
				t.Fatalf("crash after %d writes: commit after recover lost blocks", k)
			}
		}
	}
	t.Logf("%d blocks: %d writes, %d syncs, %d crash states checked",
		len(blocks), full.writes, full.syncs, states)
}

// TestCommitFormatMatchesE2fsck stops a commit right after its commit
// block is durable, then lets e2fsck replay the transaction this package
// wrote and compares with recover: e2fsck is the oracle for the
// descriptor, tag, escape and checksum encoding of every format.
func TestCommitFormatMatchesE2fsck(t *testing.T) {
	for _, jf := range journalFormats {
		t.Run(jf.name, func(t *testing.T) {
			img := formatImage(t, jf)
			bs, phys := imageBlockSize(t, img), journalPhys(t, img)
			raw, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			dev := newCrashDev(raw, bs, nil)
			dev.failAtSyncs = 2
			j, err := loadJournal(dev, bs, phys)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(3, uint64(bs)))
			// Enough blocks for several descriptor blocks.
			n := min(3*j.tagsPerDescriptor()+7, j.capacity())
			blocks := testBlocks(rng, bs, n, slices.Max(phys)+20)
			if err := j.commit(blocks); err == nil || !strings.Contains(err.Error(), "gone") {
				t.Fatalf("commit on a device that fails after two syncs: %v", err)
			}
			if err := os.WriteFile(img, dev.flatten(), 0o644); err != nil {
				t.Fatal(err)
			}
			setRecoverFlag(t, img)
			before := copyFile(t, img)
			compareWithE2fsck(t, img)
			want := map[int][]byte{}
			for nr, b := range homeState(blocks) {
				want[int(nr)] = b
			}
			checkHomeBlocks(t, img, before, want)
		})
	}
}
