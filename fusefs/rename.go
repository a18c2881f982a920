package fusefs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
)

// Rename implements fs.NodeRenamer, with RENAME_NOREPLACE and
// RENAME_EXCHANGE. Whatever moves is copied up first; a directory that
// lower layers provide is copied up whole (never EXDEV, unlike overlayfs
// without redirect_dir) and marked opaque, and its old name gets a
// whiteout. A directory arriving in a directory that has lower layers is
// marked opaque, so that lower directories of the new name stay hidden.
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
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.toErrno("rename", u.rename(n, name, np, newName, flags))
}

// rename does the work of Rename.
//
// Preconditions: u.mu held for writing.
func (u *Union) rename(n *node, name string, np *node, newName string, flags uint32) error {
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
	srcDir := sa.Mode&syscall.S_IFMT == syscall.S_IFDIR
	dstDir := dstExists && da.Mode&syscall.S_IFMT == syscall.S_IFDIR
	var dst *node
	if dstExists {
		dst = u.childNode(np, newName, dstRefs, da)
		if dstDir && !exchange {
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
	if err := u.moveable(src, n, name); err != nil {
		return err
	}
	if exchange {
		if err := u.moveable(dst, np, newName); err != nil {
			return err
		}
	}
	if err := u.copyUp(np, -1); err != nil {
		return err
	}
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

	if srcDir && len(np.refs) > 1 {
		if err := u.markOpaque(src.top().n); err != nil {
			return err
		}
		src.refs = src.refs[:1]
	}
	if exchange && dstDir && len(n.refs) > 1 {
		if err := u.markOpaque(dst.top().n); err != nil {
			return err
		}
		dst.refs = dst.refs[:1]
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
// Preconditions: u.mu held for writing.
func (u *Union) moveable(c, parent *node, name string) error {
	a, err := c.attr()
	if err != nil {
		return err
	}
	if a.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		return u.copyTree(c, parent, name)
	}
	return u.copyUpIn(c, parent, name, -1)
}
