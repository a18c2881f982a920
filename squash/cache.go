// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"errors"
	"sync"
)

// lru is a sharded least-recently-used cache with a cost budget (bytes for
// block caches, an estimate for parsed records). Each shard has its own
// mutex, so readers of different keys rarely contend and no lock is global.
// Concurrent misses on one key are collapsed: one caller loads, the others
// wait for its result. Values that count their holders (counted, such as
// decoded blocks) are held by the cache while kept and once more for each
// caller given one, who releases it when done with it.
type lru[V any] struct {
	shards []lruShard[V]
	mask   uint64
}

type lruShard[V any] struct {
	counts   bool // V counts its holders (decided once, not per value)
	mu       sync.Mutex
	budget   int64
	used     int64
	items    map[uint64]*lruEntry[V]
	inflight map[uint64]*lruCall[V]
	head     lruEntry[V] // sentinel: head.next is most recent
}

type lruEntry[V any] struct {
	key        uint64
	val        V
	cost       int64
	prev, next *lruEntry[V]
}

type lruCall[V any] struct {
	done    sync.WaitGroup // released when val and err are set
	val     V
	err     error
	waiters int // callers waiting on done, each held a val for
}

// lruEntryCost is the bookkeeping of one cached item (entry, map slot),
// added to its payload's cost.
const lruEntryCost = 96

// newLRU returns a cache holding about budget cost units. maxItem is the
// largest single item expected; the shard count is chosen so that each
// shard can hold several such items.
func newLRU[V any](budget, maxItem int64) *lru[V] {
	var zero V
	_, counts := any(zero).(counted)
	n := 16
	for n > 1 && budget/int64(n) < 4*maxItem {
		n /= 2
	}
	c := &lru[V]{shards: make([]lruShard[V], n), mask: uint64(n - 1)}
	for i := range c.shards {
		s := &c.shards[i]
		s.budget = budget / int64(n)
		s.counts = counts
		s.items = make(map[uint64]*lruEntry[V])
		s.inflight = make(map[uint64]*lruCall[V])
		s.head.next, s.head.prev = &s.head, &s.head
	}
	return c
}

func (c *lru[V]) shard(key uint64) *lruShard[V] {
	// Fibonacci hashing spreads block offsets, which share low bits.
	return &c.shards[(key*0x9e3779b97f4a7c15)>>58&c.mask]
}

// get returns the cached value for key, if any.
func (c *lru[V]) get(key uint64) (V, bool) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.items[key]; ok {
		s.touchLocked(e)
		s.hold(e.val)
		return e.val, true
	}
	var zero V
	return zero, false
}

// fits reports whether an item of cost can be kept at all: items costlier
// than a shard are not.
func (c *lru[V]) fits(cost int64) bool { return cost <= c.shards[0].budget }

// has reports whether key is cached or being loaded.
func (c *lru[V]) has(key uint64) bool {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.items[key]
	if !ok {
		_, ok = s.inflight[key]
	}
	return ok
}

// demote moves key, if cached, to the eviction end: its reader is done
// with it, so it should go before entries that may still be used.
func (c *lru[V]) demote(key uint64) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.items[key]
	if !ok || s.head.prev == e {
		return
	}
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = s.head.prev, &s.head
	s.head.prev.next = e
	s.head.prev = e
}

// getOrLoad returns the value for key, calling load on a miss. load returns
// the value and its cost; errors are not cached.
func (c *lru[V]) getOrLoad(key uint64, load func() (V, int64, error)) (V, error) {
	s := c.shard(key)
	s.mu.Lock()
	if e, ok := s.items[key]; ok {
		s.touchLocked(e)
		s.hold(e.val)
		s.mu.Unlock()
		return e.val, nil
	}
	if call, ok := s.inflight[key]; ok {
		call.waiters++
		s.mu.Unlock()
		call.done.Wait()
		return call.val, call.err
	}
	call := &lruCall[V]{}
	call.done.Add(1)
	s.inflight[key] = call
	s.mu.Unlock()

	var cost int64
	finished := false
	// Release waiters even if load panics, so they cannot hang.
	defer func() {
		if !finished {
			call.err = errLoadPanicked
			s.mu.Lock()
			delete(s.inflight, key)
			s.mu.Unlock()
			call.done.Done()
		}
	}()
	call.val, cost, call.err = load()
	finished = true

	s.mu.Lock()
	delete(s.inflight, key)
	if call.err == nil {
		s.addLocked(key, call.val, cost)
		// Held for this caller and each waiter before anyone can
		// evict it.
		for range call.waiters + 1 {
			s.hold(call.val)
		}
	}
	s.mu.Unlock()
	call.done.Done()
	return call.val, call.err
}

// errLoadPanicked is what waiters get when the loader they waited on
// panicked (a bug); the panic itself propagates in the loading goroutine.
var errLoadPanicked = errors.New("squash: concurrent load failed")

// put stores a value, replacing any previous one.
func (c *lru[V]) put(key uint64, val V, cost int64) {
	s := c.shard(key)
	s.mu.Lock()
	s.addLocked(key, val, cost)
	s.mu.Unlock()
}

// touchLocked moves e to the front. Preconditions: s.mu held.
func (s *lruShard[V]) touchLocked(e *lruEntry[V]) {
	if s.head.next == e {
		return
	}
	e.prev.next, e.next.prev = e.next, e.prev
	e.next, e.prev = s.head.next, &s.head
	s.head.next.prev = e
	s.head.next = e
}

// addLocked inserts and evicts from the tail until within budget. Items
// costlier than the whole shard are not kept. Preconditions: s.mu held.
func (s *lruShard[V]) addLocked(key uint64, val V, cost int64) {
	if cost > s.budget {
		return
	}
	if old, ok := s.items[key]; ok {
		s.removeLocked(old)
	}
	s.hold(val)
	e := &lruEntry[V]{key: key, val: val, cost: cost}
	e.next, e.prev = s.head.next, &s.head
	s.head.next.prev = e
	s.head.next = e
	s.items[key] = e
	s.used += cost
	for s.used > s.budget && s.head.prev != &s.head {
		s.removeLocked(s.head.prev)
	}
}

// removeLocked unlinks e. Preconditions: s.mu held.
func (s *lruShard[V]) removeLocked(e *lruEntry[V]) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
	delete(s.items, e.key)
	s.used -= e.cost
	if s.counts {
		any(e.val).(counted).release()
	}
}

// hold counts one more holder of v, if values of this cache count them.
func (s *lruShard[V]) hold(v V) {
	if s.counts {
		any(v).(counted).hold()
	}
}
