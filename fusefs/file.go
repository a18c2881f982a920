package fusefs

import (
	"context"
	"errors"
	"io"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// opener is implemented by layers that want to know when a file is open
// (to keep a descriptor, or an unlinked inode, alive): DirLayer, ext3.
type opener interface {
	Open(n Node) error
	Release(n Node) error
}

// seeker is implemented by layers that can find holes (SEEK_DATA/HOLE).
type seeker interface {
	Lseek(n Node, off int64, whence int) (int64, error)
}

// fileHandle is an open file. Data operations go to the node's current
// top inode, so a handle opened before a copy-up sees the copy.
type fileHandle struct {
	n   *node
	ref layerRef // the inode Open was called for
	// track: an image file opened for reading, whose order of reads
	// readahead.go follows unless caller, the opening thread, is ours.
	track  bool
	caller uint32
	seq    seqReads
}

var (
	_ fs.FileReader    = (*fileHandle)(nil)
	_ fs.FileWriter    = (*fileHandle)(nil)
	_ fs.FileReleaser  = (*fileHandle)(nil)
	_ fs.FileFsyncer   = (*fileHandle)(nil)
	_ fs.FileAllocater = (*fileHandle)(nil)
	_ fs.FileLseeker   = (*fileHandle)(nil)
)

// openLayer tells ref's layer that the file is open.
func (u *Union) openLayer(n *node, ref layerRef) (*fileHandle, error) {
	if o, ok := u.layers[ref.l].(opener); ok {
		if err := o.Open(ref.n); err != nil {
			return nil, err
		}
	}
	return &fileHandle{n: n, ref: ref}, nil
}

// Open implements fs.NodeOpener. Opening for writing (or with O_TRUNC)
// copies the file up first; O_TRUNC copies no data. Files that only a
// read-only layer provides keep their page cache across opens.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	u := n.u
	if u.openless.Load() {
		return nil, 0, syscall.ENOSYS // see openless.go
	}
	write := flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0
	if write {
		if u.upper == nil {
			return nil, 0, syscall.EROFS
		}
		limit := int64(-1)
		if flags&syscall.O_TRUNC != 0 {
			limit = 0
		}
		if err := u.copyUp(n, limit); err != nil {
			return nil, 0, n.nodeErrno("open copy-up", err)
		}
	}
	ref := n.top()
	h, err := u.openLayer(n, ref)
	if err != nil {
		return nil, 0, n.nodeErrno("open", err)
	}
	if n.stale() {
		// Resolved by the kernel before a rename or unlink freed its
		// file, whose number the upper has handed to a new one since:
		// this opened that one (a reader would see a file still being
		// written in place of the one renamed over). Asked after the
		// open, as the ext3 upper marks the number reused as it hands
		// it out, before the new file can be opened.
		h.Release(ctx)
		return nil, 0, n.gone()
	}
	var fl uint32
	if ref.l != 0 || u.upper == nil {
		fl = fuse.FOPEN_KEEP_CACHE
		// An O_DIRECT reader bypasses the page cache readahead fills.
		h.track, h.caller = !write && flags&syscall.O_DIRECT == 0, callerPid(ctx)
	}
	return h, fl, 0
}

// Read implements fs.FileReader.
func (h *fileHandle) Read(ctx context.Context, dest []byte,
	off int64) (fuse.ReadResult, syscall.Errno) {
	u := h.n.u
	if h.track {
		h.noteRead(off, len(dest))
	}
	t := h.n.top()
	if x, ok := u.layers[t.l].(extentReader); ok {
		if fd, at, k, ok := x.ReadExtent(t.n, len(dest), off); ok {
			return fuse.ReadResultFd(fd, at, k), 0 // spliced by go-fuse
		}
	}
	k, err := u.layers[t.l].ReadAt(t.n, dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		// Not the good part alone: the kernel takes a short read for
		// the end of the file and shrinks it, so a damaged block after
		// a good one would end the file there, silently.
		return nil, u.toErrno("read", err)
	}
	return fuse.ReadResultData(dest[:k]), 0
}

// writable returns the upper inode of the handle's node, or EBADF when
// the file was not copied up (not opened for writing).
func (h *fileHandle) writable() (Node, syscall.Errno) {
	if !h.n.inUpper() {
		return 0, syscall.EBADF
	}
	return h.n.top().n, 0
}

// Write implements fs.FileWriter.
func (h *fileHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	u := h.n.u
	up, e := h.writable()
	if e != 0 {
		return 0, e
	}
	k, err := u.upper.WriteAt(up, data, off)
	if err != nil && k == 0 {
		return 0, u.toErrno("write", err)
	}
	return uint32(k), 0
}

// Fsync implements fs.FileFsyncer.
func (h *fileHandle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	u := h.n.u
	if !h.n.inUpper() {
		return 0
	}
	return u.toErrno("fsync", u.upper.Fsync(h.n.top().n, flags&1 != 0))
}

// Release implements fs.FileReleaser. The last close of an O_TMPFILE
// file that was never linked removes it from the work directory.
func (h *fileHandle) Release(ctx context.Context) syscall.Errno {
	u := h.n.u
	if tmp := h.n.takeTmp(); tmp != "" {
		u.upper.Unlink(u.opts.WorkDir, tmp)
	}
	if o, ok := h.n.u.layers[h.ref.l].(opener); ok {
		return h.n.u.toErrno("release", o.Release(h.ref.n))
	}
	return 0
}

// Allocate implements fs.FileAllocater.
func (h *fileHandle) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	u := h.n.u
	up, e := h.writable()
	if e != 0 {
		return e
	}
	return u.toErrno("fallocate", u.upper.Fallocate(up, int64(off), int64(size), mode))
}

// Lseek implements fs.FileLseeker for SEEK_DATA and SEEK_HOLE. Layers that
// cannot find holes report the whole file as data.
func (h *fileHandle) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	u := h.n.u
	t := h.n.top()
	if s, ok := u.layers[t.l].(seeker); ok {
		r, err := s.Lseek(t.n, int64(off), int(whence))
		if err != nil {
			return 0, u.toErrno("lseek", err)
		}
		return uint64(r), 0
	}
	a, err := u.layers[t.l].Getattr(t.n)
	if err != nil {
		return 0, u.toErrno("lseek", err)
	}
	if off >= a.Size {
		return 0, syscall.ENXIO
	}
	if whence == unix.SEEK_DATA {
		return off, 0
	}
	return a.Size, 0
}
