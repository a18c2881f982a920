package ext3

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// benchFS returns a writable FS on a fresh sparse image made by Mkfs.
func benchFS(b *testing.B, size int64, ratio uint32) *FS {
	b.Helper()
	fh, _ := newImageFile(b, size)
	dev := NewSection(fh, 0, size)
	if err := Mkfs(dev, size, MkfsOptions{InodeRatio: ratio}); err != nil {
		b.Fatal(err)
	}
	f, err := Open(dev, size, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return f
}

func BenchmarkAllocBlocks(b *testing.B) {
	f := benchFS(b, 1<<30, 0)
	b.ReportAllocs()
	f.op.RLock()
	defer f.op.RUnlock()
	for i := 0; b.Loop(); i++ {
		p, n, err := f.allocBlocks(0, 8, true)
		if err != nil {
			b.Fatal(err)
		}
		for j := 0; j < n; j++ {
			f.freeBlock(p + uint32(j))
		}
		if i%1024 == 0 {
			f.applyPendingFrees()
			f.releaseQuarantine()
		}
	}
}

// createBenchFS is room for the creates of a benchmark's second (b.Loop
// runs as many as fit in it): a million 4 KiB blocks and inodes. A 1 GiB
// image ran out of its 65,536 inodes at 14 us a create.
func createBenchFS(b *testing.B) *FS { return benchFS(b, 4<<30, 4096) }

func BenchmarkCreateSmall(b *testing.B) {
	f := createBenchFS(b)
	data := make([]byte, 2000)
	b.ReportAllocs()
	var dir uint32
	for i := 0; b.Loop(); i++ {
		if i%5000 == 0 {
			dir = mustA(b)(f.Mkdir(RootIno, fmt.Sprintf("d%d", i), 0o755, 0, 0)).Ino
		}
		a, err := f.Create(dir, fmt.Sprintf("file-%d", i), 0o644, 0, 0)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.WriteAt(a.Ino, data, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSeqWrite(b *testing.B) {
	f := benchFS(b, 2<<30, 0)
	a := mustA(b)(f.Create(RootIno, "big", 0o644, 0, 0))
	chunk := make([]byte, 1<<20)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	var off int64
	for b.Loop() {
		if off >= 1<<30 {
			off = 0
		}
		if _, err := f.WriteAt(a.Ino, chunk, off); err != nil {
			b.Fatal(err)
		}
		off += int64(len(chunk))
	}
	if err := f.Fsync(a.Ino, false); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkLookupBigDir(b *testing.B) {
	f := benchFS(b, 1<<30, 8192)
	d := mustA(b)(f.Mkdir(RootIno, "big", 0o755, 0, 0))
	const n = 100000
	for i := 0; i < n; i++ {
		mustA(b)(f.Create(d.Ino, dirName(i), 0o644, 0, 0))
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := f.Lookup(d.Ino, dirName(i*7919%n)); err != nil {
			b.Fatal(err)
		}
	}
}

var _ = os.Getpid

// BenchmarkCreateParallel creates files from several goroutines, each in
// its own directory, as FUSE handlers serving an untar would. Run it with
// -cpu 1,2 (and -mutexprofile) to see that creates in different
// directories do not wait for each other.
func BenchmarkCreateParallel(b *testing.B) {
	f := createBenchFS(b)
	var next atomic.Int32
	data := make([]byte, 2000)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		w := next.Add(1)
		var dir uint32
		for i := 0; pb.Next(); i++ {
			if i%2000 == 0 {
				dir = mustA(b)(f.Mkdir(RootIno, fmt.Sprintf("w%d-%d", w, i), 0o755, 0, 0)).Ino
			}
			a, err := f.Create(dir, fmt.Sprintf("file-%d", i), 0o644, 0, 0)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.WriteAt(a.Ino, data, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkWriteFsync writes 256 MiB to a new file in 1 MiB pieces (what
// FUSE hands over) and fsyncs it, like `dd bs=1M conv=fsync`; fsync-ms is
// the part spent in the final Fsync, which early write-back shortens.
func BenchmarkWriteFsync(b *testing.B) {
	f := benchFS(b, 2<<30, 0)
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i)
	}
	const total = 256 << 20
	b.SetBytes(total)
	b.ReportAllocs()
	var inFsync time.Duration
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("big%d", i)
		a := mustA(b)(f.Create(RootIno, name, 0o644, 0, 0))
		for off := int64(0); off < total; off += int64(len(chunk)) {
			if _, err := f.WriteAt(a.Ino, chunk, off); err != nil {
				b.Fatal(err)
			}
		}
		t0 := time.Now()
		if err := f.Fsync(a.Ino, false); err != nil {
			b.Fatal(err)
		}
		inFsync += time.Since(t0)
		if err := f.Unlink(RootIno, name); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(inFsync.Milliseconds())/float64(b.N), "fsync-ms/op")
}
