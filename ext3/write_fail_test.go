package ext3

import (
	"errors"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
)

// fullDev fails large writes (file data, not the few metadata blocks of
// a small commit) while it is armed, as a host file system that runs out
// of space under a sparse image does.
type fullDev struct {
	Device
	armed atomic.Bool
}

func (d *fullDev) WriteAt(p []byte, off int64) (int, error) {
	if len(p) >= 128<<10 && d.armed.Load() {
		return 0, &os.PathError{Op: "write", Path: "image", Err: syscall.ENOSPC}
	}
	return d.Device.WriteAt(p, off)
}

// TestWriteDeviceFull checks that a data write the device refuses leaves
// no blocks mapped past the end of the file: the error reaches the
// caller and e2fsck stays clean.
func TestWriteDeviceFull(t *testing.T) {
	const size = 64 << 20
	img := mkext3(t, size, "-b", "1024")
	fh, err := os.OpenFile(img, os.O_RDWR, 0)
	noErr(t, err)
	defer fh.Close()
	dev := &fullDev{Device: NewSection(fh, 0, size)}
	f, err := Open(dev, size, Options{})
	noErr(t, err)
	a := mustA(t)(f.Create(RootIno, "f", 0o644, 0, 0))
	chunk := make([]byte, 1<<20)
	for off := int64(0); off < 8<<20; off += 1 << 20 {
		_, err := f.WriteAt(a.Ino, chunk, off)
		noErr(t, err)
	}
	dev.armed.Store(true)
	// With 1 KiB blocks the write starts 12 blocks before the end of an
	// indirect block: that run fits under the limit, the next one fails.
	n, err := f.WriteAt(a.Ino, chunk, 8<<20)
	if n >= len(chunk) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write on a full device: %d bytes, %v", n, err)
	}
	if got := mustA(t)(f.Getattr(a.Ino)).Size; got != 8<<20+uint64(n) {
		t.Fatalf("after a failed write of %d bytes: size %d", n, got)
	}
	dev.armed.Store(false)
	noErr(t, f.Close())
	fsck(t, img)
}
