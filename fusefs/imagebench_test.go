package fusefs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/husk-project/husk/ext3"
	"github.com/husk-project/husk/squash"
	"golang.org/x/sys/unix"
)

// Benchmarks over the layers husk really serves: a squashfs lower made
// by mksquashfs and an ext3 upper made by mkfs.ext3, served by husk's own
// readers. Each walk starts on a fresh mount, so the kernel has nothing
// cached and every name is served by the union.

const (
	benchDirs  = 100
	benchFiles = 100 // per directory
)

// imageBench is a mounted squashfs + ext3 union and its unmount.
type imageBench struct {
	mnt  string
	u    *Union
	stop func()
}

// benchImages makes the images once per benchmark: benchDirs directories
// of benchFiles small files each, plus a few symlinks.
func benchImages(b *testing.B) (sqfs, img string) {
	b.Helper()
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	for i := 0; i < benchDirs; i++ {
		d := filepath.Join(src, fmt.Sprintf("d%03d", i))
		if err := os.MkdirAll(d, 0755); err != nil {
			b.Fatal(err)
		}
		for j := 0; j < benchFiles; j++ {
			p := filepath.Join(d, fmt.Sprintf("file-%04d.py", j))
			if err := os.WriteFile(p, []byte(p), 0644); err != nil {
				b.Fatal(err)
			}
		}
		if err := os.Symlink("file-0000.py", filepath.Join(d, "link")); err != nil {
			b.Fatal(err)
		}
	}
	sqfs, img = filepath.Join(dir, "lower.sqfs"), filepath.Join(dir, "overlay.img")
	ov := filepath.Join(dir, "ov")
	for _, d := range []string{ov + "/upper", ov + "/work"} {
		if err := os.MkdirAll(d, 0755); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range [][]string{
		{"mksquashfs", src, sqfs, "-noappend", "-quiet", "-comp", "gzip"},
		{"mkfs.ext3", "-q", "-F", "-d", ov, img, "256M"},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			b.Fatalf("%v: %v\n%s (install squashfs-tools and e2fsprogs)", c, err, out)
		}
	}
	return sqfs, img
}

// mountImages serves sqfs under the ext3 upper img.
func mountImages(b *testing.B, sqfs, img string, opts ...func(*Options)) *imageBench {
	b.Helper()
	sf, err := os.Open(sqfs)
	if err != nil {
		b.Fatal(err)
	}
	fi, _ := sf.Stat()
	sq, err := squash.Open(sf, fi.Size(), nil)
	if err != nil {
		b.Fatal(err)
	}
	ef, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	efi, _ := ef.Stat()
	efs, err := ext3.Open(ext3.NewSection(ef, 0, efi.Size()), efi.Size(), ext3.Options{})
	if err != nil {
		b.Fatal(err)
	}
	up, work, err := NewExt3Layer(efs, true)
	if err != nil {
		b.Fatal(err)
	}
	o := Options{Upper: up, WorkDir: work, Lowers: []Layer{NewMemLayer(), NewSquashLayer(sq)}}
	for _, fn := range opts {
		fn(&o)
	}
	u, err := New(o)
	if err != nil {
		b.Fatal(err)
	}
	mnt, err := os.MkdirTemp("", "husk-bench-")
	if err != nil {
		b.Fatal(err)
	}
	if err := u.Mount(mnt); err != nil {
		b.Fatal(err)
	}
	ib := &imageBench{mnt: mnt, u: u}
	ib.stop = func() {
		if err := u.Unmount(); err != nil {
			b.Error(err)
		}
		efs.Close()
		ef.Close()
		sf.Close()
		os.Remove(mnt)
	}
	return ib
}

// walk lists every directory below dir and stats each directory, as
// `find -xdev` does (file types come from the listing); it returns the
// number of names seen.
func walk(b *testing.B, dir string) int64 {
	ents, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	n := int64(len(ents))
	for _, e := range ents {
		if e.IsDir() {
			var st unix.Stat_t
			p := filepath.Join(dir, e.Name())
			if err := unix.Lstat(p, &st); err != nil {
				b.Fatal(err)
			}
			n += walk(b, p)
		}
	}
	return n
}

// heapInUse is the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// benchWalk walks a fresh mount with par walkers over disjoint halves and
// reports the heap the mount holds afterwards (nodes, caches: what its
// unmount frees) per name listed.
func benchWalk(b *testing.B, par int) {
	sqfs, img := benchImages(b)
	b.ReportAllocs()
	var heap, names float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ib := mountImages(b, sqfs, img)
		b.StartTimer()
		var total atomic.Int64
		var wg sync.WaitGroup
		for w := 0; w < par; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for d := w; d < benchDirs; d += par {
					p := filepath.Join(ib.mnt, fmt.Sprintf("d%03d", d))
					var st unix.Stat_t
					if err := unix.Lstat(p, &st); err != nil {
						b.Error(err)
						return
					}
					total.Add(1 + walk(b, p))
				}
			}(w)
		}
		wg.Wait()
		b.StopTimer()
		held := heapInUse()
		ib.stop()
		ib = nil // the nodes become garbage
		heap += float64(held) - float64(heapInUse())
		names += float64(total.Load())
		b.StartTimer()
	}
	b.ReportMetric(heap/names, "heap-B/name")
	b.ReportMetric(names/float64(b.N), "names/op")
}

// BenchmarkImageWalk walks the whole image once (find / -xdev).
func BenchmarkImageWalk(b *testing.B) { benchWalk(b, 1) }

// BenchmarkImageWalkParallel walks it with two walkers at once.
func BenchmarkImageWalkParallel(b *testing.B) { benchWalk(b, 2) }

// BenchmarkImageLookup stats names of the lower one by one on a fresh
// mount: a LOOKUP each, through the merge of upper, skeleton and lower.
func BenchmarkImageLookup(b *testing.B) {
	sqfs, img := benchImages(b)
	ib := mountImages(b, sqfs, img)
	// The loop mounts afresh: stop the last mount, not the first (a
	// deferred ib.stop() left the last one mounted).
	defer func() { ib.stop() }()
	b.ReportAllocs()
	b.ResetTimer()
	var st unix.Stat_t
	for i := 0; i < b.N; i++ {
		k := i % (benchDirs * benchFiles)
		if k == 0 && i > 0 {
			b.StopTimer()
			ib.stop()
			ib = mountImages(b, sqfs, img)
			b.StartTimer()
		}
		p := filepath.Join(ib.mnt, fmt.Sprintf("d%03d/file-%04d.py", k/benchFiles, k%benchFiles))
		if err := unix.Lstat(p, &st); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkImageCreate creates and removes files from parallel
// goroutines in four shared directories of the image (copied up on
// first use), as an untar or a package install does.
func BenchmarkImageCreate(b *testing.B) {
	sqfs, img := benchImages(b)
	ib := mountImages(b, sqfs, img)
	defer ib.stop()
	var seq atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := seq.Add(1)
			p := filepath.Join(ib.mnt, fmt.Sprintf("d%03d/new-%d", k%4, k))
			fd, err := unix.Open(p, unix.O_CREAT|unix.O_WRONLY|unix.O_EXCL, 0644)
			if err != nil {
				b.Fatal(err)
			}
			unix.Write(fd, []byte("data"))
			unix.Close(fd)
			if k%2 == 0 {
				if err := unix.Unlink(p); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
