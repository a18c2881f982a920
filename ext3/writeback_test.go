package ext3

import (
	"bytes"
	"os"
	"sync"
	"testing"
	"time"
)

// wbDevice records the write-back hints it is given.
type wbDevice struct {
	Device
	mu     sync.Mutex
	ranges []wbRange
}

func (d *wbDevice) StartWriteback(off, n int64) error {
	d.mu.Lock()
	d.ranges = append(d.ranges, wbRange{off, n})
	d.mu.Unlock()
	return d.Device.(WritebackStarter).StartWriteback(off, n)
}

func (d *wbDevice) got() []wbRange {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]wbRange(nil), d.ranges...)
}

// TestEarlyWriteback checks that a large sequential write hands its data
// to write-back in runs of wbChunk bytes that cover exactly the file's
// blocks (and the indirect blocks between them), that small files are
// left alone, and that the file reads back and e2fsck is clean.
func TestEarlyWriteback(t *testing.T) {
	const size = 256 << 20
	img := mkext3(t, size, "-b", "4096")
	fh, err := os.OpenFile(img, os.O_RDWR, 0)
	noErr(t, err)
	defer fh.Close()
	dev := &wbDevice{Device: NewSection(fh, 0, size)}
	f, err := Open(dev, size, Options{})
	noErr(t, err)

	small := mustA(t)(f.Create(RootIno, "small", 0o644, 0, 0))
	for i := 0; i < 64; i++ {
		_, err := f.WriteAt(small.Ino, make([]byte, 10240), int64(i)*10240)
		noErr(t, err)
	}
	time.Sleep(50 * time.Millisecond)
	if r := dev.got(); len(r) != 0 {
		t.Fatalf("640 KiB file: write-back started for %v", r)
	}

	a := mustA(t)(f.Create(RootIno, "big", 0o644, 0, 0))
	chunk := make([]byte, 1<<20)
	const total = 40 << 20
	for off := int64(0); off < total; off += int64(len(chunk)) {
		for i := range chunk {
			chunk[i] = byte(off>>20) + byte(i)
		}
		_, err := f.WriteAt(a.Ino, chunk, off)
		noErr(t, err)
	}
	var ranges []wbRange
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if ranges = dev.got(); len(ranges) >= total/wbChunk-1 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A run restarts where the file jumps over a group's metadata, so
	// one run's worth may be left to the host.
	if len(ranges) < total/wbChunk-1 || len(ranges) > total/wbChunk {
		t.Fatalf("write-back ranges %v, want %d or %d of about %d bytes", ranges,
			total/wbChunk-1, total/wbChunk, wbChunk)
	}
	// The ranges cover the file's blocks, except up to two runs' worth,
	// and hold nothing else but indirect blocks.
	in, err := f.iget(a.Ino)
	noErr(t, err)
	owned := map[int64]bool{}
	in.mu.RLock()
	for lblk := uint64(0); lblk < total/4096; lblk++ {
		p, err := f.bmap(in, lblk)
		noErr(t, err)
		owned[int64(p)*4096] = true
	}
	for _, p := range []int{indSlot, indSlot + 1} {
		if q := in.blockPtr(p); q != 0 {
			owned[int64(q)*4096] = true
		}
	}
	in.mu.RUnlock()
	f.iput(in)
	covered := 0
	for _, r := range ranges {
		if r.n < wbChunk || r.n > wbChunk+wbGap+1<<20 {
			t.Errorf("range %v: length not about %d", r, wbChunk)
		}
		foreign := 0
		for off := r.off; off < r.off+r.n; off += 4096 {
			if owned[off] {
				covered++
			} else {
				foreign++ // an indirect block below the double indirect one
			}
		}
		if foreign > 8 {
			t.Errorf("range %v: %d blocks that are not the file's", r, foreign)
		}
	}
	if covered < (total-2*wbChunk)/4096 {
		t.Errorf("ranges cover %d file blocks, want at least %d", covered,
			(total-2*wbChunk)/4096)
	}
	noErr(t, f.Fsync(a.Ino, false))
	got := make([]byte, 1<<20)
	for off := int64(0); off < total; off += 1 << 20 {
		_, err := f.ReadAt(a.Ino, got, off)
		noErr(t, err)
		for i := range chunk {
			chunk[i] = byte(off>>20) + byte(i)
		}
		if !bytes.Equal(got, chunk) {
			t.Fatalf("big: MiB at %d reads back wrong", off)
		}
	}
	noErr(t, f.Close())
	fsck(t, img)
}
