package fusefs

import (
	"context"
	"errors"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
)

// Rename implements fs.NodeRenamer, with RENAME_NOREPLACE and
// RENAME_EXCHANGE. Whatever moves is copied up first; a directory that
// lower layers provide is copied up whole (never EXDEV, unlike overlayfs
// without redirect_dir) and marked opaque, and its old name gets a
// whiteout. A directory arriving in a directory that has lower layers is
// marked opaque, so that lower directories of the new name stay hidden.
// Marking a directory opaque drops the whiteouts in it (markOpaque), and
// no name removed from an opaque directory leaves one (lowerHas).
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder,
	newName string, flags uint32) syscall.Errno {
	u := n.u
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	if u.upper == nil {
		return syscall.EROFS
	}
	if flags&^(RenameNoreplace|RenameExchange) != 0 {
		return syscall.EINVAL
	}
	if hiddenName(newName) {
		return syscall.EINVAL
	}
	for try := 0; ; try++ {
		err := u.prepareRename(n, name, np, newName, flags)
		if err == nil {
			unlock := u.lockDirs(n, np)
			err = u.rename(n, name, np, newName, flags)
			unlock()
		}
		if err != errRetry {
			return u.toErrno("rename", err)
		}
		if try == 100 {
			return syscall.EBUSY
		}
	}
}

// errRetry says that a rename found the tree changed between copying up
// what it moves and locking the directories, and must start over.
var errRetry = errors.New("fusefs: rename: tree changed, retry")

// prepareRename copies up, before any directory is locked, what rename
// will need in the upper: both directories, the source (a directory with
// everything below it) and, for an exchange, the destination.
func (u *Union) prepareRename(n *node, name string, np *node, newName string,
	flags uint32) error {
	if err := u.copyUp(n, -1); err != nil {
		return err
	}
	if err := u.copyUp(np, -1); err != nil {
		return err
	}
	if err := u.prepareMove(n, name); err != nil {
		return err
	}
	if flags&RenameExchange != 0 {
		return u.prepareMove(np, newName)
	}
	return nil
}

// prepareMove makes name in dir moveable (see moveable) unless it is
// missing, which rename then reports.
func (u *Union) prepareMove(dir *node, name string) error {
	dir.dir().RLock()
	refs, a, err := u.resolve(dir, name, 0)
	var c *node
	if err == nil {
		c = u.childNode(dir, name, refs, a)
	}
	dir.dir().RUnlock()
	if isErrno(err, syscall.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	return u.moveable(c, dir, name)
}

// ready reports whether refs, a name's layer inodes, can be renamed in
// the upper as they are: in the upper, and a directory there alone.
func ready(refs []layerRef, a Attr) bool {
	return refs[0].l == 0 && (a.Mode&syscall.S_IFMT != syscall.S_IFDIR || len(refs) == 1)
}

// rename does the work of Rename. It returns errRetry if something that
// prepareRename copied up has changed since.
//
// Preconditions: n.dirMu and np.dirMu held for writing (lockDirs).
func (u *Union) rename(n *node, name string, np *node, newName string, flags uint32) error {
	if !n.inUpper() || !np.inUpper() {
		return errRetry
	}
	srcRefs, sa, err := u.resolve(n, name, 0)
	if err != nil {
		return err
	}
	dstRefs, da, derr := u.resolve(np, newName, 0)
	dstExists := derr == nil
	if derr != nil && !isErrno(derr, syscall.ENOENT) {
		return derr
	}
	exchange := flags&RenameExchange != 0
	switch {
	case flags&RenameNoreplace != 0 && dstExists:
		return syscall.EEXIST
	case exchange && !dstExists:
		return syscall.ENOENT
	}
	if !ready(srcRefs, sa) || exchange && !ready(dstRefs, da) {
		return errRetry
	}
	srcDir := sa.Mode&syscall.S_IFMT == syscall.S_IFDIR
	dstDir := dstExists && da.Mode&syscall.S_IFMT == syscall.S_IFDIR
	var dst *node
	if dstExists {
		dst = u.childNode(np, newName, dstRefs, da)
		if dstDir && !exchange {
			// The kernel holds the inode lock of the directory
			// replaced: nothing appears in it meanwhile.
			ents, err := u.list(dst)
			if err != nil {
				return err
			}
			if len(ents) > 0 {
				return syscall.ENOTEMPTY
			}
		}
	}
	srcNeedWh := !exchange && u.lowerHas(n, name)
	src := u.childNode(n, name, srcRefs, sa)
	if !exchange {
		if _, err := u.clearWhiteout(np.top().n, newName); err != nil {
			return err
		}
		if dstDir && dstRefs[0].l == 0 {
			if err := u.cleanUpperDir(dstRefs[0].n); err != nil {
				return err
			}
		}
	}
	if err := u.upper.Rename(n.top().n, name, np.top().n, newName, flags); err != nil {
		return err
	}

	if srcDir && len(np.getRefs()) > 1 {
		if err := u.markOpaque(src.top().n); err != nil {
			return err
		}
		src.setRefs(src.getRefs()[:1])
	}
	if exchange && dstDir && len(n.getRefs()) > 1 {
		if err := u.markOpaque(dst.top().n); err != nil {
			return err
		}
		dst.setRefs(dst.getRefs()[:1])
	}
	if srcNeedWh {
		return u.makeWhiteout(n.top().n, name)
	}
	return nil
}

// moveable copies c, which is name in parent, to the upper so that it
// can be renamed there: a file alone, a directory with everything below
// it unless the upper alone provides it already.
//
// Preconditions: no directory locked.
func (u *Union) moveable(c, parent *node, name string) error {
	a, err := c.attr()
	if err != nil {
		return err
	}
	if a.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		if err := u.treeFits(c); err != nil {
			return err
		}
		return u.copyTree(c, parent, name)
	}
	return u.copyUpIn(c, parent, name, -1)
}
