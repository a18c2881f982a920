package ext3

import (
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"testing"
)

// Fuzzing recover: the input is the whole journal area of a 1 KiB-block
// device; seeds are journals written by debugfs in every tag and
// checksum format, cut down to fuzzJournalBlocks blocks.

const (
	fuzzBS            = 1024
	fuzzDevBlocks     = 4096
	fuzzJournalBlocks = 40
	fuzzJournalAt     = 100 // fs block of journal block 0
)

// fuzzPhys maps the fuzz journal: contiguous, with a hole-free gap in
// the middle so physically discontiguous runs are exercised too.
func fuzzPhys() []uint32 {
	phys := make([]uint32, fuzzJournalBlocks)
	for i := range phys {
		phys[i] = fuzzJournalAt + uint32(i)
		if i >= fuzzJournalBlocks/2 {
			phys[i] += 7
		}
	}
	return phys
}

// watchDev is a crashDev that fails the test on a write the journal
// must never make: anything but journal block 0 or a home block outside
// the journal and inside the device.
type watchDev struct {
	*crashDev
	t      *testing.T
	phys   []uint32
	writes int
	strict bool // recovery is running: only block 0 and home blocks
}

func (w *watchDev) WriteAt(p []byte, off int64) (int, error) {
	w.writes++
	first, n := off/fuzzBS, int64(len(p))/fuzzBS
	for b := first; b < first+n; b++ {
		if i := slices.Index(w.phys, uint32(b)); i > 0 && w.strict {
			w.t.Fatalf("write to journal block %d (fs block %d) during recovery", i, b)
		}
		if b >= fuzzDevBlocks {
			w.t.Fatalf("write to fs block %d past the device", b)
		}
	}
	return w.crashDev.WriteAt(p, off)
}

func FuzzRecover(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	phys := fuzzPhys()
	base := make([]byte, fuzzDevBlocks*fuzzBS)
	f.Fuzz(func(t *testing.T, area []byte) {
		overlay := map[int64][]byte{}
		for i, p := range phys {
			blk := make([]byte, fuzzBS)
			if i*fuzzBS < len(area) {
				copy(blk, area[i*fuzzBS:])
			}
			overlay[int64(p)*fuzzBS] = blk
		}
		dev := &watchDev{crashDev: newCrashDev(base, fuzzBS, overlay), t: t, phys: phys,
			strict: true}
		j, err := loadJournal(dev, fuzzBS, phys)
		if err != nil {
			if dev.writes != 0 {
				t.Fatal("loadJournal wrote to the device")
			}
			return
		}
		if err := j.recover(); err != nil {
			return
		}
		if j.needsRecovery() {
			t.Fatal("needsRecovery after a successful recover")
		}
		// The recovered journal must take a commit and stay consistent.
		dev.strict = false
		blk := metaBlock{nr: 3000, data: make([]byte, fuzzBS)}
		binary.BigEndian.PutUint32(blk.data, jbdMagic)
		if err := j.commit([]metaBlock{blk}); err != nil {
			t.Fatalf("commit after recover: %v", err)
		}
		if got := dev.block(3000); !slices.Equal(got, blk.data) {
			t.Fatal("commit after recover did not reach the home block")
		}
	})
}

// fuzzSeeds returns journal areas written by debugfs, in the tag and
// checksum formats of debugfsCases, cut to fuzzJournalBlocks.
func fuzzSeeds(f *testing.F) [][]byte {
	var seeds [][]byte
	for _, jopen := range []struct{ mkfs, opts, jo string }{
		{"mkfs.ext3", "", ""},
		{"mkfs.ext3", "", "-c"},
		{"mkfs.ext4", "64bit,^metadata_csum", ""},
		{"mkfs.ext4", "^64bit,metadata_csum", "-c -v 2"},
		{"mkfs.ext4", "64bit,metadata_csum", "-c -v 3"},
	} {
		args := []string{"-b", "1024"}
		if jopen.opts != "" {
			args = append(args, "-O", jopen.opts)
		}
		img := mkfsImage(f, jopen.mkfs, 4096, args...)
		data := make([]byte, 3*fuzzBS)
		for i := range data {
			data[i] = byte(i * 13)
		}
		copy(data[fuzzBS:], []byte{0xC0, 0x3B, 0x39, 0x98})
		file := f.TempDir() + "/d"
		if err := os.WriteFile(file, data, 0o644); err != nil {
			f.Fatal(err)
		}
		script := fmt.Sprintf("jo %s\njw -b 3000-3002 %s\njw -r 3001 %s\n"+
			"jw -b 3001,3003 %s\njw -b 3010 -c %s\njc\n", jopen.jo, file, file, file, file)
		runCmd(f, script, "debugfs", "-w", img, "-f", "-")
		seeds = append(seeds, cutJournal(f, img))
	}
	return seeds
}

// cutJournal returns the first fuzzJournalBlocks blocks of img's journal
// with s_maxlen lowered to match (and the superblock checksum fixed).
func cutJournal(f *testing.F, img string) []byte {
	phys := journalPhys(f, img)
	area := make([]byte, 0, fuzzJournalBlocks*fuzzBS)
	for _, p := range phys[:fuzzJournalBlocks] {
		area = append(area, readRange(f, img, int64(p)*fuzzBS, fuzzBS)...)
	}
	binary.BigEndian.PutUint32(area[0x10:], fuzzJournalBlocks)
	if binary.BigEndian.Uint32(area[0x28:])&(jbdIncompatCsumV2|jbdIncompatCsumV3) != 0 {
		binary.BigEndian.PutUint32(area[jsbOffChecksum:], superblockCsum(area))
	}
	return area
}
