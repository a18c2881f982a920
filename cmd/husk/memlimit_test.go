package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/husk-project/husk/sandbox"
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

// TestStartsContainer: the commands that run a container leave the
// collector to the sandbox's end of start-up; the others settle it at once.
func TestStartsContainer(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"exec", "i.sif", "true"}, true},
		{[]string{"run", "i.sif"}, true},
		{[]string{"shell", "i.sif"}, true},
		{[]string{"test", "i.sif"}, true},
		{[]string{"instance", "start", "i.sif", "web"}, true},
		{[]string{"instance", "run", "i.sif", "web"}, true},
		{[]string{"instance", "list"}, false},
		{[]string{"overlay", "create", "o.img"}, false},
		{[]string{"sif", "list", "i.sif"}, false},
		{[]string{"build", "o.sif", "rootfs"}, false},
		{[]string{"version"}, false},
	} {
		var cli CLI
		p, err := newParser(&cli)
		if err != nil {
			t.Fatal(err)
		}
		ctx, err := p.Parse(c.args)
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		if got := startsContainer(ctx.Selected()); got != c.want {
			t.Errorf("%v: startsContainer %v, want %v", c.args, got, c.want)
		}
	}
}

// TestStartupCollector: limitMemory holds the collector back (the soft
// limit still applies) and settleGC turns it on at defaultGCPercent;
// with GOGC set, the user's value stands throughout.
func TestStartupCollector(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	old, had := os.LookupEnv("GOGC")
	defer func() {
		if had {
			os.Setenv("GOGC", old)
		} else {
			os.Unsetenv("GOGC")
		}
		sandbox.AfterStartup = nil
	}()

	os.Unsetenv("GOGC")
	limitMemory()
	if p := debug.SetGCPercent(-1); p != -1 {
		t.Errorf("GC percent during start-up: %d, want -1 (off)", p)
	}
	if sandbox.AfterStartup == nil {
		t.Fatal("limitMemory left sandbox.AfterStartup unset")
	}
	sandbox.AfterStartup()
	if p := debug.SetGCPercent(-1); p != defaultGCPercent {
		t.Errorf("GC percent after start-up: %d, want %d", p, defaultGCPercent)
	}

	sandbox.AfterStartup = nil
	os.Setenv("GOGC", "200")
	debug.SetGCPercent(200)
	limitMemory()
	settleGC()
	if p := debug.SetGCPercent(200); p != 200 {
		t.Errorf("GC percent with GOGC=200: %d", p)
	}
	if sandbox.AfterStartup != nil {
		t.Error("with GOGC set, limitMemory still defers the collector")
	}
}
