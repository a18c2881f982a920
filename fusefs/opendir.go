package fusefs

import (
	"container/list"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Directories are opened without a round trip. OPENDIR answers ENOSYS,
// which a kernel that offers FUSE_NO_OPENDIR_SUPPORT (Linux 5.1 and
// later) takes as "opening directories needs no server": it sends no
// OPENDIR nor RELEASEDIR again, and gives every open directory
// FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR, so it keeps each listing it read
// until the directory changes. Every change of the union's namespace goes
// through the kernel (which then drops the listing it kept) or notifies it
// (Mountpoint), so the kept listings stay right, the upper's too. A walk
// then costs READDIRPLUS requests only: two per small directory instead
// of four.
//
// READDIRPLUS then arrives without a file handle. implicitDirs opens one
// itself, through go-fuse's bridge, when a listing starts (offset 0) and
// keeps it while the kernel reads on, so the listing is one snapshot as
// with an open handle; the end of the listing (an empty reply) releases
// it. Handles the kernel stopped reading (a reader that gave up) are
// released when more than maxImplicitDirs are open, or when the kernel
// forgets the directory.

// maxImplicitDirs bounds the handles kept for listings read in part (a
// variable for tests).
var maxImplicitDirs = 64

// implicitDirs wraps the bridge's RawFileSystem.
type implicitDirs struct {
	fuse.RawFileSystem
	server *fuse.Server

	mu   sync.Mutex
	open map[uint64]*list.Element // node id -> *implicitDir, in lru
	lru  list.List                // most recently used at the front
}

// implicitDir is a handle implicitDirs opened for a node.
type implicitDir struct {
	node, fh uint64
	users    int  // requests using fh now
	dropped  bool // out of the map: release when users drops to 0
}

func newImplicitDirs(raw fuse.RawFileSystem) *implicitDirs {
	return &implicitDirs{RawFileSystem: raw, open: map[uint64]*list.Element{}}
}

// Init implements fuse.RawFileSystem.
func (d *implicitDirs) Init(s *fuse.Server) {
	d.server = s
	d.RawFileSystem.Init(s)
}

// noOpendir reports whether the kernel opens directories without OPENDIR
// when it is answered ENOSYS. Older kernels would fail the open instead.
func (d *implicitDirs) noOpendir() bool {
	return d.server != nil && d.server.KernelSettings().Flags&fuse.CAP_NO_OPENDIR_SUPPORT != 0
}

// OpenDir implements fuse.RawFileSystem.
func (d *implicitDirs) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn,
	out *fuse.OpenOut) fuse.Status {
	if d.noOpendir() {
		return fuse.ENOSYS
	}
	return d.RawFileSystem.OpenDir(cancel, in, out)
}

// ReadDirPlus implements fuse.RawFileSystem.
func (d *implicitDirs) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn,
	out *fuse.DirEntryList) fuse.Status {
	if in.Fh != 0 {
		return d.RawFileSystem.ReadDirPlus(cancel, in, out)
	}
	return d.read(cancel, in, out, d.RawFileSystem.ReadDirPlus)
}

// ReadDir implements fuse.RawFileSystem.
func (d *implicitDirs) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn,
	out *fuse.DirEntryList) fuse.Status {
	if in.Fh != 0 {
		return d.RawFileSystem.ReadDir(cancel, in, out)
	}
	return d.read(cancel, in, out, d.RawFileSystem.ReadDir)
}

// read serves a handle-less READDIR(PLUS) from the node's implicit handle.
func (d *implicitDirs) read(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList,
	readdir func(<-chan struct{}, *fuse.ReadIn, *fuse.DirEntryList) fuse.Status) fuse.Status {
	h, st := d.acquire(cancel, &in.InHeader, in.Offset == 0)
	if st != fuse.OK {
		return st
	}
	req := *in
	req.Fh = h.fh
	st = readdir(cancel, &req, out)
	// An empty reply is the end of the listing: the kernel has it all.
	d.release(h, st != fuse.OK || out.Offset == in.Offset)
	return st
}

// Forget implements fuse.RawFileSystem. The kernel knows nothing of the
// handles opened for it, and go-fuse drops a node the kernel forgot
// together with its table of open handles (releasing one later would
// find no node, or another node under a reused id): the node's implicit
// handle goes first. One in use cannot be: the kernel forgets no node a
// request of its is working on.
func (d *implicitDirs) Forget(nodeid, nlookup uint64) {
	d.mu.Lock()
	var idle []*implicitDir
	if e, ok := d.open[nodeid]; ok {
		idle = d.dropLocked(e)
	}
	d.closeAll(idle)
	d.RawFileSystem.Forget(nodeid, nlookup)
}

// FsyncDir implements fuse.RawFileSystem.
func (d *implicitDirs) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	if in.Fh != 0 {
		return d.RawFileSystem.FsyncDir(cancel, in)
	}
	h, st := d.acquire(cancel, &in.InHeader, false)
	if st != fuse.OK {
		return st
	}
	req := *in
	req.Fh = h.fh
	st = d.RawFileSystem.FsyncDir(cancel, &req)
	d.release(h, false)
	return st
}

// acquire returns the node's implicit handle, opening one if there is
// none or fresh is set (a listing that starts over must see the
// directory as it is now).
func (d *implicitDirs) acquire(cancel <-chan struct{}, hdr *fuse.InHeader,
	fresh bool) (*implicitDir, fuse.Status) {
	d.mu.Lock()
	if e, ok := d.open[hdr.NodeId]; ok {
		h := e.Value.(*implicitDir)
		if !fresh {
			h.users++
			d.lru.MoveToFront(e)
			d.mu.Unlock()
			return h, fuse.OK
		}
		d.closeAll(d.dropLocked(e))
	} else {
		d.mu.Unlock()
	}

	var out fuse.OpenOut
	in := fuse.OpenIn{InHeader: *hdr, Flags: syscall.O_RDONLY | syscall.O_DIRECTORY}
	if st := d.RawFileSystem.OpenDir(cancel, &in, &out); st != fuse.OK {
		return nil, st
	}
	h := &implicitDir{node: hdr.NodeId, fh: out.Fh, users: 1}
	d.mu.Lock()
	var idle []*implicitDir
	if e, ok := d.open[hdr.NodeId]; ok {
		// A concurrent reader opened one too: the newer wins.
		idle = append(idle, d.dropLocked(e)...)
	}
	d.open[hdr.NodeId] = d.lru.PushFront(h)
	for d.lru.Len() > maxImplicitDirs {
		idle = append(idle, d.dropLocked(d.lru.Back())...)
	}
	d.closeAll(idle)
	return h, fuse.OK
}

// release ends a request's use of h; done drops h from the map as well.
func (d *implicitDirs) release(h *implicitDir, done bool) {
	d.mu.Lock()
	h.users--
	var idle []*implicitDir
	if done && !h.dropped {
		idle = d.dropLocked(d.open[h.node])
	} else if h.dropped && h.users == 0 {
		idle = []*implicitDir{h}
	}
	d.closeAll(idle)
}

// dropLocked removes e's handle from the map and returns it if no request
// uses it (else the last one releases it). Preconditions: d.mu held.
func (d *implicitDirs) dropLocked(e *list.Element) []*implicitDir {
	h := e.Value.(*implicitDir)
	d.lru.Remove(e)
	delete(d.open, h.node)
	h.dropped = true
	if h.users == 0 {
		return []*implicitDir{h}
	}
	return nil
}

// closeAll unlocks d.mu and releases hs through the bridge.
func (d *implicitDirs) closeAll(hs []*implicitDir) {
	d.mu.Unlock()
	for _, h := range hs {
		d.RawFileSystem.ReleaseDir(&fuse.ReleaseIn{
			InHeader: fuse.InHeader{NodeId: h.node}, Fh: h.fh})
	}
}

// mount is fs.Mount with the bridge wrapped in implicitDirs and rawFS.
func mount(dir string, root fs.InodeEmbedder, opts *fs.Options) (*fuse.Server, error) {
	srv, err := fuse.NewServer(rawFS{newImplicitDirs(fs.NewNodeFS(root, opts))}, dir,
		&opts.MountOptions)
	if err != nil {
		return nil, err
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		// As fs.Mount: a mount that failed ends the serve loop itself.
		return nil, err
	}
	return srv, nil
}
