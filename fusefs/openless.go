package fusefs

import (
	"context"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Files of a read-only union are opened without a round trip. OPEN
// answers ENOSYS, which a kernel that offers FUSE_NO_OPEN_SUPPORT takes as
// "opening files needs no server": it sends no OPEN nor RELEASE again and
// keeps every file's page cache across opens (FOPEN_KEEP_CACHE, which
// files of image layers get anyway). Reading a small file then costs a
// LOOKUP and a READ instead of four requests: importing Python's standard
// modules makes 296 fewer, and reading all of /usr takes a sixth less
// time.
//
// Only a union without an upper layer does it: with one, an open for
// writing must copy the file up first, and an open upper file keeps its
// inode alive after an unlink, both of which need the open. Nor does one
// with a directory layer, which keeps a descriptor per open file rather
// than opening the file for each read.
//
// Requests of files opened this way arrive without a handle, those of
// every process alike. Each thread reading a large file gets a handle of
// its own (implicitHandle), so the readahead of large files
// (readahead.go) follows each reader's order, as it follows each open
// file's. A file too small for readahead keeps nothing, nor does a read
// the union makes itself (its readahead's, which would otherwise take
// the readers' places) or one through an O_DIRECT descriptor, which
// bypasses the page cache readahead fills.

// maxImplicit is how many readers of one file keep their own order; a
// further reader takes over the oldest one's handle (its order is lost,
// not its data).
const maxImplicit = 8

// implicitReads are the handles of a file's handle-less readers.
type implicitReads struct {
	mu   sync.Mutex
	hs   [maxImplicit]*fileHandle
	next int // the slot a new reader takes when all are in use
}

// opensWithoutServer reports whether the union can have files opened
// without OPEN (see above) once the kernel agrees.
func (u *Union) opensWithoutServer() bool {
	if u.upper != nil {
		return false
	}
	for _, l := range u.layers {
		if _, ok := l.(*DirLayer); ok {
			return false
		}
	}
	return true
}

// implicitHandle returns the handle for the handle-less requests of the
// thread of ctx on n: one kept for it when n is large enough to be read
// ahead and the thread is a reader to follow, else a handle for this
// request alone.
func (n *node) implicitHandle(ctx context.Context) *fileHandle {
	pid := callerPid(ctx)
	if a, err := n.attr(); pid == 0 || err != nil || a.Size <= readStreak {
		return &fileHandle{n: n, ref: n.top()}
	}
	x := n.extra()
	r := x.reads.Load()
	if r == nil {
		x.reads.CompareAndSwap(nil, new(implicitReads))
		r = x.reads.Load()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range r.hs {
		if h != nil && h.caller == pid {
			return h
		}
	}
	if n.u.ownThread(pid) {
		return &fileHandle{n: n, ref: n.top()}
	}
	h := &fileHandle{n: n, ref: n.top(), track: true, caller: pid}
	h.seq.asked = true // and it is not ours
	r.hs[r.next] = h
	r.next = (r.next + 1) % maxImplicit
	return h
}

var (
	_ fs.NodeReader  = (*node)(nil)
	_ fs.NodeLseeker = (*node)(nil)
	_ fs.NodeFsyncer = (*node)(nil)
	_ fs.NodeFlusher = (*node)(nil)
)

// Read implements fs.NodeReader: go-fuse asks the node before the handle.
func (n *node) Read(ctx context.Context, f fs.FileHandle, dest []byte,
	off int64) (fuse.ReadResult, syscall.Errno) {
	h, ok := f.(*fileHandle)
	if !ok {
		h = n.implicitHandle(ctx)
	}
	return h.Read(ctx, dest, off)
}

// Lseek implements fs.NodeLseeker. A seek keeps no reader's state, so a
// handle-less one takes no reader's place.
func (n *node) Lseek(ctx context.Context, f fs.FileHandle, off uint64,
	whence uint32) (uint64, syscall.Errno) {
	h, ok := f.(*fileHandle)
	if !ok {
		h = &fileHandle{n: n, ref: n.top()}
	}
	return h.Lseek(ctx, off, whence)
}

// Fsync implements fs.NodeFsyncer. A file opened without a handle is one
// of a read-only union: there is nothing to write back.
func (n *node) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	if h, ok := f.(*fileHandle); ok {
		return h.Fsync(ctx, flags)
	}
	return 0
}

// Flush implements fs.NodeFlusher. Writes go to the layer at once, so
// there is nothing to flush; ENOSYS tells the kernel so, and it stops
// sending FLUSH on every close (one round trip per close saved).
func (n *node) Flush(ctx context.Context, f fs.FileHandle) syscall.Errno {
	return syscall.ENOSYS
}

// ownThread is the package's ownThread, remembering the threads found to
// be this process's: its readahead's requests come from a few of them,
// again and again. A thread id of ours that ended and now names another
// process's thread only goes without readahead.
func (u *Union) ownThread(tid uint32) bool {
	if _, ok := u.ownTids.Load(tid); ok {
		return true
	}
	if !ownThread(tid) {
		return false
	}
	u.ownTids.Store(tid, struct{}{})
	return true
}
