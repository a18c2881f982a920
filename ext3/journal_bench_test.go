package ext3

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkJournalCommit measures commit of 1, 64 and 1024 blocks of
// 4 KiB on a file device: the log write, four syncs and the checkpoint.
func BenchmarkJournalCommit(b *testing.B) {
	const bs, jblocks, home = 4096, 4096, 5000
	for _, n := range []int{1, 64, 1024} {
		b.Run(fmt.Sprintf("blocks=%d", n), func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "dev.img"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			if err := f.Truncate(int64(home+n+16) * bs); err != nil {
				b.Fatal(err)
			}
			if _, err := f.WriteAt(formatJournal(bs, jblocks, [16]byte{7}), bs); err != nil {
				b.Fatal(err)
			}
			phys := make([]uint32, jblocks)
			for i := range phys {
				phys[i] = 1 + uint32(i)
			}
			j, err := loadJournal(f, bs, phys)
			if err != nil {
				b.Fatal(err)
			}
			blocks := make([]metaBlock, n)
			for i := range blocks {
				blocks[i] = metaBlock{nr: home + uint32(i), data: make([]byte, bs)}
				blocks[i].data[0] = byte(i)
			}
			b.SetBytes(int64(n * bs))
			b.ReportAllocs()
			for b.Loop() {
				if err := j.commit(blocks); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkJournalRecover measures the scan and replay of one committed
// transaction of 1024 blocks.
func BenchmarkJournalRecover(b *testing.B) {
	const bs, jblocks, home, n = 4096, 4096, 5000, 1024
	base := make([]byte, (home+n+16)*bs)
	copy(base[bs:], formatJournal(bs, jblocks, [16]byte{7}))
	phys := make([]uint32, jblocks)
	for i := range phys {
		phys[i] = 1 + uint32(i)
	}
	dev := newCrashDev(base, bs, nil)
	dev.failAtSyncs = 2
	j, err := loadJournal(dev, bs, phys)
	if err != nil {
		b.Fatal(err)
	}
	blocks := make([]metaBlock, n)
	for i := range blocks {
		blocks[i] = metaBlock{nr: home + uint32(i), data: make([]byte, bs)}
	}
	j.commit(blocks) // stops after the commit block: the log needs recovery
	b.SetBytes(n * bs)
	b.ReportAllocs()
	for b.Loop() {
		rj, err := loadJournal(newCrashDev(base, bs, dev.durable), bs, phys)
		if err != nil {
			b.Fatal(err)
		}
		if err := rj.recover(); err != nil || rj.replayed.txs != 1 {
			b.Fatalf("recover: %v, %d transactions", err, rj.replayed.txs)
		}
	}
}
