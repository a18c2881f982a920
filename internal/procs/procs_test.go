package procs

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"
)

func TestLoadCountsOverlaps(t *testing.T) {
	l := NewLoad()
	// A chain: each request ends before the next starts.
	for range 10 {
		l.Enter()
		l.Leave()
	}
	if n := l.overlaps.Load(); n != 0 {
		t.Errorf("a chain of 10 requests: %d overlaps, want 0", n)
	}
	// Three at once: the second and the third overlap.
	l.Enter()
	l.Enter()
	l.Enter()
	l.Leave()
	l.Leave()
	l.Leave()
	if n := l.overlaps.Load(); n != 2 {
		t.Errorf("three requests at once: %d overlaps, want 2", n)
	}
	if n := l.inflight.Load(); n != 0 {
		t.Errorf("%d requests in flight after all left", n)
	}
}

// Govern runs the server on one P while requests come one at a time,
// gives it every P while they overlap, takes them back once they stop,
// and leaves GOMAXPROCS as it found it.
func TestGovern(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	l := NewLoad()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { Govern(ctx, l, 0) })

	waitProcs(t, 1, "at the start")
	// A chain of requests keeps one P.
	stop := chain(l, 0)
	time.Sleep(4 * period)
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Errorf("a chain of requests: GOMAXPROCS %d, want 1", n)
	}
	stop()

	// Two callers at once, for as long as it takes to notice.
	l.Enter()
	stop = chain(l, 100*time.Microsecond)
	waitProcs(t, 4, "with requests overlapping")
	stop()
	l.Leave()
	waitProcs(t, 1, "once they stopped")

	cancel()
	wg.Wait()
	if n := runtime.GOMAXPROCS(0); n != 4 {
		t.Errorf("after Govern: GOMAXPROCS %d, want 4 as before", n)
	}
}

// chain makes requests on l one after the other, pause apart, until the
// function it returns is called (which waits for the last to end).
func chain(l *Load, pause time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			l.Enter()
			l.Leave()
			time.Sleep(pause)
		}
	})
	return func() { close(done); wg.Wait() }
}

// waitProcs waits until GOMAXPROCS is n, for up to 100 periods.
func waitProcs(t *testing.T, n int, when string) {
	t.Helper()
	for range 100 {
		if runtime.GOMAXPROCS(0) == n {
			return
		}
		time.Sleep(period)
	}
	t.Fatalf("%s: GOMAXPROCS %d, want %d", when, runtime.GOMAXPROCS(0), n)
}
