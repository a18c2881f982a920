package ext3

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Regression tests for the crash bugs TestCrashKill found (fixed in
// f9bec98). Each one takes the image as a SIGKILL would leave it (every
// WriteAt done so far, nothing more) by copying the image file while the
// FS is still open, then opens the copy, which replays the journal, and
// checks a file whose fsync returned.

// crashSnapshot copies img as it is now on the device.
func crashSnapshot(t *testing.T, img string) string {
	t.Helper()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "killed.img")
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}

// crashOpenFile opens img with an FS on dev (nil: the file itself).
func crashOpenFile(t *testing.T, img string, wrap func(Device) Device) *FS {
	t.Helper()
	fh, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fh.Close() })
	st, err := fh.Stat()
	if err != nil {
		t.Fatal(err)
	}
	dev := NewSection(fh, 0, st.Size())
	if wrap != nil {
		dev = wrap(dev)
	}
	f, err := Open(dev, st.Size(), Options{CommitInterval: time.Hour})
	if err != nil {
		t.Fatalf("open %s: %v", img, err)
	}
	return f
}

// crashExpectFile opens the killed image, checks that path holds want,
// closes it and runs e2fsck.
func crashExpectFile(t *testing.T, img, name string, want []byte) {
	t.Helper()
	f := crashOpenFile(t, img, nil)
	a, err := f.Lookup(RootIno, name)
	if err != nil {
		t.Fatalf("after the kill, lookup of synced file %s: %v", name, err)
	}
	got := make([]byte, a.Size)
	f.ReadAt(a.Ino, got, 0)
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Errorf("after the kill, synced file %s (%d bytes) has %d bytes, first "+
			"difference at byte %d", name, len(want), len(got), i)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	fsck(t, img)
}

// Bug (fixed): Setattr to a smaller size zeroes the tail of the new last block
// on the device at once, while the size change waits for the next
// commit. A kill before that commit leaves the old size with zeros in
// [new size, end of block) of a file whose fsync returned.
// Found as: run 81, obj 0, synced 13373 bytes, then trunc to 3966 and
// killed: bytes 3966-4095 read as zeros.
func TestCrashBugTruncateZeroesTailBeforeCommit(t *testing.T) {
	img := mkfsImage(t, "mkfs.ext3", 8192, "-b", "1024")
	f := crashOpenFile(t, img, nil)
	a, err := f.Create(RootIno, "f", 0o644, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	data := crashData(1, 13373)
	if _, err := f.WriteAt(a.Ino, data, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Fsync(a.Ino, false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Setattr(a.Ino, SetAttr{SetSize: true, Size: 3966}); err != nil {
		t.Fatal(err)
	}
	killed := crashSnapshot(t, img)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	crashExpectFile(t, killed, "f", data)
}

// gateDev blocks the first Sync after arm until release is closed, so a
// test can act while a commit is in flight.
type gateDev struct {
	Device
	mu      sync.Mutex
	armed   bool
	blocked chan struct{}
	release chan struct{}
}

func (g *gateDev) Sync() error {
	g.mu.Lock()
	armed := g.armed
	g.armed = false
	g.mu.Unlock()
	if armed {
		close(g.blocked)
		<-g.release
	}
	return g.Device.Sync()
}

// Bug (fixed): commit applied the pending frees to the bitmaps and then
// wrote the transaction without the op lock. While it was in flight, an
// allocation could hand out a block that transaction freed, and WriteAt
// wrote file data to it at once. A kill before the commit block is
// durable brings back the old owner, now holding the new file's data.
// Found as: e2fsck "Directory inode 2049, block #0, offset 0: directory
// corrupted" (a removed directory's block held an orphan's data) and
// synced files with zeros or foreign bytes in the middle.
func TestCrashBugAllocDuringCommitReusesFreedBlock(t *testing.T) {
	img := mkfsImage(t, "mkfs.ext3", 8192, "-b", "1024")
	gate := &gateDev{blocked: make(chan struct{}), release: make(chan struct{})}
	f := crashOpenFile(t, img, func(d Device) Device { gate.Device = d; return gate })
	a, err := f.Create(RootIno, "a", 0o644, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	dataA := crashData(1, 64<<10)
	if _, err := f.WriteAt(a.Ino, dataA, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Fsync(a.Ino, false); err != nil {
		t.Fatal(err)
	}
	// A second synced file that is later unlinked: its blocks are freed
	// by the transaction that will be in flight.
	victim, err := f.Create(RootIno, "victim", 0o644, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(victim.Ino, crashData(2, 64<<10), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Fsync(victim.Ino, false); err != nil {
		t.Fatal(err)
	}
	if err := f.Unlink(RootIno, "victim"); err != nil {
		t.Fatal(err)
	}
	if err := f.Unlink(RootIno, "a"); err != nil {
		t.Fatal(err)
	}
	gate.mu.Lock()
	gate.armed = true
	gate.mu.Unlock()
	synced := make(chan error, 1)
	go func() { synced <- f.Sync() }()
	<-gate.blocked // the unlinks' commit is in flight, its commit block not written

	wrote := make(chan error, 1)
	go func() {
		b, err := f.Create(RootIno, "b", 0o644, 0, 0)
		if err == nil {
			_, err = f.WriteAt(b.Ino, crashData(3, 128<<10), 0)
		}
		wrote <- err
	}()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Second):
		// The write waits for the commit: that is the fix.
	}
	killed := crashSnapshot(t, img)
	close(gate.release)
	if err := <-synced; err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// The unlinks never committed in the killed image: a is back, with
	// its synced content.
	crashExpectFile(t, killed, "a", dataA)
}
