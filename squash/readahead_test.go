// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
)

// TestFragmentReadahead reads 90 small files whose tails fill 30 fragment
// blocks, in the order mksquashfs packed them and in the reverse order.
// The sweep in packing order decodes the next fragment block in the
// background, and still each block once; the reverse order starts none.
// After each file the test waits for the background decodes: a decode
// that has handed its block to the reader but not yet given back its
// slot makes the next start wait for a free one, which on a loaded
// machine (CI, packages tested side by side) it did not get: 14 of 30.
func TestFragmentReadahead(t *testing.T) {
	requireTool(t, "mksquashfs")
	src := t.TempDir()
	rng := rand.New(rand.NewSource(1))
	const files = 90
	want := make([][]byte, files)
	for i := range want {
		// Random lowercase text: compressible, so blocks are compressed,
		// but 40 KiB still fills a third of a 128 KiB fragment block.
		b := make([]byte, 40<<10)
		for j := range b {
			b[j] = 'a' + byte(rng.Intn(26))
		}
		want[i] = b
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%03d", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(t.TempDir(), "frag.sqfs")
	if err := mksquashfs(src, img, "-no-duplicates"); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name    string
		reverse bool
	}{{"packing order", false}, {"reverse order", true}} {
		f := openImage(t, img, nil)
		root, err := f.Inode(f.Root())
		if err != nil {
			t.Fatal(err)
		}
		for k := range files {
			i := k
			if tc.reverse {
				i = files - 1 - k
			}
			n, err := f.Lookup(root, fmt.Sprintf("f%03d", i))
			if err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(want[i])+1)
			m, err := f.ReadAt(n, got, 0)
			if err != nil && err != io.EOF {
				t.Fatalf("%s: f%03d: %v", tc.name, i, err)
			}
			if !bytes.Equal(got[:m], want[i]) {
				t.Fatalf("%s: f%03d: content differs", tc.name, i)
			}
			for range cap(f.ra.slots) {
				f.ra.slots <- struct{}{}
			}
			for range cap(f.ra.slots) {
				<-f.ra.slots
			}
		}
		for range cap(f.ra.slots) { // wait for background decodes
			f.ra.slots <- struct{}{}
		}
		if f.sb.Fragments < 10 {
			t.Fatalf("only %d fragment blocks; the test needs many", f.sb.Fragments)
		}
		if loads := f.blockLoads.Load(); loads != int64(f.sb.Fragments) {
			t.Errorf("%s: %d decodes for %d fragment blocks", tc.name, loads, f.sb.Fragments)
		}
		started := f.raStarts.Load()
		if !tc.reverse && started < int64(f.sb.Fragments)/2 {
			t.Errorf("%s: %d of %d fragment blocks decoded ahead", tc.name, started,
				f.sb.Fragments)
		}
		if tc.reverse && started != 0 {
			t.Errorf("%s: %d fragment blocks decoded ahead, want none", tc.name, started)
		}
	}
}

// TestRereadNoPrefetch: reading a file again from the start, after a whole
// sequential pass, is a new sequential pass, not an out-of-order read, so
// it starts no whole-file prefetch.
func TestRereadNoPrefetch(t *testing.T) {
	f := openImage(t, image(t), nil)
	root, _ := f.Inode(f.Root())
	n, err := f.Lookup(root, "text-3m")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 128<<10)
	for pass := range 2 {
		for off := int64(0); ; {
			k, err := f.ReadAt(n, buf, off)
			off += int64(k)
			if err == io.EOF || k == 0 {
				break
			}
			if err != nil {
				t.Fatalf("pass %d: %v", pass, err)
			}
		}
	}
	if p := f.prefetches.Load(); p != 0 {
		t.Errorf("%d whole-file prefetches after two sequential passes, want 0", p)
	}
}
