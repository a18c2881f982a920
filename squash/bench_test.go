// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
)

// Benchmarks run on the feature-tree image (gzip, 128 KiB blocks unless
// named). Run: go test -run '^$' -bench . -benchmem ./squash

func benchFS(b *testing.B, opts ...string) (*FS, *Inode) {
	b.Helper()
	f := openImage(b, image(b, opts...), nil)
	root, err := f.Inode(f.Root())
	if err != nil {
		b.Fatal(err)
	}
	return f, root
}

func bigName(i int) string {
	i %= bigDirEntries
	return fmt.Sprintf("entry-%05d-%s", i, strings.Repeat("n", i%7))
}

// BenchmarkLookup measures a lookup in the 20,000-entry directory once its
// listing is cached, plus the inode fetch.
func BenchmarkLookup(b *testing.B) {
	f, root := benchFS(b)
	big, _ := f.Lookup(root, "big")
	names := make([]string, 1024)
	for i := range names {
		names[i] = bigName(i * 19)
	}
	for _, n := range names {
		if _, err := f.Lookup(big, n); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := f.Lookup(big, names[i%len(names)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookupIndexed measures the uncached path: a directory-index
// guided scan of the 20,000-entry directory.
func BenchmarkLookupIndexed(b *testing.B) {
	f, root := benchFS(b)
	big, _ := f.Lookup(root, "big")
	for i := 0; b.Loop(); i++ {
		if _, ok, err := f.lookupIndexed(big, bigName(i*7919)); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkReadDir lists the 20,000-entry directory (cached listing: the
// cost is the copy handed to the caller).
func BenchmarkReadDir(b *testing.B) {
	f, root := benchFS(b)
	big, _ := f.Lookup(root, "big")
	for b.Loop() {
		if _, err := f.ReadDir(big); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWalkCold opens the image afresh and walks every inode, as a cold
// `find` would. SQUASH_BENCH_IMAGE names a larger image to walk instead
// of the feature tree (e.g. mksquashfs /usr usr.sqfs).
func BenchmarkWalkCold(b *testing.B) {
	path := os.Getenv("SQUASH_BENCH_IMAGE")
	if path == "" {
		path = image(b)
	}
	for b.Loop() {
		f := openImage(b, path, nil)
		count := 0
		var walk func(ref Ref)
		walk = func(ref Ref) {
			n, err := f.Inode(ref)
			if err != nil {
				b.Fatal(err)
			}
			count++
			if !n.IsDir() {
				return
			}
			ents, err := f.ReadDir(n)
			if err != nil {
				b.Fatal(err)
			}
			for _, e := range ents {
				walk(e.Ref)
			}
		}
		walk(f.Root())
		b.ReportMetric(float64(count), "inodes/op")
	}
}

func benchRead(b *testing.B, comp, name string, chunk int, parallel bool) {
	f, root := benchFS(b, "-comp", comp)
	n, err := f.Lookup(root, name)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(n.Size))
	readAll := func(buf []byte) {
		for off := int64(0); ; off += int64(len(buf)) {
			if _, err := f.ReadAt(n, buf, off); err == io.EOF {
				return
			} else if err != nil {
				b.Fatal(err)
			}
		}
	}
	if !parallel {
		buf := make([]byte, chunk)
		for b.Loop() {
			readAll(buf)
		}
		return
	}
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, chunk)
		for pb.Next() {
			readAll(buf)
		}
	})
}

// BenchmarkReadAt reads a 3 MiB file sequentially in 128 KiB chunks (the
// FUSE read size) with warm caches; BenchmarkReadAtParallel does the same
// from GOMAXPROCS goroutines.
func BenchmarkReadAt(b *testing.B) {
	for _, comp := range []string{"gzip", "zstd", "lz4", "lzo", "xz"} {
		b.Run(comp, func(b *testing.B) { benchRead(b, comp, "text-3m", 128<<10, false) })
	}
}

func BenchmarkReadAtParallel(b *testing.B) {
	for _, comp := range []string{"gzip", "zstd"} {
		b.Run(comp, func(b *testing.B) { benchRead(b, comp, "text-3m", 128<<10, true) })
	}
}

// BenchmarkReadAtCold reads with a cache too small to hold the file, so
// every block is decompressed: the decompressor throughput.
func BenchmarkReadAtCold(b *testing.B) {
	for _, comp := range []string{"gzip", "zstd", "lz4", "lzo", "xz"} {
		b.Run(comp, func(b *testing.B) {
			f := openImage(b, image(b, "-comp", comp), &Options{CacheBytes: 512 << 10})
			root, _ := f.Inode(f.Root())
			n, err := f.Lookup(root, "text-3m")
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(n.Size))
			buf := make([]byte, 128<<10)
			for b.Loop() {
				for off := int64(0); ; off += int64(len(buf)) {
					if _, err := f.ReadAt(n, buf, off); err == io.EOF {
						break
					} else if err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
