// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestBlocksRecycled reads files through a data cache of a few blocks:
// buffers are reused rather than made for each block decoded, what is read
// is right although released buffers are poisoned (TestMain), and once the
// readers are done the cache is each kept block's only holder.
func TestBlocksRecycled(t *testing.T) {
	src := featureTree(t)
	f := openImage(t, image(t, optsB4K...), &Options{CacheBytes: 64 << 10, Readahead: -1})
	root, err := f.Inode(f.Root())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"text-3m", "random-1m", "multi-tail", "small.txt", "text-3m"} {
		want, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		n, err := f.Lookup(root, name)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(want)+1)
		k, err := f.ReadAt(n, got, 0)
		if err != io.EOF || !bytes.Equal(got[:k], want) {
			t.Fatalf("%s: read %d bytes (%v), content equal %v", name, k, err,
				bytes.Equal(got[:k], want))
		}
	}
	loads, allocs := f.blockLoads.Load(), f.blockPool.allocs.Load()
	// The cache keeps 16 blocks of 4 KiB; a few more were in hand.
	limit := int64(32)
	if raceEnabled {
		limit = loads / 2
	}
	if loads < 1000 || allocs > limit {
		t.Errorf("%d blocks decoded into %d buffers made", loads, allocs)
	}
	if held := cachedHolders(f); len(held) == 0 {
		t.Error("no block cached")
	} else {
		for key, refs := range held {
			if refs != 1 {
				t.Errorf("block at %d has %d holders with no reader", key, refs)
			}
		}
	}
}

// TestBlockHolders: concurrent callers of one block, the loader and those
// waiting on it, each hold it, as the cache does; eviction lets go of the
// cache's hold and the last release recycles the buffer.
func TestBlockHolders(t *testing.T) {
	p := &blockPool{size: 64}
	c := newLRU[*block](4*(64+lruEntryCost), 64+lruEntryCost)
	start := make(chan struct{})
	var wg sync.WaitGroup
	got := make(chan *block, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := c.getOrLoad(1, func() (*block, int64, error) {
				<-start
				b := p.get()
				b.b = append(b.b, "one"...)
				return b, 64 + lruEntryCost, nil
			})
			if err != nil {
				t.Error(err)
				return
			}
			got <- b
		}()
	}
	close(start)
	wg.Wait()
	close(got)
	var b *block
	for g := range got {
		if b != nil && g != b {
			t.Fatal("callers got different blocks for one key")
		}
		b = g
	}
	if n := b.refs.Load(); n != 9 {
		t.Fatalf("%d holders, want 8 callers and the cache", n)
	}
	for range 8 {
		b.release()
	}
	if n := b.refs.Load(); n != 1 {
		t.Fatalf("%d holders after the callers let go, want the cache", n)
	}
	// Evict it with blocks of no pool: the cache keeps four.
	for k := uint64(2); k < 12; k++ {
		c.put(k, &block{b: []byte("other")}, 64+lruEntryCost)
	}
	if n := b.refs.Load(); n != 0 || len(b.b) != 0 || b.b[:1][0] != 0xa5 {
		t.Fatalf("evicted block has %d holders, %d bytes, not poisoned", n, len(b.b))
	}
	defer func() {
		if recover() == nil {
			t.Error("releasing a block more often than held did not panic")
		}
	}()
	b.release()
}

// cachedHolders returns the holder count of every block the data cache
// keeps, by key.
func cachedHolders(f *FS) map[uint64]int32 {
	out := map[uint64]int32{}
	for i := range f.data.shards {
		s := &f.data.shards[i]
		s.mu.Lock()
		for k, e := range s.items {
			out[k] = e.val.refs.Load()
		}
		s.mu.Unlock()
	}
	return out
}
