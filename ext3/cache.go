package ext3

import (
	"container/list"
	"fmt"
	"sync"
	"sync/atomic"
)

// buf is one cached metadata block (bitmap, inode table, indirect,
// directory, xattr or symlink block). File data never goes through it.
type buf struct {
	nr uint32
	// mu guards data. Writers hold it while changing bytes and mark the
	// buffer dirty before unlocking.
	mu   sync.Mutex
	data []byte

	once    sync.Once // loads data from the device
	loadErr error

	// The fields below are guarded by cache.mu.
	refs   int32
	dirty  bool // changed since the last commit snapshot
	flying bool // part of a commit whose home write is not finished
	elem   *list.Element
}

// cache is the metadata block cache. Clean unreferenced buffers sit on an
// LRU list and are evicted past the byte budget; dirty and in-flight buffers
// stay until their commit has written them home, so a re-read can never see
// a stale home location.
type cache struct {
	dev    Device
	bs     int
	budget int

	mu    sync.Mutex
	m     map[uint32]*buf
	lru   list.List // clean, unreferenced buffers, front = most recent
	dirty map[uint32]*buf
	// ndirty is len(dirty), readable without mu.
	ndirty atomic.Int64
	// landings counts commits that wrote blocks home and blocks forgotten
	// (guarded by mu). readahead reads the device without the lock and
	// inserts nothing if it changed meanwhile: a block written home and
	// evicted during the read would otherwise come back with its old
	// contents.
	landings uint64
}

func newCache(dev Device, bs int, budget int64) *cache {
	if budget <= 0 {
		budget = 64 << 20
	}
	n := int(budget / int64(bs))
	if n < 64 {
		n = 64
	}
	return &cache{dev: dev, bs: bs, budget: n, m: make(map[uint32]*buf), dirty: make(map[uint32]*buf)}
}

// lookup returns the buffer for nr with a reference held, creating an
// unloaded one if needed.
func (c *cache) lookup(nr uint32) *buf {
	c.mu.Lock()
	b := c.m[nr]
	if b == nil {
		b = &buf{nr: nr}
		c.m[nr] = b
		c.evictLocked()
	} else if b.elem != nil {
		c.lru.Remove(b.elem)
		b.elem = nil
	}
	b.refs++
	c.mu.Unlock()
	return b
}

// get returns block nr, reading it if it is not cached. The caller must put it.
func (c *cache) get(nr uint32) (*buf, error) {
	b := c.lookup(nr)
	b.once.Do(func() {
		data := make([]byte, c.bs)
		if _, err := c.dev.ReadAt(data, int64(nr)*int64(c.bs)); err != nil {
			b.loadErr = fmt.Errorf("ext3: read block %d: %w", nr, err)
			return
		}
		b.data = data
	})
	if b.loadErr != nil {
		err := b.loadErr
		c.mu.Lock()
		b.refs--
		if c.m[nr] == b && b.refs == 0 {
			delete(c.m, nr)
		}
		c.mu.Unlock()
		return nil, err
	}
	return b, nil
}

// getNew returns a zeroed buffer for a newly allocated block without
// reading the device; its old contents are garbage by definition.
func (c *cache) getNew(nr uint32) *buf {
	b := c.lookup(nr)
	b.once.Do(func() { b.data = make([]byte, c.bs) })
	b.mu.Lock()
	clear(b.data)
	b.mu.Unlock()
	return b
}

func (c *cache) put(b *buf) {
	c.mu.Lock()
	b.refs--
	c.idleLocked(b)
	c.mu.Unlock()
}

// idleLocked puts b on the LRU list if nothing pins it.
func (c *cache) idleLocked(b *buf) {
	if b.refs == 0 && !b.dirty && !b.flying && b.elem == nil && c.m[b.nr] == b {
		b.elem = c.lru.PushFront(b)
	}
}

func (c *cache) evictLocked() {
	for len(c.m) > c.budget {
		e := c.lru.Back()
		if e == nil {
			return
		}
		b := c.lru.Remove(e).(*buf)
		b.elem = nil
		delete(c.m, b.nr)
	}
}

// markDirty adds b to the running transaction. Call it with b.mu held.
func (c *cache) markDirty(b *buf) {
	c.mu.Lock()
	if !b.dirty && c.m[b.nr] == b {
		b.dirty = true
		c.dirty[b.nr] = b
		c.ndirty.Store(int64(len(c.dirty)))
	}
	c.mu.Unlock()
}

// forget drops block nr: it was freed, so its cached contents must neither
// be written home nor shadow the data a later owner writes.
func (c *cache) forget(nr uint32) {
	c.mu.Lock()
	c.landings++
	if b := c.m[nr]; b != nil {
		if b.dirty {
			b.dirty = false
			delete(c.dirty, nr)
			c.ndirty.Store(int64(len(c.dirty)))
		}
		if b.elem != nil {
			c.lru.Remove(b.elem)
			b.elem = nil
		}
		delete(c.m, nr)
	}
	c.mu.Unlock()
}

// dirtyCount is the number of blocks in the running transaction. Every
// operation asks twice (begin and end), so it reads a counter instead of
// taking the cache lock.
func (c *cache) dirtyCount() int { return int(c.ndirty.Load()) }

// snapshot copies every dirty buffer, marks them clean and in flight.
// Preconditions: no writer is active (the caller holds the op lock).
func (c *cache) snapshot() ([]metaBlock, []*buf) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]metaBlock, 0, len(c.dirty))
	bufs := make([]*buf, 0, len(c.dirty))
	for nr, b := range c.dirty {
		out = append(out, metaBlock{nr: nr, data: append([]byte(nil), b.data...)})
		b.dirty = false
		b.flying = true
		bufs = append(bufs, b)
	}
	clear(c.dirty)
	c.ndirty.Store(0)
	return out, bufs
}

// landed ends the flight of bufs once their commit has written them home.
func (c *cache) landed(bufs []*buf) {
	c.mu.Lock()
	c.landings++
	for _, b := range bufs {
		b.flying = false
		c.idleLocked(b)
	}
	c.evictLocked()
	c.mu.Unlock()
}

// readahead loads blocks [start, start+n) with one device read, keeping
// the ones not cached yet as clean buffers. Inode tables are read this
// way: a directory walk touches neighbouring inodes.
func (c *cache) readahead(start uint32, n int) {
	c.mu.Lock()
	_, hit := c.m[start]
	epoch := c.landings
	c.mu.Unlock()
	if hit || n < 2 {
		return
	}
	data := make([]byte, n*c.bs)
	if _, err := c.dev.ReadAt(data, int64(start)*int64(c.bs)); err != nil {
		return // the normal read path reports the error
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.landings != epoch {
		return // blocks may have changed at home during the read
	}
	for i := 0; i < n; i++ {
		nr := start + uint32(i)
		if c.m[nr] != nil {
			continue
		}
		// A block of its own, not a slice of data: a slice would keep
		// the whole read alive as long as any one of its blocks stays
		// cached (or dirty), and the budget counts blocks, not reads.
		own := make([]byte, c.bs)
		copy(own, data[i*c.bs:])
		b := &buf{nr: nr, data: own}
		b.once.Do(func() {})
		c.m[nr] = b
		b.elem = c.lru.PushFront(b)
	}
	c.evictLocked()
}
