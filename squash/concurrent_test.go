// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestConcurrentReaders runs 64 goroutines doing lookups, listings and
// reads on one FS with small caches, so entries are evicted while in use.
// Run it with -race.
func TestConcurrentReaders(t *testing.T) {
	src := featureTree(t)
	f := openImage(t, image(t, optsB4K...),
		&Options{CacheBytes: 256 << 10, MetaCacheBytes: 64 << 10})
	files := []string{"text-3m", "random-1m", "multi-tail", "sparse", "sub/hardlink-1",
		"small.txt", "dup-a", "xattrs/shared-2", "big/entry-19000-nn"}
	want := map[string][32]byte{}
	for _, name := range files {
		data, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		want[name] = sha256.Sum256(data)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- concurrentWorker(f, g, files, want)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func concurrentWorker(f *FS, g int, files []string, want map[string][32]byte) error {
	root, err := f.Inode(f.Root())
	if err != nil {
		return err
	}
	for i := range 6 {
		name := files[(g+i)%len(files)]
		n := root
		for part := range strings.SplitSeq(name, "/") {
			if n, err = f.Lookup(n, part); err != nil {
				return fmt.Errorf("worker %d: lookup %s: %w", g, name, err)
			}
		}
		// Read in odd-sized chunks so goroutines hit blocks at different
		// points.
		h := sha256.New()
		buf := make([]byte, 3000+g*97)
		for off := int64(0); ; {
			k, err := f.ReadAt(n, buf, off)
			h.Write(buf[:k])
			off += int64(k)
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("worker %d: read %s: %w", g, name, err)
			}
		}
		if [32]byte(h.Sum(nil)) != want[name] {
			return fmt.Errorf("worker %d: %s: content differs", g, name)
		}
		big, err := f.Lookup(root, "big")
		if err != nil {
			return err
		}
		e := fmt.Sprintf("entry-%05d-%s", g*300+i, strings.Repeat("n", (g*300+i)%7))
		if _, err := f.Lookup(big, e); err != nil {
			return fmt.Errorf("worker %d: lookup big/%s: %w", g, e, err)
		}
		if g%8 == i {
			if ents, err := f.ReadDir(big); err != nil || len(ents) != bigDirEntries+1 {
				return fmt.Errorf("worker %d: readdir big: %d, %v", g, len(ents), err)
			}
		}
	}
	return nil
}

// TestConcurrentReadersOneBlock starts 64 readers of one compressed block
// at once on a fresh FS: the block is decompressed once and every reader
// gets its bytes.
func TestConcurrentReadersOneBlock(t *testing.T) {
	src := featureTree(t)
	want, err := os.ReadFile(filepath.Join(src, "text-3m"))
	if err != nil {
		t.Fatal(err)
	}
	path := image(t)
	for round := range 4 {
		f := openImage(t, path, &Options{Readahead: -1})
		root, _ := f.Inode(f.Root())
		n, err := f.Lookup(root, "text-3m")
		if err != nil {
			t.Fatal(err)
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		for g := range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				off := int64(g * 1000)
				buf := make([]byte, 500)
				if k, err := f.ReadAt(n, buf, off); err != nil || k != len(buf) {
					t.Errorf("round %d reader %d: %d bytes, %v", round, g, k, err)
				} else if !bytes.Equal(buf, want[off:off+500]) {
					t.Errorf("round %d reader %d: content differs", round, g)
				}
			}()
		}
		close(start)
		wg.Wait()
		if loads := f.blockLoads.Load(); loads != 1 {
			t.Errorf("round %d: 64 readers of one block decoded it %d times, want 1",
				round, loads)
		}
	}
}

// TestReadaheadDecodesOnce reads files sequentially with readahead on and
// checks the content and that background and foreground decodes of a
// block were never both done: every compressed block is decoded once.
func TestReadaheadDecodesOnce(t *testing.T) {
	src := featureTree(t)
	for _, chunk := range []int{128 << 10, 100 << 10, 4096} {
		f := openImage(t, image(t), &Options{Readahead: 3})
		root, _ := f.Inode(f.Root())
		n, err := f.Lookup(root, "text-3m")
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(src, "text-3m"))
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 0, len(want))
		buf := make([]byte, chunk)
		for off := int64(0); ; {
			k, err := f.ReadAt(n, buf, off)
			got = append(got, buf[:k]...)
			off += int64(k)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("chunk %d: content differs", chunk)
		}
		blocks := compressedBlocks(t, f, n) // stored blocks are read without a decode
		// Background decodes may still be finishing; wait for them.
		for range cap(f.ra.slots) {
			f.ra.slots <- struct{}{}
		}
		if loads := f.blockLoads.Load(); loads != blocks {
			t.Errorf("chunk %d: %d decodes for %d compressed blocks", chunk, loads, blocks)
		}
		if f.raStarts.Load() == 0 {
			t.Errorf("chunk %d: a sequential read started no readahead", chunk)
		}
	}
}

// TestPrefetchOutOfOrder checks that a file read out of order (as page
// faults of a mapped binary read it) has all its blocks decoded once in
// the background, that the content read afterwards is right, and that a
// sequential reader starts no whole-file prefetch.
func TestPrefetchOutOfOrder(t *testing.T) {
	src := featureTree(t)
	want, err := os.ReadFile(filepath.Join(src, "text-3m"))
	if err != nil {
		t.Fatal(err)
	}
	f := openImage(t, image(t), nil)
	root, _ := f.Inode(f.Root())
	n, err := f.Lookup(root, "text-3m")
	if err != nil {
		t.Fatal(err)
	}
	blocks := compressedBlocks(t, f, n)
	if blocks < 8 {
		t.Fatalf("text-3m has %d compressed blocks, want many", blocks)
	}
	bs := int64(f.sb.BlockSize)
	buf := make([]byte, 4096)
	for _, off := range []int64{0, 20 * bs, 3 * bs} {
		k, err := f.ReadAt(n, buf, off)
		if err != nil || !bytes.Equal(buf[:k], want[off:off+int64(k)]) {
			t.Fatalf("read at %d: %d, %v, or content differs", off, k, err)
		}
	}
	f.ra.prefetch <- struct{}{} // wait for the prefetch to finish
	<-f.ra.prefetch
	if p := f.prefetches.Load(); p != 1 {
		t.Errorf("%d prefetches started, want 1", p)
	}
	if loads := f.blockLoads.Load(); loads != blocks {
		t.Errorf("%d decodes after the prefetch, want %d (every block once)", loads, blocks)
	}
	for _, i := range []int64{5, 1, 23, 0, 12, 7, 2} {
		off := i * bs
		big := make([]byte, bs)
		k, err := f.ReadAt(n, big, off)
		if (err != nil && err != io.EOF) || !bytes.Equal(big[:k], want[off:off+int64(k)]) {
			t.Fatalf("block %d: %d, %v, or content differs", i, k, err)
		}
	}
	if loads := f.blockLoads.Load(); loads != blocks {
		t.Errorf("%d decodes after reading prefetched blocks, want %d", loads, blocks)
	}

	seq := openImage(t, image(t), nil)
	root, _ = seq.Inode(seq.Root())
	n, _ = seq.Lookup(root, "text-3m")
	big := make([]byte, 128<<10)
	for off := int64(0); ; off += int64(len(big)) {
		if _, err := seq.ReadAt(n, big, off); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if p := seq.prefetches.Load(); p != 0 {
		t.Errorf("a sequential read started %d prefetches, want 0", p)
	}

	off := openImage(t, image(t), &Options{Prefetch: -1})
	root, _ = off.Inode(off.Root())
	n, _ = off.Lookup(root, "text-3m")
	for _, o := range []int64{0, 20 * bs, 3 * bs} {
		if _, err := off.ReadAt(n, buf, o); err != nil {
			t.Fatal(err)
		}
	}
	if p := off.prefetches.Load(); p != 0 {
		t.Errorf("Prefetch -1: %d prefetches started, want 0", p)
	}
}

// TestReadaheadFirstRead checks that a first read of a whole block from
// the start (cat, cp) starts readahead at once, and a header read (an ELF
// loader's 16 KiB) does not.
func TestReadaheadFirstRead(t *testing.T) {
	for _, c := range []struct {
		size int
		want bool
	}{{128 << 10, true}, {16 << 10, false}} {
		f := openImage(t, image(t), nil)
		root, _ := f.Inode(f.Root())
		n, err := f.Lookup(root, "text-3m")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.ReadAt(n, make([]byte, c.size), 0); err != nil {
			t.Fatal(err)
		}
		if got := f.raStarts.Load() > 0; got != c.want {
			t.Errorf("first read of %d bytes: readahead started %v, want %v", c.size, got,
				c.want)
		}
	}
}

// compressedBlocks counts the blocks of n stored compressed.
func compressedBlocks(t *testing.T, f *FS, n *Inode) int64 {
	t.Helper()
	bl, err := f.blocks(n)
	if err != nil {
		t.Fatal(err)
	}
	blocks := int64(0)
	for i := range bl.len() {
		s, _, err := bl.at(i)
		if err != nil {
			t.Fatal(err)
		}
		if s&blockUncompBit == 0 && s != 0 {
			blocks++
		}
	}
	return blocks
}
