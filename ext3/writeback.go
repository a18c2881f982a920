package ext3

import (
	"os"

	"golang.org/x/sys/unix"
)

// Early write-back of file data.
//
// File data goes straight to the device, which for an image file means
// the host's page cache. On a machine with plenty of memory the host
// starts writing those pages out only much later, so a large sequential
// write followed by fsync would first fill the page cache and only then,
// inside fsync, wait for all of it to reach the disk. Starting the
// write-out of every few MiB of contiguous data as soon as it is written
// lets the disk work while the writer produces the next MiB; fsync then
// waits only for the tail. This changes when data reaches the disk, never
// what reaches it or in which order commits happen: ordered mode still
// rests on the sync at the start of every commit.

// wbChunk is how much contiguous file data is collected before its
// write-out is started.
const wbChunk = 8 << 20

// wbGap is the largest jump forward that still continues a run: the
// indirect blocks a growing file needs sit between its data blocks. The
// range handed on then covers them too, which is harmless.
const wbGap = 64 << 10

// wbQueue bounds the ranges waiting for the write-back goroutine; when it
// is full a range is simply left to the host's own write-back.
const wbQueue = 16

// WritebackStarter is implemented by Devices that can start writing a
// byte range out to stable storage without waiting for it (the
// SYNC_FILE_RANGE_WRITE of sync_file_range(2)). It is only a hint.
type WritebackStarter interface {
	StartWriteback(off, n int64) error
}

// StartWriteback implements WritebackStarter for image files.
func (s *section) StartWriteback(off, n int64) error {
	if err := s.check("write-back", int(min(n, s.size)), off); err != nil {
		return err
	}
	return startWriteback(s.f, s.off+off, n)
}

func startWriteback(f *os.File, off, n int64) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
	})
	if err != nil {
		return err
	}
	return serr
}

// wbRange is a byte range of the device whose write-out should start.
type wbRange struct{ off, n int64 }

// startWritebackLoop starts the write-back goroutine if the device
// supports it; it ends with f.stop. The queue is never closed, and sends
// never block, so a write racing with Close cannot hang or panic.
// Preconditions: called once from open, after f.stop exists.
func (f *FS) startWritebackLoop() {
	ws, ok := f.dev.(WritebackStarter)
	if !ok {
		return
	}
	f.wbq = make(chan wbRange, wbQueue)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			select {
			case <-f.stop:
				return
			case r := <-f.wbq:
				// A failure here is harmless: the next commit's sync
				// writes the data out and reports real I/O errors.
				_ = ws.StartWriteback(r.off, r.n)
			}
		}
	}()
}

// noteWritten records that [off, off+n) of the device now holds file data
// of in, and hands contiguous runs of wbChunk bytes to the write-back
// goroutine. Preconditions: in.mu held exclusively.
func (f *FS) noteWritten(in *inode, off, n int64) {
	if f.wbq == nil {
		return
	}
	if off < in.wbEnd || off > in.wbEnd+wbGap || in.wbEnd == in.wbStart {
		// Not a continuation of the run being collected: start a new
		// one. What was collected so far is left to the host.
		in.wbStart = off
	}
	in.wbEnd = off + n
	if in.wbEnd-in.wbStart < wbChunk {
		return
	}
	select {
	case f.wbq <- wbRange{in.wbStart, in.wbEnd - in.wbStart}:
	default:
	}
	in.wbStart = in.wbEnd
}
