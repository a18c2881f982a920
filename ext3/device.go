package ext3

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Device is the block device an FS lives on: an image file, or a window of
// one (a SIF partition). Reads and writes use byte offsets relative to the
// start of the file system.
type Device interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
}

// section is a Device limited to [off, off+size) of a file.
type section struct {
	f         *os.File
	off, size int64
}

// NewSection returns a Device for [off, off+size) of f. Reads and writes that
// leave the window fail, so a bug or a corrupt block number can never touch
// bytes outside the partition (the SIF header, other partitions).
func NewSection(f *os.File, off, size int64) Device {
	return &section{f: f, off: off, size: size}
}

func (s *section) check(op string, n int, off int64) error {
	if off < 0 || int64(n) > s.size || off > s.size-int64(n) {
		return fmt.Errorf("ext3: %s of %d bytes at offset %d outside the %d-byte partition",
			op, n, off, s.size)
	}
	return nil
}

func (s *section) ReadAt(p []byte, off int64) (int, error) {
	if err := s.check("read", len(p), off); err != nil {
		return 0, err
	}
	return s.f.ReadAt(p, s.off+off)
}

func (s *section) WriteAt(p []byte, off int64) (int, error) {
	if err := s.check("write", len(p), off); err != nil {
		return 0, err
	}
	return s.f.WriteAt(p, s.off+off)
}

// Sync flushes the file's data and the metadata needed to read it back
// (fdatasync): the image's timestamps do not matter for durability.
func (s *section) Sync() error {
	rc, err := s.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fdatasync(int(fd)) }); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "fdatasync", Path: s.f.Name(), Err: serr}
	}
	return nil
}
