package ext3

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// TestSmallCacheConcurrent runs creates, appends and stats from several
// goroutines with a tiny cache and frequent commits, so that blocks are
// evicted right after their commits while inode table readahead runs.
// Every file must end with its own size, and e2fsck must be clean: a
// readahead that brought back a block's contents from before a commit
// would lose inode updates.
func TestSmallCacheConcurrent(t *testing.T) {
	const size = 64 << 20
	img := mkext3(t, size, "-b", "1024", "-N", "8192")
	fh, err := os.OpenFile(img, os.O_RDWR, 0)
	noErr(t, err)
	defer fh.Close()
	f, err := Open(NewSection(fh, 0, size), size, Options{CacheBytes: 64 << 10,
		CommitInterval: 2 * time.Millisecond, TransactionBytes: 32 << 10})
	noErr(t, err)
	const workers, files = 4, 700
	var wg sync.WaitGroup
	errs := make(chan error, workers*2)
	inos := make([][]uint32, workers)
	for w := range workers {
		d := mustA(t)(f.Mkdir(RootIno, fmt.Sprintf("d%d", w), 0o755, 0, 0)).Ino
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range files {
				a, err := f.Create(d, fmt.Sprintf("f%d", i), 0o644, 0, 0)
				if err != nil {
					errs <- err
					return
				}
				inos[w] = append(inos[w], a.Ino)
				for k := range 3 {
					buf := make([]byte, 100+i%50)
					if _, err := f.WriteAt(a.Ino, buf, int64(k*len(buf))); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := range files * 3 {
				f.Getattr(uint32(12 + (i*7919+w*131)%(workers*files)))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	noErr(t, f.Close())
	fsck(t, img)
	g := openImage(t, img, true)
	for w := range workers {
		for i, ino := range inos[w] {
			a, err := g.Getattr(ino)
			noErr(t, err)
			if want := uint64(3 * (100 + i%50)); a.Size != want {
				t.Fatalf("d%d/f%d (inode %d): size %d, want %d", w, i, ino, a.Size, want)
			}
		}
	}
}
