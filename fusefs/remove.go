package fusefs

import (
	"context"
	"syscall"
)

// Removal of names. Removing a name that a lower layer also provides
// leaves a whiteout in the upper so that the lower one stays hidden.

// lowerHas reports whether a layer below dir's upper directory provides
// name, i.e. whether removing name from the upper needs a whiteout.
//
// Preconditions: dir.dirMu held.
func (u *Union) lowerHas(dir *node, name string) bool {
	from := 0
	if dir.inUpper() {
		from = 1
	}
	_, _, err := u.resolve(dir, name, from)
	return err == nil
}

// childNode returns the live node of name in dir or, when the kernel
// has none, a detached one with the given refs.
func (u *Union) childNode(dir *node, name string, refs []layerRef, a Attr) *node {
	if c := dir.liveChild(name); c != nil {
		return c
	}
	return u.newNode(u.inoOf(refs, a), refs)
}

// Unlink implements fs.NodeUnlinker.
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	u := n.u
	if u.upper == nil {
		return syscall.EROFS
	}
	if err := u.copyUp(n, -1); err != nil {
		return u.toErrno("unlink copy-up", err)
	}
	n.dir().Lock()
	defer n.dir().Unlock()
	refs, a, err := u.resolve(n, name, 0)
	if err != nil {
		return u.toErrno("unlink", err)
	}
	if a.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		return syscall.EISDIR
	}
	return u.toErrno("unlink", u.remove(n, name, refs[0], false))
}

// Rmdir implements fs.NodeRmdirer.
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	u := n.u
	if u.upper == nil {
		return syscall.EROFS
	}
	if err := u.copyUp(n, -1); err != nil {
		return u.toErrno("rmdir copy-up", err)
	}
	n.dir().Lock()
	defer n.dir().Unlock()
	refs, a, err := u.resolve(n, name, 0)
	if err != nil {
		return u.toErrno("rmdir", err)
	}
	if a.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return syscall.ENOTDIR
	}
	ents, err := u.list(u.childNode(n, name, refs, a))
	if err != nil {
		return u.toErrno("rmdir", err)
	}
	if len(ents) > 0 {
		return syscall.ENOTEMPTY
	}
	return u.toErrno("rmdir", u.remove(n, name, refs[0], true))
}

// remove takes name (whose top inode is top) out of directory n: from the
// upper if it is there, and hidden by a whiteout if a lower has it.
//
// Preconditions: n copied up; n.dirMu held for writing.
func (u *Union) remove(n *node, name string, top layerRef, isDir bool) error {
	needWh := u.lowerHas(n, name)
	dir := n.top().n
	if top.l == 0 {
		var err error
		if isDir {
			if err = u.cleanUpperDir(top.n); err == nil {
				err = u.upper.Rmdir(dir, name)
			}
		} else {
			err = u.upper.Unlink(dir, name)
		}
		if err != nil {
			return err
		}
	}
	if needWh {
		return u.makeWhiteout(dir, name)
	}
	return nil
}
