// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"sync"
	"sync/atomic"
)

// Decoded data and fragment blocks are recycled. Reading an image decodes
// each block once into a fresh buffer, copies it out and drops it when the
// cache evicts it: 128 KiB a block that Go zeroes on allocation, and the
// garbage collector runs once every few megabytes read, rescanning the
// server's whole heap each time. Reading all of /usr that way spent a
// seventh of the server's CPU allocating and collecting. A block instead
// counts its holders (the cache, and each reader between getting it and
// its last copy out of it), and its buffer is reused when the last one lets
// go.

// block is one decoded data or fragment block.
type block struct {
	b    []byte
	refs atomic.Int32
	pool *blockPool // where the buffer goes back to; nil: it is not reused
}

// hold counts one more holder. The cache calls it under its shard lock,
// so a block it hands out cannot be released by eviction before.
func (b *block) hold() { b.refs.Add(1) }

// release drops one holder; the last one returns the buffer to its pool.
// b.b must not be used after.
func (b *block) release() {
	switch n := b.refs.Add(-1); {
	case n == 0 && b.pool != nil:
		b.pool.put(b)
	case n < 0:
		// A holder let go twice: the buffer may already be another
		// block's, and what a reader copied out of it wrong.
		panic("squash: decoded block released more often than held")
	}
}

// counted is a cache value that counts its holders: the cache holds it
// while it keeps it and for each caller it hands it to.
type counted interface {
	hold()
	release()
}

// blockPool keeps buffers of one block size for reuse.
type blockPool struct {
	size   int
	p      sync.Pool
	allocs atomic.Int64 // buffers made rather than reused; read by tests
}

// poisonRecycled fills buffers with junk as they return to the pool, so
// that a test reading a block after its release sees the damage.
var poisonRecycled = false

// get returns an unheld block whose buffer has capacity p.size, length 0.
func (p *blockPool) get() *block {
	if b, ok := p.p.Get().(*block); ok {
		return b
	}
	p.allocs.Add(1)
	return &block{b: make([]byte, 0, p.size), pool: p}
}

func (p *blockPool) put(b *block) {
	if poisonRecycled {
		full := b.b[:cap(b.b)]
		for i := range full {
			full[i] = 0xa5
		}
	}
	b.b = b.b[:0]
	p.p.Put(b)
}
