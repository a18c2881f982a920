package fusefs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Creation of new names. Every new name goes to the upper directory (the
// parent is copied up first) and replaces a whiteout of the same name; a
// directory made over a whiteout is opaque, so the whited-out lower
// directory does not reappear in it.

// lockForCreate copies directory n up and write-locks its namespace for
// a new entry name. On success the caller must call n.dir().Unlock.
func (n *node) lockForCreate(name string) error {
	u := n.u
	if u.upper == nil {
		return syscall.EROFS
	}
	if hiddenName(name) {
		// The upper could not show such a name back.
		return syscall.EINVAL
	}
	if err := u.copyUp(n, -1); err != nil {
		return err
	}
	n.dir().Lock()
	return nil
}

// prepareCreate gets directory n ready for a new entry name: name free
// in the union, any whiteout of name removed. It returns the owner for
// the new inode (the caller's, with the gid inherited from a set-gid
// parent) and whether a whiteout was removed.
//
// Preconditions: n.dirMu held for writing (lockForCreate).
func (n *node) prepareCreate(ctx context.Context, name string) (uid, gid uint32,
	hadWhiteout bool, err error) {
	u := n.u
	if _, _, err := u.resolve(n, name, 0); err == nil {
		return 0, 0, false, syscall.EEXIST
	} else if !isErrno(err, syscall.ENOENT) {
		return 0, 0, false, err
	}
	if hadWhiteout, err = u.clearWhiteout(n.top().n, name); err != nil {
		return 0, 0, false, err
	}
	uid, gid = u.ids.caller(ctx)
	if pa, err := n.attr(); err == nil && pa.Mode&syscall.S_ISGID != 0 {
		gid = pa.Gid
	}
	return uid, gid, hadWhiteout, nil
}

// createFailed undoes prepareCreate after the creation of name failed:
// the whiteout it removed goes back, so a deleted lower entry does not
// reappear because a create failed (ENOSPC, a refused owner ...). Only
// where a lower has the name: an opaque directory holds no whiteouts.
//
// Preconditions: n.dirMu held for writing.
func (n *node) createFailed(name string, hadWhiteout bool) {
	if hadWhiteout && n.u.lowerHas(n, name) {
		if err := n.u.makeWhiteout(n.top().n, name); err != nil && n.u.log != nil {
			n.u.log.Warn("fusefs: whiteout lost after a failed create",
				"name", name, "err", err)
		}
	}
}

// created finishes a creation: registers the new upper inode and returns
// its go-fuse inode.
//
// Preconditions: n.dirMu held for writing.
func (n *node) created(ctx context.Context, up Node, a Attr, out *fuse.EntryOut) *fs.Inode {
	n.u.newUpperInode(a.Ino)
	return n.u.newChild(ctx, n, []layerRef{{0, up}}, a, out)
}

// Create implements fs.NodeCreater.
func (n *node) Create(ctx context.Context, name string, flags, mode uint32,
	out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	u := n.u
	if err := n.lockForCreate(name); err != nil {
		return nil, nil, 0, u.toErrno("create", err)
	}
	defer n.dir().Unlock()
	uid, gid, wh, err := n.prepareCreate(ctx, name)
	if err != nil {
		return nil, nil, 0, u.toErrno("create", err)
	}
	up, a, err := u.upper.Create(n.top().n, name, mode&07777, uid, gid)
	if err != nil {
		n.createFailed(name, wh)
		return nil, nil, 0, u.toErrno("create", err)
	}
	ch := n.created(ctx, up, a, out)
	h, err := u.openLayer(ch.Operations().(*node), layerRef{0, up})
	if err != nil {
		// The kernel sees the create fail: the file must not stay.
		u.upper.Unlink(n.top().n, name)
		n.createFailed(name, wh)
		return nil, nil, 0, u.toErrno("create open", err)
	}
	return ch, h, createOpenFlags(flags), 0
}

// createOpenFlags are the FOPEN flags of a file made by Create. A file
// made write-only (tar, cp, dd, pip unpacking) is written straight to the
// layer (FOPEN_DIRECT_IO): each write(2) is one WRITE request, where the
// page cache splits a write that does not start on a page boundary in
// two, and the kernel does not ask for security.capability before every
// write(2) (file_remove_privs; a new file has none): about two requests
// fewer per file of an untar. Nothing can read through a write-only
// descriptor or map it, so the page cache would serve no one; a later
// open for reading gets a cached handle as usual. The kernel then asks
// the server to clear set-id bits (FUSE_WRITE_KILL_SUIDGID, rawfs.go).
func createOpenFlags(flags uint32) uint32 {
	if flags&syscall.O_ACCMODE == syscall.O_WRONLY {
		return fuse.FOPEN_DIRECT_IO
	}
	return 0
}

// Tmpfile implements fs.NodeTmpfiler (open with O_TMPFILE). The file is
// made in the work directory, which the union does not show, and removed
// from there when it is linked into the tree or its last handle closes.
func (n *node) Tmpfile(ctx context.Context, flags, mode uint32,
	out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	u := n.u
	if u.upper == nil {
		return nil, nil, 0, syscall.EROFS
	}
	if u.opts.WorkDir == 0 {
		return nil, nil, 0, syscall.EOPNOTSUPP
	}
	uid, gid := u.ids.caller(ctx)
	if pa, err := n.attr(); err == nil && pa.Mode&syscall.S_ISGID != 0 {
		gid = pa.Gid
	}
	name := u.workName("tmpfile")
	up, a, err := u.upper.Create(u.opts.WorkDir, name, mode&07777, uid, gid)
	if err != nil {
		return nil, nil, 0, u.toErrno("tmpfile", err)
	}
	u.newUpperInode(a.Ino)
	ino := u.inoOf([]layerRef{{0, up}}, a)
	child := u.newNode(ino, []layerRef{{0, up}})
	child.x = &nodeExtra{tmp: name}
	a.Nlink--
	u.fillAttr(ino, a, &out.Attr)
	h, err := u.openLayer(child, layerRef{0, up})
	if err != nil {
		u.upper.Unlink(u.opts.WorkDir, name)
		return nil, nil, 0, u.toErrno("tmpfile open", err)
	}
	st := fs.StableAttr{Mode: syscall.S_IFREG, Ino: ino, Gen: u.genOf(ino)}
	return n.NewInode(ctx, child, st), h, 0, 0
}

// Mkdir implements fs.NodeMkdirer.
func (n *node) Mkdir(ctx context.Context, name string, mode uint32,
	out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	u := n.u
	if err := n.lockForCreate(name); err != nil {
		return nil, u.toErrno("mkdir", err)
	}
	defer n.dir().Unlock()
	uid, gid, wh, err := n.prepareCreate(ctx, name)
	if err != nil {
		return nil, u.toErrno("mkdir", err)
	}
	if pa, err := n.attr(); err == nil && pa.Mode&syscall.S_ISGID != 0 {
		mode |= syscall.S_ISGID
	}
	up, a, err := u.upper.Mkdir(n.top().n, name, mode&07777, uid, gid)
	if err != nil {
		n.createFailed(name, wh)
		return nil, u.toErrno("mkdir", err)
	}
	if wh {
		if err := u.markOpaque(up); err != nil {
			u.upper.Rmdir(n.top().n, name)
			n.createFailed(name, wh)
			return nil, u.toErrno("mkdir opaque", err)
		}
	}
	return n.created(ctx, up, a, out), 0
}

// Mknod implements fs.NodeMknoder.
func (n *node) Mknod(ctx context.Context, name string, mode, dev uint32,
	out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	u := n.u
	if err := n.lockForCreate(name); err != nil {
		return nil, u.toErrno("mknod", err)
	}
	defer n.dir().Unlock()
	uid, gid, wh, err := n.prepareCreate(ctx, name)
	if err != nil {
		return nil, u.toErrno("mknod", err)
	}
	if mode&syscall.S_IFMT == syscall.S_IFCHR && dev == 0 {
		// A 0/0 device would read back as a whiteout.
		n.createFailed(name, wh)
		return nil, syscall.EPERM
	}
	up, a, err := u.upper.Mknod(n.top().n, name, mode, dev, uid, gid)
	if err != nil {
		n.createFailed(name, wh)
		return nil, u.toErrno("mknod", err)
	}
	return n.created(ctx, up, a, out), 0
}

// Symlink implements fs.NodeSymlinker.
func (n *node) Symlink(ctx context.Context, target, name string,
	out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	u := n.u
	if err := n.lockForCreate(name); err != nil {
		return nil, u.toErrno("symlink", err)
	}
	defer n.dir().Unlock()
	uid, gid, wh, err := n.prepareCreate(ctx, name)
	if err != nil {
		return nil, u.toErrno("symlink", err)
	}
	up, a, err := u.upper.Symlink(n.top().n, name, target, uid, gid)
	if err != nil {
		n.createFailed(name, wh)
		return nil, u.toErrno("symlink", err)
	}
	return n.created(ctx, up, a, out), 0
}

// Link implements fs.NodeLinker: the target is copied up and linked in
// the upper, so the link is a real hard link there.
func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string,
	out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	u := n.u
	t, ok := target.(*node)
	if !ok {
		return nil, syscall.EXDEV
	}
	if u.upper != nil && !t.inUpper() {
		if err := u.copyUp(t, -1); err != nil {
			return nil, u.toErrno("link copy-up", err)
		}
	}
	if err := n.lockForCreate(name); err != nil {
		return nil, u.toErrno("link", err)
	}
	defer n.dir().Unlock()
	_, _, wh, err := n.prepareCreate(ctx, name)
	if err != nil {
		return nil, u.toErrno("link", err)
	}
	if !t.inUpper() {
		n.createFailed(name, wh)
		return nil, syscall.ESTALE
	}
	a, err := u.upper.Link(t.top().n, n.top().n, name)
	if err != nil {
		n.createFailed(name, wh)
		return nil, u.toErrno("link", err)
	}
	if tmp := t.takeTmp(); tmp != "" {
		// An O_TMPFILE file got its name: drop the one in work/.
		if err := u.upper.Unlink(u.opts.WorkDir, tmp); err == nil {
			a.Nlink--
		}
	}
	u.fillAttr(t.ino, a, &out.Attr)
	return t.EmbeddedInode(), 0
}

// Readlink implements fs.NodeReadlinker.
func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	t := n.top()
	s, err := n.u.layers[t.l].Readlink(t.n)
	if err != nil {
		return nil, n.nodeErrno("readlink", err)
	}
	return []byte(s), 0
}
