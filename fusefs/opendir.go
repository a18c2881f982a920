package fusefs

import (
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/husk-project/husk/internal/detach"
	"github.com/husk-project/husk/internal/procs"
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
// READDIRPLUS then arrives without a file handle, and requests of every
// process listing the directory come to its node alike. implicitDirs
// opens a handle through go-fuse's bridge for each such request and
// releases it after: go-fuse keeps state in a handle between requests
// (the offset it stopped at, the entries of its last reply, one that did
// not fit), which is one reader's and wrong for another. The listing
// itself is a snapshot kept with the node (dirSnap): a request that
// starts a listing (offset 0) takes a new one, as an open handle would,
// and the following requests read on in it; the last, answered empty,
// drops it. Offsets are hashes of the names (see dirHandle), so a request
// that finds a newer snapshot, or none, resumes at the same place.

// Flags implicitDirs sets on the opens it makes, which Linux open flags
// never use: the open is implicitDirs's; it continues a listing, so the
// node's snapshot serves if it has one (openContinue); it is for fsync,
// which needs no listing (openFsync).
const (
	openImplicit = 1 << 30
	openContinue = 1 << 29
	openFsync    = 1 << 28
)

// implicitDirs wraps the bridge's RawFileSystem.
type implicitDirs struct {
	fuse.RawFileSystem
	server *fuse.Server
}

func newImplicitDirs(raw fuse.RawFileSystem) *implicitDirs {
	return &implicitDirs{RawFileSystem: raw}
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

// read serves a handle-less READDIR(PLUS) through a handle of its own.
func (d *implicitDirs) read(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList,
	readdir func(<-chan struct{}, *fuse.ReadIn, *fuse.DirEntryList) fuse.Status) fuse.Status {
	cont := uint32(0)
	if in.Offset != 0 {
		cont = openContinue
	}
	fh, st := d.open(cancel, &in.InHeader, cont)
	if st != fuse.OK {
		return st
	}
	req := *in
	req.Fh = fh
	st = readdir(cancel, &req, out)
	d.release(in.NodeId, fh)
	return st
}

// FsyncDir implements fuse.RawFileSystem.
func (d *implicitDirs) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	if in.Fh != 0 {
		return d.RawFileSystem.FsyncDir(cancel, in)
	}
	fh, st := d.open(cancel, &in.InHeader, openFsync)
	if st != fuse.OK {
		return st
	}
	req := *in
	req.Fh = fh
	st = d.RawFileSystem.FsyncDir(cancel, &req)
	d.release(in.NodeId, fh)
	return st
}

// open opens a handle on the node of hdr, for what the flags in how say.
func (d *implicitDirs) open(cancel <-chan struct{}, hdr *fuse.InHeader,
	how uint32) (uint64, fuse.Status) {
	var out fuse.OpenOut
	in := fuse.OpenIn{InHeader: *hdr,
		Flags: syscall.O_RDONLY | syscall.O_DIRECTORY | openImplicit | how}
	if st := d.RawFileSystem.OpenDir(cancel, &in, &out); st != fuse.OK {
		return 0, st
	}
	return out.Fh, fuse.OK
}

func (d *implicitDirs) release(node, fh uint64) {
	d.RawFileSystem.ReleaseDir(&fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: node}, Fh: fh})
}

// mount is fs.Mount with the bridge wrapped in implicitDirs and rawFS, and
// in counted when load is set.
func mount(dir string, root fs.InodeEmbedder, opts *fs.Options,
	load *procs.Load) (*fuse.Server, error) {
	var raw fuse.RawFileSystem = rawFS{newImplicitDirs(fs.NewNodeFS(root, opts))}
	if load != nil {
		raw = counted{raw, load}
	}
	srv, err := fuse.NewServer(raw, dir, &opts.MountOptions)
	if err != nil {
		return nil, err
	}
	go srv.Serve()
	// WaitMount opens and polls a file of the mount (go-fuse's probe that
	// makes the kernel stop asking for POLL): see package detach.
	detach.Run(func() { err = srv.WaitMount() })
	if err != nil {
		// As fs.Mount: a mount that failed ends the serve loop itself.
		return nil, err
	}
	return srv, nil
}
