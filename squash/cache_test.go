// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

func TestLRUBudget(t *testing.T) {
	c := newLRU[int](1000, 100)
	for i := range 100 {
		c.put(uint64(i), i, 100)
	}
	held := 0
	for i := range c.shards {
		s := &c.shards[i]
		if s.used > s.budget {
			t.Errorf("shard %d uses %d of %d", i, s.used, s.budget)
		}
		held += len(s.items)
	}
	if held == 0 || held > 10 {
		t.Errorf("cache holds %d items of cost 100 in a budget of 1000", held)
	}
	if _, ok := c.get(99); !ok {
		t.Errorf("most recent item was evicted")
	}
	c.put(1000, 1, 5000)
	if _, ok := c.get(1000); ok {
		t.Errorf("item larger than its shard was kept")
	}
}

func TestLRUCollapsesConcurrentLoads(t *testing.T) {
	c := newLRU[int](1<<20, 10)
	var loads atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := c.getOrLoad(7, func() (int, int64, error) {
				loads.Add(1)
				<-release
				return 42, 1, nil
			})
			if v != 42 || err != nil {
				t.Errorf("got %d, %v", v, err)
			}
		}()
	}
	// Let the goroutines queue up behind the first loader.
	for loads.Load() == 0 {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	if n := loads.Load(); n != 1 {
		t.Errorf("%d loads for one key, want 1", n)
	}
}

func TestLRULoaderPanicReleasesWaiters(t *testing.T) {
	c := newLRU[int](1<<20, 10)
	started := make(chan struct{})
	release := make(chan struct{})
	go func() {
		defer func() { _ = recover() }()
		_, _ = c.getOrLoad(1, func() (int, int64, error) {
			close(started)
			<-release
			panic("loader bug")
		})
	}()
	<-started
	done := make(chan error)
	go func() {
		_, err := c.getOrLoad(1, func() (int, int64, error) { return 5, 1, nil })
		done <- err
	}()
	close(release)
	// The waiter either joined the panicking load (error) or loaded
	// afresh after it was cleaned up (nil); it must not hang.
	<-done
}

// used sums the cost held by all shards.
func (c *lru[V]) used() int64 {
	total := int64(0)
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		total += s.used
		s.mu.Unlock()
	}
	return total
}
