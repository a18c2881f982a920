package fusefs

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"syscall"
)

// Copy-up: making a lower inode writable by copying it to the upper, as
// overlayfs does (Documentation/filesystems/overlayfs.rst, "Non-directories"
// and ovl_copy_up_one in fs/overlayfs/copy_up.c). Parents are copied first.
// The copy is assembled under a temporary name in the work directory and
// renamed into place, so a crash leaves either nothing or a complete copy.

// copyChunk is the unit of data copying; all-zero blocks of zeroBlock
// bytes are skipped so that holes stay holes.
const (
	copyChunk = 1 << 20
	zeroBlock = 4096
)

// copyUp copies node n (and its parents) to the upper, unless it is there
// already. limit >= 0 copies only the first limit bytes of data (for a
// truncation that would drop the rest).
//
// Preconditions: u.upper != nil; no directory locked (see locking.go).
func (u *Union) copyUp(n *node, limit int64) error {
	if n.inUpper() {
		return nil
	}
	name, p := n.Parent()
	if p == nil {
		return fmt.Errorf("fusefs: copy-up of inode %#x: no parent: %w", n.ino, syscall.ESTALE)
	}
	parent, ok := p.Operations().(*node)
	if !ok {
		return fmt.Errorf("fusefs: copy-up of inode %#x: foreign parent", n.ino)
	}
	return u.copyUpIn(n, parent, name, limit)
}

// copyUpIn copies n, which is name in parent, to the upper. The data are
// copied into the work directory with no directory locked; parent is
// locked only to check that name is still n and to rename the copy there.
//
// Preconditions: no directory locked.
func (u *Union) copyUpIn(n, parent *node, name string, limit int64) error {
	if n.inUpper() {
		return nil
	}
	if err := u.copyUp(parent, -1); err != nil {
		return err
	}
	src := n.top() // a lower inode, which stays the top until copied up
	layer := u.layers[src.l]
	a, err := layer.Getattr(src.n)
	if err != nil {
		return fmt.Errorf("copy-up %q: %w", name, err)
	}
	isDir := a.Mode&syscall.S_IFMT == syscall.S_IFDIR
	linked := a.Nlink > 1 && !isDir
	if linked {
		u.linkMu.Lock()
		defer u.linkMu.Unlock()
	}
	n.cuMu.Lock()
	defer n.cuMu.Unlock()
	if n.inUpper() {
		return nil
	}
	key := layerIno{src.l, a.Ino}

	// A second name of a hard-linked lower inode becomes a link.
	if up, ok := u.linkedCopy(key); ok && linked {
		parent.dir().Lock()
		defer parent.dir().Unlock()
		if done, err := u.landing(n, parent, name, src); done || err != nil {
			return err
		}
		pt := u.dirTimes(parent)
		if _, err := u.upper.Link(up, parent.top().n, name); err != nil {
			return fmt.Errorf("copy-up link %q: %w", name, err)
		}
		pt.restore()
		u.landed(n, parent, name, layerRef{0, up})
		return nil
	}

	up, err := u.copyInode(n, parent, name, src, a, limit)
	if err != nil || up == 0 {
		return err
	}
	if linked {
		u.stMu.Lock()
		u.links[key] = up
		u.stMu.Unlock()
		if err := u.linkOtherNames(src, a, up); err != nil {
			return fmt.Errorf("copy-up %q: %w", name, err)
		}
	}
	return nil
}

// landing checks, with parent locked, that name in parent is still the
// lower inode src that n is a copy-up of. It reports done if another node
// of the same inode copied it up meanwhile (n now points at that copy),
// and ESTALE if name went away or is something else now.
//
// Preconditions: parent.dirMu held for writing.
func (u *Union) landing(n, parent *node, name string, src layerRef) (done bool, err error) {
	refs, a, err := u.resolve(parent, name, 0)
	if err != nil {
		return false, fmt.Errorf("copy-up %q: %w", name, syscall.ESTALE)
	}
	if refs[0] == src {
		return false, nil
	}
	if refs[0].l == 0 {
		if ino, ok := u.copiedIno(a.Ino); ok && ino == n.ino {
			n.setRefs(append([]layerRef{refs[0]}, n.getRefs()...))
			return true, nil
		}
	}
	return false, fmt.Errorf("copy-up %q: replaced: %w", name, syscall.ESTALE)
}

// landed points n, and the node the kernel knows as name in parent if
// that is another one, at their new upper inode up.
//
// Preconditions: parent.dirMu held for writing.
func (u *Union) landed(n, parent *node, name string, up layerRef) {
	n.setRefs(append([]layerRef{up}, n.getRefs()...))
	if live := parent.liveChild(name); live != nil && live != n && !live.inUpper() {
		live.setRefs(append([]layerRef{up}, live.getRefs()...))
	}
}

// copyInode copies lower inode src of n (attributes a), which is name in
// parent, into the upper and returns the upper inode, or 0 if another
// node of the same inode did it meanwhile. The copy is assembled in the
// work directory and renamed into place.
func (u *Union) copyInode(n, parent *node, name string, src layerRef, a Attr,
	limit int64) (Node, error) {
	if u.opts.WorkDir == 0 {
		// No work directory: copy in place, with parent locked throughout.
		parent.dir().Lock()
		defer parent.dir().Unlock()
		if done, err := u.landing(n, parent, name, src); done || err != nil {
			return 0, err
		}
		pt := u.dirTimes(parent)
		up, err := u.makeCopy(src, a, parent.top().n, name, limit)
		if err != nil {
			return 0, fmt.Errorf("copy-up %q: %w", name, err)
		}
		pt.restore()
		u.keepCtime(up, a)
		return up, u.register(n, parent, name, up)
	}
	tmpName := u.workName("copyup")
	up, err := u.makeCopy(src, a, u.opts.WorkDir, tmpName, limit)
	if err != nil {
		return 0, fmt.Errorf("copy-up %q: %w", name, err)
	}
	parent.dir().Lock()
	defer parent.dir().Unlock()
	done, err := u.landing(n, parent, name, src)
	pt := u.dirTimes(parent)
	if err == nil && !done {
		err = u.upper.Rename(u.opts.WorkDir, tmpName, parent.top().n, name, 0)
	}
	if err != nil || done {
		u.removeTemp(u.opts.WorkDir, tmpName, a.Mode)
		return 0, err
	}
	pt.restore()
	u.keepCtime(up, a)
	return up, u.register(n, parent, name, up)
}

// keepCtime gives copy up, in place, the change time of the original a:
// copying is no change to the file, and the kernel may still hold the
// original's attributes (a tar that read a directory before it was
// renamed, so copied, said each file "changed as we read it" when the
// copies' came). It is set last, as every step of the copy (the rename
// into place too) sets it again. Failing, it leaves a whole copy with the
// copy's change time.
func (u *Union) keepCtime(up Node, a Attr) {
	u.upper.Setattr(up, SetAttr{SetCtime: true, Ctime: a.Ctime})
}

// savedTimes are a directory's access and modification times.
type savedTimes struct {
	u   *Union
	dir Node
	a   Attr
	ok  bool
}

// dirTimes reads the times of parent's upper directory, so that restore
// can put them back once a copy-up has added its entry: a copy-up changes
// nothing the container sees, and overlayfs keeps the parent's times too
// (ovl_set_timestamps). Left, the parent's new mtime showed after its next
// change (a chmod), in this run and the next.
//
// TODO: a utimes of parent racing the copy-up can be undone by restore;
// overlayfs holds the parent's inode lock over both, husk's Setattr does
// not take dirMu.
//
// Preconditions: parent is in the upper; parent.dirMu held for writing.
func (u *Union) dirTimes(parent *node) savedTimes {
	dir := parent.top().n
	a, err := u.upper.Getattr(dir)
	return savedTimes{u: u, dir: dir, a: a, ok: err == nil}
}

// restore sets the saved times again; failing, the directory keeps the
// time of the copy-up, which is all that is lost.
func (s savedTimes) restore() {
	if s.ok {
		s.u.upper.Setattr(s.dir, SetAttr{SetAtime: true, Atime: s.a.Atime,
			SetMtime: true, Mtime: s.a.Mtime})
	}
}

// register records that upper inode up is the copy of n, so lookups keep
// n's inode number, and points n at it.
//
// Preconditions: parent.dirMu held for writing.
func (u *Union) register(n, parent *node, name string, up Node) error {
	ua, err := u.upper.Getattr(up)
	if err != nil {
		return fmt.Errorf("copy-up %q: %w", name, err)
	}
	u.newUpperInode(ua.Ino)
	u.stMu.Lock()
	u.copied[ua.Ino] = n.ino
	u.stMu.Unlock()
	u.landed(n, parent, name, layerRef{0, up})
	return nil
}

// makeCopy creates the copy under tmpName: inode, data, xattrs, then
// mode and times last, because writing data changes mtime and the
// creation may not set set-id bits.
func (u *Union) makeCopy(src layerRef, a Attr, dir Node, name string, limit int64) (Node, error) {
	layer := u.layers[src.l]
	var up Node
	var err error
	switch a.Mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		up, _, err = u.upper.Mkdir(dir, name, a.Mode&07777, a.Uid, a.Gid)
	case syscall.S_IFREG:
		up, _, err = u.upper.Create(dir, name, a.Mode&07777, a.Uid, a.Gid)
		if err == nil {
			err = u.copyData(layer, src.n, up, a.Size, limit)
		}
	case syscall.S_IFLNK:
		var target string
		if target, err = layer.Readlink(src.n); err == nil {
			up, _, err = u.upper.Symlink(dir, name, target, a.Uid, a.Gid)
		}
	default:
		up, _, err = u.upper.Mknod(dir, name, a.Mode, a.Rdev, a.Uid, a.Gid)
	}
	if err != nil {
		if up != 0 {
			u.removeTemp(dir, name, a.Mode)
		}
		return 0, err
	}
	if err = u.copyXattrs(layer, src.n, up); err == nil {
		// The owner was set at creation: a chown now would drop
		// security.capability and set-id bits again. The change time
		// comes last (keepCtime).
		sa := SetAttr{SetAtime: true, Atime: a.Atime, SetMtime: true, Mtime: a.Mtime}
		if a.Mode&syscall.S_IFMT != syscall.S_IFLNK {
			sa.SetMode, sa.Mode = true, a.Mode&07777
		}
		_, err = u.upper.Setattr(up, sa)
	}
	if err != nil {
		u.removeTemp(dir, name, a.Mode)
		return 0, err
	}
	return up, nil
}

// copyData copies the file's data, leaving holes where the source reads
// as zeros, and sets the final size (which also makes a trailing hole).
func (u *Union) copyData(layer Layer, src, dst Node, size uint64, limit int64) error {
	if limit >= 0 && uint64(limit) < size {
		size = uint64(limit)
	}
	buf := make([]byte, copyChunk)
	for off := uint64(0); off < size; off += copyChunk {
		want := buf[:min(copyChunk, size-off)]
		k, err := layer.ReadAt(src, want, int64(off))
		if err != nil && k < len(want) {
			return fmt.Errorf("read at %d: %w", off, err)
		}
		if k < len(want) {
			return fmt.Errorf("read at %d: short read %d of %d", off, k, len(want))
		}
		for b := 0; b < len(want); b += zeroBlock {
			blk := want[b:min(b+zeroBlock, len(want))]
			if allZero(blk) {
				continue
			}
			if _, err := u.upper.WriteAt(dst, blk, int64(off)+int64(b)); err != nil {
				return fmt.Errorf("write at %d: %w", off+uint64(b), err)
			}
		}
	}
	_, err := u.upper.Setattr(dst, SetAttr{SetSize: true, Size: size})
	return err
}

var zeros [zeroBlock]byte

func allZero(b []byte) bool { return bytes.Equal(b, zeros[:len(b)]) }

// copyXattrs copies every xattr but overlay housekeeping. Namespaces the
// upper refuses (trusted.* or security.* without privilege) are skipped
// with a warning, as fuse-overlayfs does, rather than failing the write
// that caused the copy-up.
func (u *Union) copyXattrs(layer Layer, src, dst Node) error {
	names, err := layer.Listxattr(src)
	if err != nil {
		return err
	}
	for _, x := range names {
		if privateXattr(x) {
			continue
		}
		v, err := layer.Getxattr(src, x)
		if isErrno(err, syscall.ENODATA) {
			continue
		}
		if err != nil {
			return err
		}
		err = u.upper.Setxattr(dst, x, v, 0)
		e := errnoOf(err)
		refused := e == syscall.EPERM || e == syscall.ENOTSUP || e == syscall.EACCES ||
			e == syscall.EINVAL // a v2 file capability inside a user namespace
		if refused && !strings.HasPrefix(x, "user.") {
			if u.log != nil {
				u.log.Warn("fusefs: copy-up skips xattr", slog.String("xattr", x),
					slog.Any("err", err))
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("xattr %s: %w", x, err)
		}
	}
	return nil
}

// removeTemp removes a half-made copy.
func (u *Union) removeTemp(dir Node, name string, mode uint32) {
	if mode&syscall.S_IFMT == syscall.S_IFDIR {
		u.upper.Rmdir(dir, name)
	} else {
		u.upper.Unlink(dir, name)
	}
}

// copyTree copies directory n, which is name in parent, and everything
// below it to the upper, then marks the copy opaque: afterwards the upper
// alone holds the directory, so it can move to a name where other lower
// directories would otherwise merge in (rename of a lower directory). Live
// nodes below are switched to their copies.
//
// Preconditions: no directory locked.
func (u *Union) copyTree(n, parent *node, name string) error {
	was, err := n.attr()
	if err != nil {
		return err
	}
	if err := u.copyUpIn(n, parent, name, -1); err != nil {
		return err
	}
	if refs := n.getRefs(); refs[0].l == 0 && len(refs) == 1 {
		return nil // upper only: nothing below to copy
	}
	n.dir().RLock()
	ents, err := u.list(n)
	n.dir().RUnlock()
	if err != nil {
		return err
	}
	for _, e := range ents {
		n.dir().RLock()
		refs, a, err := u.resolve(n, e.name, 0)
		var child *node
		if err == nil {
			child = u.childNode(n, e.name, refs, a)
		}
		n.dir().RUnlock()
		if isErrno(err, syscall.ENOENT) {
			continue // removed meanwhile
		}
		if err != nil {
			return err
		}
		if a.Mode&syscall.S_IFMT == syscall.S_IFDIR {
			err = u.copyTree(child, n, e.name)
		} else {
			err = u.copyUpIn(child, n, e.name, -1)
		}
		if err != nil {
			return err
		}
	}
	n.dir().Lock()
	defer n.dir().Unlock()
	if err := u.markOpaque(n.top().n); err != nil {
		return err
	}
	n.setRefs(n.getRefs()[:1])
	// Filling the copy and marking it changed its times; the directory
	// itself did not change (see keepCtime).
	_, err = u.upper.Setattr(n.top().n, SetAttr{SetAtime: true, Atime: was.Atime,
		SetMtime: true, Mtime: was.Mtime, SetCtime: true, Ctime: was.Ctime})
	return err
}

// liveChild returns the union node that the kernel knows as name in n.
func (n *node) liveChild(name string) *node {
	if c := n.GetChild(name); c != nil {
		if cn, ok := c.Operations().(*node); ok {
			return cn
		}
	}
	return nil
}
