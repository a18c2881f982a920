package main

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// TestFollowLiveHeap: the soft limit stays at memoryFloor while the live
// heap is small and follows it above that, after the collections that
// measure it.
func TestFollowLiveHeap(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(memoryFloor))
	afterEachGC(followLiveHeap)

	// limit collects and waits for the cleanup, which runs on the
	// runtime's own goroutine soon after, to set a limit within [lo, hi].
	limit := func(lo, hi int64) int64 {
		var l int64
		for range 200 {
			runtime.GC()
			time.Sleep(5 * time.Millisecond)
			if l = debug.SetMemoryLimit(-1); l >= lo && l <= hi {
				break
			}
		}
		return l
	}
	if l := limit(memoryFloor, memoryFloor); l != memoryFloor {
		t.Fatalf("limit with a small heap: %d MiB, want %d", l>>20, memoryFloor>>20)
	}
	live := make([][]byte, 64)
	for i := range live {
		live[i] = make([]byte, 1<<20)
	}
	lo, hi := int64(64+32)<<20+runtimeSlack, int64(64+32+16)<<20+runtimeSlack
	if l := limit(lo, hi); l < lo || l > hi {
		t.Errorf("limit with a 64 MiB live heap: %d MiB, want about %d", l>>20, lo>>20)
	}
	runtime.KeepAlive(live)
	if l := limit(memoryFloor, memoryFloor); l != memoryFloor {
		t.Errorf("limit after the heap shrank: %d MiB, want %d", l>>20, memoryFloor>>20)
	}
}
