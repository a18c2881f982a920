package ext3

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// TestReadaheadKeepsBlocksApart: blocks read ahead together are cached
// apart, so that one of them kept (here dirty, as an inode table block
// being written is) does not keep the whole read in memory. The cache's
// budget counts blocks; it held up to 16 times that before.
func TestReadaheadKeepsBlocksApart(t *testing.T) {
	const bs, slabs = 4096, 64
	f, err := os.Create(filepath.Join(t.TempDir(), "dev"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size := int64(slabs * inodeReadahead * bs)
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	c := newCache(NewSection(f, 0, size), bs, slabs*bs)

	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	for s := range slabs {
		start := uint32(s * inodeReadahead)
		c.readahead(start, inodeReadahead)
		b, err := c.get(start)
		if err != nil {
			t.Fatal(err)
		}
		b.mu.Lock()
		b.data[0] = 1
		c.markDirty(b)
		b.mu.Unlock()
		c.put(b)
	}
	grown := int64(heap()) - int64(before)
	if n := len(c.m); n > slabs {
		t.Fatalf("%d blocks cached, budget %d", n, slabs)
	}
	// 64 dirty blocks of 4 KiB, plus the cache's own bookkeeping; a read
	// kept whole would be 64 KiB each, 4 MiB in all.
	if grown > 1<<20 {
		t.Errorf("heap grew %d KiB for %d cached blocks of %d bytes", grown>>10, slabs, bs)
	}
	runtime.KeepAlive(c)
}
