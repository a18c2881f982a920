// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Benchmarks on real images: the Debian root filesystem the husk suite
// builds (SQUASH_BENCH_ROOTFS, default /var/tmp/husk-cache/rootfs), packed
// once per compressor into SQUASH_BENCH_CACHE (default
// /var/tmp/squash-bench). They mirror the workloads of testdata/bench.sh:
//
//	go test -run '^$' -bench Rootfs -benchmem ./squash

var benchImagesMu sync.Mutex

func benchCacheDir(b *testing.B) string {
	dir := os.Getenv("SQUASH_BENCH_CACHE")
	if dir == "" {
		dir = "/var/tmp/squash-bench"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	return dir
}

// cachedImage returns dir/name, running build(tmp) to make it first if it
// does not exist.
func cachedImage(b *testing.B, name string, build func(tmp string) error) string {
	b.Helper()
	benchImagesMu.Lock()
	defer benchImagesMu.Unlock()
	p := filepath.Join(benchCacheDir(b), name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if err := build(p + ".tmp"); err != nil {
		os.Remove(p + ".tmp")
		b.Fatalf("building %s: %v", p, err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		b.Fatal(err)
	}
	return p
}

func mksquashfs(src, dst string, opts ...string) error {
	args := append([]string{src, dst, "-noappend", "-quiet", "-no-progress"}, opts...)
	if out, err := exec.Command("mksquashfs", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("mksquashfs: %v\n%s", err, out)
	}
	return nil
}

// rootfsImage returns the Debian root filesystem packed with comp.
func rootfsImage(b *testing.B, comp string) string {
	b.Helper()
	requireTool(b, "mksquashfs")
	src := os.Getenv("SQUASH_BENCH_ROOTFS")
	if src == "" {
		src = "/var/tmp/husk-cache/rootfs"
	}
	if _, err := os.Stat(filepath.Join(src, "usr")); err != nil {
		b.Fatalf("no root filesystem at %s (bash testdata/test.sh builds it, or set "+
			"SQUASH_BENCH_ROOTFS): %v", src, err)
	}
	return cachedImage(b, "rootfs-"+comp+".sqfs", func(tmp string) error {
		return mksquashfs(src, tmp, "-comp", comp)
	})
}

// benchFile is a regular file found by a walk.
type benchFile struct {
	path string
	ref  Ref
	size uint64
}

// walkFiles lists every regular file under the directory at path.
func walkFiles(b *testing.B, f *FS, path string) []benchFile {
	b.Helper()
	n := benchPath(b, f, path)
	var out []benchFile
	var walk func(dir *Inode, p string)
	walk = func(dir *Inode, p string) {
		ents, err := f.ReadDir(dir)
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range ents {
			c, err := f.Inode(e.Ref)
			if err != nil {
				b.Fatal(err)
			}
			switch {
			case c.IsDir():
				walk(c, p+"/"+e.Name)
			case c.Mode&modeTypeMask == modeReg:
				out = append(out, benchFile{p + "/" + e.Name, e.Ref, c.Size})
			}
		}
	}
	walk(n, path)
	return out
}

func benchPath(b *testing.B, f *FS, path string) *Inode {
	b.Helper()
	n, err := f.Inode(f.Root())
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range splitPath(path) {
		if n, err = f.Lookup(n, c); err != nil {
			b.Fatalf("lookup %s: %v", path, err)
		}
	}
	return n
}

func splitPath(p string) []string {
	return strings.FieldsFunc(p, func(r rune) bool { return r == '/' })
}

// readFile reads the whole file through ReadAt in FUSE-sized chunks.
func readFile(f *FS, ref Ref, buf []byte) (int64, error) {
	n, err := f.Inode(ref)
	if err != nil {
		return 0, err
	}
	var total int64
	for off := int64(0); ; {
		k, err := f.ReadAt(n, buf, off)
		off += int64(k)
		total += int64(k)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// benchComps are the compressors of the real-image benchmarks. xz is left
// out of BenchmarkRootfsReadUsr: its decoder runs at a few MB/s.
var benchComps = []string{"gzip", "xz", "zstd", "lz4"}

// BenchmarkRootfsWalk opens the image afresh and visits every inode, as a
// cold `find /` does.
func BenchmarkRootfsWalk(b *testing.B) {
	for _, comp := range benchComps {
		b.Run(comp, func(b *testing.B) {
			path := rootfsImage(b, comp)
			for b.Loop() {
				f := openImage(b, path, nil)
				b.ReportMetric(float64(len(walkFiles(b, f, "/"))), "files/op")
			}
		})
	}
}

// BenchmarkRootfsStat looks up a python module path component by
// component and fetches its attributes, warm: the per-stat cost.
func BenchmarkRootfsStat(b *testing.B) {
	f := openImage(b, rootfsImage(b, "gzip"), nil)
	files := walkFiles(b, f, "/usr/lib/python3.11/email")
	paths := make([][]string, len(files))
	for i, fl := range files {
		paths[i] = splitPath(fl.path)
	}
	root, _ := f.Inode(f.Root())
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		n := root
		var err error
		for _, c := range paths[i%len(paths)] {
			if n, err = f.Lookup(n, c); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkRootfsSmallFiles reads every file under 16 KiB in
// /usr/lib/python3.11 (fragments and single blocks) on a fresh FS each
// iteration.
func BenchmarkRootfsSmallFiles(b *testing.B) {
	path := rootfsImage(b, "gzip")
	f := openImage(b, path, nil)
	var small []benchFile
	var bytes int64
	for _, fl := range walkFiles(b, f, "/usr/lib/python3.11") {
		if fl.size < 16<<10 {
			small = append(small, fl)
			bytes += int64(fl.size)
		}
	}
	b.SetBytes(bytes)
	buf := make([]byte, 128<<10)
	for b.Loop() {
		f := openImage(b, path, nil)
		for _, fl := range small {
			if _, err := readFile(f, fl.ref, buf); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkRootfsReadUsr reads every file in /usr once on a fresh FS, with
// one reader or with GOMAXPROCS readers taking files from a shared list
// (as `xargs -P`). Compare ns/op of readers-1 and readers-N for scaling.
func BenchmarkRootfsReadUsr(b *testing.B) {
	for _, comp := range []string{"gzip", "zstd", "lz4"} {
		path := rootfsImage(b, comp)
		f := openImage(b, path, nil)
		files := walkFiles(b, f, "/usr")
		var bytes int64
		for _, fl := range files {
			bytes += int64(fl.size)
		}
		for _, readers := range []int{1, runtime.GOMAXPROCS(0)} {
			b.Run(fmt.Sprintf("%s/readers-%d", comp, readers), func(b *testing.B) {
				b.SetBytes(bytes)
				for b.Loop() {
					readAllFiles(b, openImage(b, path, nil), files, readers)
				}
			})
		}
	}
}

func readAllFiles(b *testing.B, f *FS, files []benchFile, readers int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 128<<10)
			for {
				i := next.Add(1) - 1
				if i >= int64(len(files)) {
					return
				}
				if _, err := readFile(f, files[i].ref, buf); err != nil {
					errs <- fmt.Errorf("%s: %w", files[i].path, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// seqImage holds /big, a 256 MiB file: incompressible (random) or
// compressible (text), to measure sequential reads.
func seqImage(b *testing.B, kind string) string {
	return cachedImage(b, "seq-"+kind+".sqfs", func(tmp string) error {
		dir, err := os.MkdirTemp(benchCacheDir(b), "src-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		w, err := os.Create(filepath.Join(dir, "big"))
		if err != nil {
			return err
		}
		for i := range 256 {
			chunk := randBytes(uint64(i), 1<<20)
			if kind == "text" {
				chunk = textBytes(uint64(i), 1<<20)
			}
			if _, err := w.Write(chunk); err != nil {
				return err
			}
		}
		if err := w.Close(); err != nil {
			return err
		}
		return mksquashfs(dir, tmp)
	})
}

// BenchmarkSeqRead reads the 256 MiB file start to end in 128 KiB chunks on
// a fresh FS (the host page cache holds the image).
func BenchmarkSeqRead(b *testing.B) {
	for _, kind := range []string{"random", "text"} {
		b.Run(kind, func(b *testing.B) {
			path := seqImage(b, kind)
			b.SetBytes(256 << 20)
			buf := make([]byte, 128<<10)
			for b.Loop() {
				f := openImage(b, path, nil)
				n := benchPath(b, f, "big")
				if k, err := readFile(f, n.Ref, buf); err != nil || k != 256<<20 {
					b.Fatal(k, err)
				}
			}
		})
	}
}

// bigDirImage holds /bigdir with 100,000 empty files f000000..f099999, as
// the lookup100k workload of testdata/bench.sh.
func bigDirImage(b *testing.B) string {
	return cachedImage(b, "bigdir.sqfs", func(tmp string) error {
		dir, err := os.MkdirTemp(benchCacheDir(b), "src-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if err := os.Mkdir(filepath.Join(dir, "bigdir"), 0o755); err != nil {
			return err
		}
		for i := range 100000 {
			p := filepath.Join(dir, "bigdir", fmt.Sprintf("f%06d", i))
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				return err
			}
		}
		return mksquashfs(dir, tmp)
	})
}

// BenchmarkLookup100k: cold opens the image and looks one name up in the
// 100,000-entry directory (the stat workload); warm repeats lookups of
// spread names on one FS.
func BenchmarkLookup100k(b *testing.B) {
	path := bigDirImage(b)
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			f := openImage(b, path, nil)
			benchPath(b, f, "bigdir/f050000")
		}
	})
	b.Run("warm", func(b *testing.B) {
		f := openImage(b, path, nil)
		dir := benchPath(b, f, "bigdir")
		for i := 0; b.Loop(); i++ {
			if _, err := f.Lookup(dir, fmt.Sprintf("f%06d", i*7919%100000)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
