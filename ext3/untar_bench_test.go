package ext3

import (
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"sync"
	"testing"
	"time"
)

// untarShape is a synthetic tree shaped like the 20,000-entry tarball of
// testdata/bench.sh: about 2,200 directories, 16,700 files averaging
// 5.7 KiB and 1,000 symlinks.
const (
	untarTop   = 45 // directories under the root
	untarSub   = 49 // subdirectories in each
	untarFiles = 16740
	untarLinks = 1020
)

var untarSizes = []int{120, 900, 2500, 4000, 6000, 9000, 15000, 8000}

// untarTree creates the tree under dir and returns the directories in
// creation order (leaves last).
func untarTree(tb testing.TB, f *FS, dir uint32) []uint32 {
	tb.Helper()
	data := make([]byte, 16<<10)
	for i := range data {
		data[i] = byte(i*7 + 1)
	}
	var dirs []uint32
	for i := range untarTop {
		top := mustA(tb)(f.Mkdir(dir, fmt.Sprintf("pkg%02d", i), 0o755, 0, 0)).Ino
		dirs = append(dirs, top)
		for j := range untarSub {
			dirs = append(dirs,
				mustA(tb)(f.Mkdir(top, fmt.Sprintf("sub%02d", j), 0o755, 0, 0)).Ino)
		}
	}
	for i := range untarFiles {
		d := dirs[i%len(dirs)]
		a := mustA(tb)(f.Create(d, fmt.Sprintf("file-%05d.py", i), 0o644, 0, 0))
		n := untarSizes[i%len(untarSizes)]
		if _, err := f.WriteAt(a.Ino, data[:n], 0); err != nil {
			tb.Fatal(err)
		}
	}
	for i := range untarLinks {
		d := dirs[(i*7)%len(dirs)]
		mustA(tb)(f.Symlink(d, fmt.Sprintf("link-%04d", i), "../some/where/else", 0, 0))
	}
	return dirs
}

// untarRemove removes what untarTree made under dir, as rm -rf does.
func untarRemove(tb testing.TB, f *FS, dir uint32) {
	tb.Helper()
	var walk func(d uint32)
	walk = func(d uint32) {
		ents, err := f.ReadDir(d)
		if err != nil {
			tb.Fatal(err)
		}
		for _, e := range ents {
			if e.Name == "." || e.Name == ".." {
				continue
			}
			a, err := f.Lookup(d, e.Name)
			if err != nil {
				tb.Fatal(err)
			}
			if a.Mode&sIFMT == sIFDIR {
				walk(a.Ino)
				if err := f.Rmdir(d, e.Name); err != nil {
					tb.Fatal(err)
				}
				continue
			}
			if err := f.Unlink(d, e.Name); err != nil {
				tb.Fatal(err)
			}
		}
	}
	walk(dir)
}

// peakHeap measures the live Go heap every 20 ms, after a forced GC so
// that garbage does not count, until stop is called, which returns the
// peak in bytes. The forced collections slow the work being measured.
func peakHeap() (stop func() uint64) {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.GC()
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > peak {
				peak = v
				writePeakProfile()
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak
	}
}

// writePeakProfile writes a heap profile to $HUSK_PEAK_HEAPPROFILE, if
// set, so the profile at the peak shows what holds the memory.
func writePeakProfile() {
	name := os.Getenv("HUSK_PEAK_HEAPPROFILE")
	if name == "" {
		return
	}
	if fh, err := os.Create(name); err == nil {
		pprof.WriteHeapProfile(fh)
		fh.Close()
	}
}

// BenchmarkUntar creates and removes a 20,000-entry tree, committing
// every 5 s as a mounted overlay would, and reports the peak live heap.
func BenchmarkUntar(b *testing.B) {
	f := benchFS(b, 2<<30, 0)
	b.ReportAllocs()
	var peak uint64
	for i := 0; b.Loop(); i++ {
		runtime.GC()
		stop := peakHeap()
		top := mustA(b)(f.Mkdir(RootIno, fmt.Sprintf("t%d", i), 0o755, 0, 0)).Ino
		untarTree(b, f, top)
		untarRemove(b, f, top)
		if err := f.Rmdir(RootIno, fmt.Sprintf("t%d", i)); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		peak = max(peak, stop())
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}
