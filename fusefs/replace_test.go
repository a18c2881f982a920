package fusefs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A file replaced by rename (write g, rename g over f) while another
// process keeps opening and reading f: every read sees a whole version,
// and the overlay stays consistent. A trial found an open the kernel had
// resolved before the rename arriving after the old file was freed: it
// counted an open of the free inode, whose number the next create then
// took, and the allocator, finding it "in use", refused group after
// group (ENOSPC with most of the image free, bitmaps damaged on disk).
// Opened, the reused number would also have given the reader the next
// file still being written.
func TestReplaceWhileReading(t *testing.T) {
	f := newImageFixture(t, "d/")
	mnt, stop := f.mount()
	const size = 64 << 10
	target, tmp := filepath.Join(mnt, "d", "f"), filepath.Join(mnt, "d", "g")
	must(t, os.WriteFile(target, bytes.Repeat([]byte{'a'}, size), 0o644))

	var done atomic.Bool
	var reads, opens atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				b, err := os.ReadFile(target)
				opens.Add(1)
				if errors.Is(err, fs.ErrNotExist) {
					continue // resolved to the file just replaced: as fuse2fs
				}
				if err != nil {
					errc <- err
					return
				}
				if len(b) != size || bytes.Count(b, b[:1]) != size {
					errc <- fmt.Errorf("read a file that is not a whole version "+
						"(length %d)", len(b))
					return
				}
				reads.Add(1)
			}
		}()
	}
	replaced := 0
	for start := time.Now(); time.Since(start) < 3*time.Second; replaced++ {
		data := bytes.Repeat([]byte{byte('b' + replaced%20)}, size)
		w, err := os.Create(tmp)
		if err == nil {
			// Two writes: a reader given this file too early sees half.
			if _, err = w.Write(data[:size/2]); err == nil {
				_, err = w.Write(data[size/2:])
			}
			if cerr := w.Close(); err == nil {
				err = cerr
			}
		}
		if err == nil {
			err = os.Rename(tmp, target)
		}
		if err != nil {
			t.Errorf("replacement %d: %v", replaced, err)
			break
		}
	}
	done.Store(true)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	t.Logf("%d replacements, %d whole reads of %d opens", replaced, reads.Load(),
		opens.Load())
	stop()
	f.fsck()
}
