// Package procs sizes a FUSE server's Go scheduler (GOMAXPROCS) to its
// load while it runs.
//
// A request from a process in the container is a round trip: the caller
// waits while one server goroutine reads the request, handles it and
// writes the reply. A walk, an untar or a pip install is a chain of such
// round trips, one at a time. With more than one P, the Go runtime hands
// such work between threads on different CPUs (a goroutine made runnable
// while a P is idle wakes another thread to look for it), and a wakeup
// across CPUs costs about as much as the request itself. On a 2-core
// machine an untar of 20,000 files into an overlay took 7.0 s so, and
// 4.1 s with one P; with the collector off, still 7.1 s (so not its idle
// workers alone); `find` over 84,000 files, 926 against 844 ms (medians
// of 5 and 7). Parallel work wants the Ps: two readers of the image, or
// one with the readahead reading beside it, were 20-25% slower with one.
//
// So the server runs with one P while requests come one at a time, and
// with all of them once they overlap: the server counts the requests it
// handles in a Load, and Govern, woken by the first overlap, counts for a
// moment. It raises GOMAXPROCS when requests started while others were in
// flight often in that moment (two callers waiting at once: parallel
// readers, many processes, the readahead beside a reader), and lowers it
// again after a few periods without. The runtime's own view does not tell the two
// apart: with one P, goroutines queue for it in a chain of round trips
// too (a reader back from its system call, the collector's cleanups in
// bursts of hundreds), and the server uses most of a CPU either way.
package procs

import (
	"context"
	"runtime"
	"sync/atomic"
	"time"
)

const (
	// watch is how long Govern counts overlaps after the first one, with
	// one P: short, as a burst of a few parallel processes can be over in
	// 100 ms (4 finds of small trees were 9-16% slower while it was 50).
	watch = 10 * time.Millisecond
	// period is how often the load is looked at with more Ps.
	period = 50 * time.Millisecond
	// overlapsBusy is how many requests must start while another is in
	// flight, in a watch or a period, for more Ps. A chain of round trips
	// does not overlap (the requests the kernel sends without waiting are
	// not counted); another process's odd request does, once.
	overlapsBusy = 4
	// idlePeriods is how many periods in a row with fewer overlaps lower
	// GOMAXPROCS again.
	idlePeriods = 4
)

// A Load counts the requests a server is handling, and how many started
// while another was in flight. Make it with NewLoad.
type Load struct {
	inflight atomic.Int64
	overlaps atomic.Uint64
	// kick wakes Govern at the first overlap after a quiet time: it does
	// not tick while requests come one at a time (an idle instance's
	// server would wake 20 times a second for nothing).
	kick chan struct{}
	// wide is set while Govern gives more than one P and so needs no
	// kick: the channel's lock is not taken by every request of a
	// parallel load.
	wide atomic.Bool
}

// NewLoad returns a Load with no request counted.
func NewLoad() *Load { return &Load{kick: make(chan struct{}, 1)} }

// Enter notes that a request started.
func (l *Load) Enter() {
	if l.inflight.Add(1) > 1 {
		l.overlaps.Add(1)
		if !l.wide.Load() {
			select {
			case l.kick <- struct{}{}:
			default:
			}
		}
	}
}

// Leave notes that a request ended.
func (l *Load) Leave() { l.inflight.Add(-1) }

// Overlaps returns how many requests started while another was in flight.
func (l *Load) Overlaps() uint64 { return l.overlaps.Load() }

// InFlight returns how many requests are being handled.
func (l *Load) InFlight() int64 { return l.inflight.Load() }

// Govern runs the policy above on load until ctx ends, then restores the
// GOMAXPROCS it found. max is the most Ps it gives (the GOMAXPROCS in
// force when called, if 0). It does nothing when max is 1.
//
// With one P it sleeps until requests overlap, then counts them for a
// watch; with more it looks at every period until a few in a row were
// quiet.
func Govern(ctx context.Context, load *Load, max int) {
	if max <= 0 {
		max = runtime.GOMAXPROCS(0)
	}
	if max <= 1 || load == nil {
		return
	}
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	procs, idle := 1, 0
	t := time.NewTimer(period)
	defer t.Stop()
	for {
		span := period
		if procs == 1 {
			select {
			case <-ctx.Done():
				return
			case <-load.kick:
			}
			span = watch
		}
		seen := load.overlaps.Load()
		t.Reset(span)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		switch busy := load.overlaps.Load()-seen >= overlapsBusy; {
		case busy && procs == 1:
			procs = max
			load.wide.Store(true)
			runtime.GOMAXPROCS(procs)
		case busy:
			idle = 0
		case procs > 1:
			if idle++; idle >= idlePeriods {
				procs, idle = 1, 0
				runtime.GOMAXPROCS(procs)
				load.wide.Store(false)
			}
		}
		// A kick of the period just counted is stale.
		select {
		case <-load.kick:
		default:
		}
	}
}
