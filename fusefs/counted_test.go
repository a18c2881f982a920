package fusefs

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/husk-project/husk/internal/procs"
)

// The requests a caller waits for are counted in Options.Load: callers
// one at a time do not overlap, callers at once do (what procs.Govern
// sizes the scheduler by), and none is left in flight.
func TestLoadCounted(t *testing.T) {
	f := newFixture(t, 1)
	// A directory for each of the parallel callers below.
	tree(t, f.lowers[0], "d/", "d/f=x", "d0/", "d1/", "d2/", "d3/", "d4/", "d5/", "d6/", "d7/")
	load := procs.NewLoad()
	mnt, _ := f.mount(func(o *Options) { o.Load = load })

	// Missing names, each a LOOKUP of its own.
	for i := range 200 {
		_, _ = os.Stat(filepath.Join(mnt, "d", fmt.Sprint("one-", i)))
	}
	alone := load.Overlaps()
	if alone > 10 {
		t.Errorf("one caller at a time: %d of 200 lookups overlapped", alone)
	}
	// Overlap is of the handlers' own time, a few microseconds a lookup
	// against a round trip's tens: rounds of 8 callers until two met.
	for round := 0; load.Overlaps() == alone; round++ {
		if round == 50 {
			t.Fatalf("8 callers at once, 50 rounds of 1,600 lookups: none overlapped")
		}
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 200 {
					_, _ = os.Stat(filepath.Join(mnt, fmt.Sprint("d", g),
						fmt.Sprint("many-", round, "-", i)))
				}
			})
		}
		wg.Wait()
	}
	if n := load.InFlight(); n != 0 {
		t.Errorf("%d requests in flight after the callers ended", n)
	}
}
