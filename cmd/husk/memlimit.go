package main

import (
	"os"
	"reflect"
	"runtime"
	"runtime/debug"
	"runtime/metrics"

	"github.com/alecthomas/kong"

	"github.com/husk-project/husk/sandbox"
)

// memoryFloor is the soft limit on the Go heap and runtime of each husk
// process while its live heap is small, unless GOMEMLIMIT says otherwise.
// Stage 1 serves the union for the whole life of the container, and users
// on shared nodes count its RSS. Without a limit the runtime returns freed
// heap pages to the kernel only slowly, and a long untar left stage 1 at
// 66-70 MiB RSS with a live heap near 30 MiB; under a limit of 56 MiB it
// stays near 62 for about 30 ms more of collector CPU in a 3 s untar
// (48 MiB cost 270 ms: the collector runs almost without pause once the
// limit nears the live heap).
const memoryFloor = 56 << 20

// defaultGCPercent is GOGC unless the environment sets it: the heap may
// grow by half its live size between collections, not by all of it. The
// untar allocates about 200 MiB in all, so the collector runs a few more
// times, not continuously, and stage 1's peak fell by 6 MiB.
const defaultGCPercent = 50

// limitMemory applies memoryFloor (see followLiveHeap) and
// defaultGCPercent when the user has set no limit or GOGC. Until
// settleGC, the collector runs only if the heap reaches the soft limit:
// starting a container, the heaps of husk and its stages only grow (the
// parsed flags, the plan, the union's caches filling), and collecting
// them at every half of growth, as GOGC=50 does from 2 MiB on, ran stage
// 1's collector 7 times on the way to 7 MiB. That took `husk exec IMAGE
// true` from 33 to 41 ms on a 2-core machine (medians of 30).
func limitMemory() {
	if _, ok := os.LookupEnv("GOMEMLIMIT"); !ok {
		debug.SetMemoryLimit(memoryFloor)
		afterEachGC(followLiveHeap)
	}
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(-1)
		sandbox.AfterStartup = settleGC
	}
}

// settleGC ends the start-up: from here on the collector runs at
// defaultGCPercent (unless GOGC is set, when it ran so all along).
func settleGC() {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(defaultGCPercent)
	}
}

// followLiveHeap keeps the soft limit at memoryFloor or, when that is
// more, at the heap GOGC lets grow from the live heap plus the runtime's
// own few MiB. A fixed limit would make the collector run nonstop once a
// large tree's nodes outgrow it; this one only makes the runtime hand
// back freed pages sooner, as GOGC paces the collections.
func followLiveHeap() {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return
	}
	live := int64(s[0].Value.Uint64())
	debug.SetMemoryLimit(max(memoryFloor, live+live*defaultGCPercent/100+runtimeSlack))
}

// runtimeSlack is what the Go runtime holds beside the heap (stacks, GC
// metadata, spans): 4-6 MiB in stage 1.
const runtimeSlack = 8 << 20

// afterEachGC calls f after every collection, from the runtime's cleanup
// goroutine: an unreachable object's cleanup runs once the collector has
// found it, and each run arms the next.
func afterEachGC(f func()) {
	p := new([16]byte) // not zero-sized, so that it is a heap object of its own
	runtime.AddCleanup(p, func(struct{}) { f(); afterEachGC(f) }, struct{}{})
}

// startsContainer tells whether the selected command runs a container
// (it has the action flags: exec, run, shell, test, instance start and
// run), whose start-up ends in sandbox.AfterStartup; any other command
// settles the collector at once.
func startsContainer(cmd *kong.Node) bool {
	if cmd == nil || !cmd.Target.IsValid() || cmd.Target.Kind() != reflect.Struct {
		return false
	}
	return cmd.Target.FieldByName("ActionFlags").IsValid()
}
