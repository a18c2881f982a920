package fusefs

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/husk-project/husk/internal/detach"
)

// Readahead of large image files. The kernel reads a FUSE file ahead of a
// sequential reader 128 KiB at a time (the readahead limit of a FUSE
// mount's backing device, which a server cannot raise), one or two
// requests in flight: a 1 GiB file is 8,192 round trips, and one core
// copies while the other waits. Once a handle on a file that only an image
// layer provides has been read in order for readStreak bytes, the union
// opens the file itself and asks the kernel to read the next readWindow
// bytes ahead (POSIX_FADV_WILLNEED, see ReadAhead): the kernel then sends
// those READs in the background, up to its limit of those at once, which
// stage 1 serves on every core, into the page cache the reader takes them
// from. Reads the union makes itself are not tracked, so it
// never chases its own readahead. Files of the upper are left alone: an
// open of one without FOPEN_KEEP_CACHE would drop the reader's cache.

const (
	readStreak = 1 << 20  // bytes read in order before readahead starts
	readWindow = 16 << 20 // how far ahead of the reader
)

// seqReads is what a handle knows of its reader's order.
type seqReads struct {
	mu      sync.Mutex
	next    int64 // where an in-order read would start
	run     int64 // bytes read in order so far
	advised int64 // end of the range asked for
	busy    bool  // an advice is in flight
	eof     bool  // advised up to the end of the file
	asked   bool  // own is known
	own     bool  // the reader is this process (see ownThread)
}

// readahead is the union's part: its root, open after the mount, and the
// advices in flight, which Unmount waits for.
type readahead struct {
	mu      sync.Mutex
	root    int  // O_PATH descriptor of the mount point, if hasRoot
	hasRoot bool // false before the mount and after close
	closed  bool
	wg      sync.WaitGroup
	// advised counts the bytes asked for; read by tests.
	advised atomic.Int64
}

// openRoot prepares readahead for the union mounted at dir.
func (r *readahead) openRoot(dir string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
		r.root, r.hasRoot = fd, true
	}
}

// close stops new advices, waits for those in flight and closes the root.
// The server must still be serving: an advice waits for its READs.
func (r *readahead) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.wg.Wait()
	r.mu.Lock()
	if r.hasRoot {
		unix.Close(r.root)
		r.hasRoot = false
	}
	r.mu.Unlock()
}

// noteRead records a read of size bytes at off on h and, when h's reader
// is sequential and near the end of what was asked for, asks for more.
func (h *fileHandle) noteRead(off int64, size int) {
	s := &h.seq
	s.mu.Lock()
	defer s.mu.Unlock()
	end := off + int64(size)
	// The kernel's requests in flight are handled in any order: a read up
	// to a window behind the furthest one, or just past it, continues the
	// run. So does one at the end of what was asked for, where a reader
	// that took all of it from the page cache (those reads never arrive
	// here) asks next, for a whole readahead piece as the kernel does for
	// a sequential reader. A small read there, or one further on, is a
	// reader that jumps (sampling, an index), which must not pull the
	// file in a window at a time.
	contiguous := off+readWindow >= s.next && off <= s.next+raChunk
	frontier := s.advised > 0 && off >= s.advised-raChunk && off <= s.advised+raChunk &&
		int64(size) >= raChunk/2
	if !contiguous && !frontier {
		s.run, s.advised, s.eof = 0, 0, false
	}
	s.run += int64(size)
	s.next = max(s.next, end)
	if s.run < readStreak || s.busy || s.eof || end+readWindow/2 < s.advised {
		return
	}
	// Whether the reader is this process is asked once, here, rather
	// than at every open.
	if !s.asked {
		s.asked, s.own = true, ownThread(h.caller)
	}
	if s.own {
		return
	}
	from := max(s.advised, end)
	to := end + readWindow
	if h.n.u.ra.advise(h, from, to-from) {
		s.advised, s.busy = to, true
	}
}

// advise asks the kernel, in the background, to read length bytes of h's
// file at off into its page cache, and reports whether it started.
func (r *readahead) advise(h *fileHandle, off, length int64) bool {
	r.mu.Lock()
	if r.closed || !r.hasRoot {
		r.mu.Unlock()
		return false
	}
	root := r.root
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		defer func() {
			h.seq.mu.Lock()
			h.seq.busy = false
			h.seq.mu.Unlock()
		}()
		if t := h.n.top(); t.l == 0 && h.n.u.upper != nil {
			// Copied up since: an open of the upper file would drop the
			// page cache, and the readers' data is the upper's now.
			return
		}
		// It opens a file of the mount (see package detach).
		detach.Run(func() { r.adviseNow(h, root, off, length) })
	}()
	return true
}

// adviseNow opens h's file through the mount whose root is root and asks
// for length bytes at off (see advise).
func (r *readahead) adviseNow(h *fileHandle, root int, off, length int64) {
	f, size, err := h.n.openByPath(root)
	if err != nil {
		return
	}
	defer f.Close()
	length = min(length, size-off)
	if length <= 0 {
		h.seq.mu.Lock()
		h.seq.eof = true // the rest is the kernel's
		h.seq.mu.Unlock()
		return
	}
	if ReadAhead(f, off, length) == nil {
		r.advised.Add(length)
	}
}

// raChunk is what one POSIX_FADV_WILLNEED makes the kernel read at most
// of a FUSE file: its readahead limit, 128 KiB.
const raChunk = 128 << 10

// ReadAhead asks the kernel to read length bytes at off of f, a file of a
// FUSE mount, into its page cache without waiting for them. The kernel
// reads no more than its readahead limit for one POSIX_FADV_WILLNEED, so
// it is asked for that much at a time: each is a READ request sent in
// the background, up to the mount's limit of those at once, and the
// server answers them on every core.
func ReadAhead(f *os.File, off, length int64) error {
	for end := off + length; off < end; off += raChunk {
		if err := unix.Fadvise(int(f.Fd()), off, min(raChunk, end-off),
			unix.FADV_WILLNEED); err != nil {
			return err
		}
	}
	return nil
}

// openByPath opens n for reading through the mount whose root is root,
// by the path the kernel last gave it, and returns it and its size; an
// error if that path names another file now.
func (n *node) openByPath(root int) (*os.File, int64, error) {
	p, ok := n.mountPath()
	if !ok {
		return nil, 0, unix.ENOENT
	}
	f, st, err := OpenInMount(root, p)
	if err != nil {
		return nil, 0, err
	}
	if st.Ino != n.ino {
		f.Close()
		return nil, 0, unix.ESTALE
	}
	return f, st.Size, nil
}

// mountPath is the path of n in the mount by the names the kernel last
// gave, or false when it has none: forgotten, or deeper than a path can
// be (go-fuse's Inode.Path would walk a cycle for ever; Lookup keeps the
// tree free of them).
func (n *node) mountPath() (string, bool) {
	var names []string
	size := 0
	for name, p := n.Parent(); p != nil; name, p = p.Parent() {
		if size += len(name) + 1; size > unix.PathMax {
			return "", false
		}
		names = append(names, name)
	}
	if len(names) == 0 {
		return "", false
	}
	slices.Reverse(names)
	return strings.Join(names, "/"), true
}

// OpenInMount opens regular file p (absolute or not) for reading in the
// mount whose root directory is open as root, as a process whose root
// it were would see it: absolute symlinks lead to that root, and no
// other mount (a bind over part of it, /proc) is entered. It never blocks
// on a FIFO. The names may come from an image, so nothing outside the
// mount is opened.
func OpenInMount(root int, p string) (*os.File, *unix.Stat_t, error) {
	how := unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	}
	fd, err := unix.Openat2(root, strings.TrimLeft(p, "/"), &how)
	if err != nil {
		return nil, nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, nil, errNotRegular
	}
	return os.NewFile(uintptr(fd), p), &st, nil
}

// errNotRegular: OpenInMount found something else than a regular file.
var errNotRegular = errors.New("not a regular file")

// callerPid is the thread id FUSE gives for the request of ctx, 0 if none.
func callerPid(ctx context.Context) uint32 {
	if c, ok := fuse.FromContext(ctx); ok {
		return c.Pid
	}
	return 0
}

// ownThread reports whether thread tid is one of this process's: the
// union's own readahead, or a read-ahead of the payload's programs. FUSE
// gives the calling thread's id, which is the process id only for its
// first thread.
func ownThread(tid uint32) bool {
	if int(tid) == os.Getpid() {
		return true
	}
	var st unix.Stat_t
	return unix.Stat("/proc/self/task/"+strconv.Itoa(int(tid)), &st) == nil
}
