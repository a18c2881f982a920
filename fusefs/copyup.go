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
// Preconditions: u.mu held for writing; u.upper != nil.
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

// copyUpIn copies n, which is name in parent, to the upper.
//
// Preconditions: u.mu held for writing.
func (u *Union) copyUpIn(n, parent *node, name string, limit int64) error {
	if n.inUpper() {
		return nil
	}
	if err := u.copyUp(parent, -1); err != nil {
		return err
	}
	dir := parent.top().n
	src := n.top()
	layer := u.layers[src.l]
	a, err := layer.Getattr(src.n)
	if err != nil {
		return fmt.Errorf("copy-up %q: %w", name, err)
	}
	isDir := a.Mode&syscall.S_IFMT == syscall.S_IFDIR
	key := layerIno{src.l, a.Ino}

	// A second name of a hard-linked lower inode becomes a link.
	if up, ok := u.links[key]; ok && !isDir {
		if _, err := u.upper.Link(up, dir, name); err != nil {
			return fmt.Errorf("copy-up link %q: %w", name, err)
		}
		n.refs = append([]layerRef{{0, up}}, n.refs...)
		return nil
	}

	up, err := u.copyInode(src, a, dir, name, limit)
	if err != nil {
		return fmt.Errorf("copy-up %q: %w", name, err)
	}
	ua, err := u.upper.Getattr(up)
	if err != nil {
		return fmt.Errorf("copy-up %q: %w", name, err)
	}
	u.newUpperInode(ua.Ino)
	u.copied[ua.Ino] = n.ino
	n.refs = append([]layerRef{{0, up}}, n.refs...)
	if a.Nlink > 1 && !isDir {
		u.links[key] = up
		if err := u.linkOtherNames(src, a, up); err != nil {
			return fmt.Errorf("copy-up %q: %w", name, err)
		}
	}
	return nil
}

// copyInode writes a copy of lower inode src (attributes a) as name in
// upper directory dir and returns the upper inode.
//
// Preconditions: u.mu held for writing.
func (u *Union) copyInode(src layerRef, a Attr, dir Node, name string, limit int64) (Node, error) {
	tmpDir, tmpName := dir, name
	if u.opts.WorkDir != 0 {
		u.tmpSeq++
		tmpDir, tmpName = u.opts.WorkDir, fmt.Sprintf("#husk-copyup-%d", u.tmpSeq)
	}
	up, err := u.makeCopy(src, a, tmpDir, tmpName, limit)
	if err != nil {
		return 0, err
	}
	if tmpDir != dir || tmpName != name {
		if err := u.upper.Rename(tmpDir, tmpName, dir, name, 0); err != nil {
			u.removeTemp(tmpDir, tmpName, a.Mode)
			return 0, err
		}
	}
	return up, nil
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
		// security.capability and set-id bits again.
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
// Preconditions: u.mu held for writing.
func (u *Union) copyTree(n, parent *node, name string) error {
	if err := u.copyUpIn(n, parent, name, -1); err != nil {
		return err
	}
	if n.top().l == 0 && len(n.refs) == 1 {
		return nil // upper only: nothing below to copy
	}
	ents, err := u.list(n)
	if err != nil {
		return err
	}
	for _, e := range ents {
		refs, a, err := u.resolve(n, e.name, 0)
		if err != nil {
			return err
		}
		child := n.liveChild(e.name)
		if child == nil {
			child = &node{u: u, ino: u.inoOf(refs, a), refs: refs}
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
	if err := u.markOpaque(n.top().n); err != nil {
		return err
	}
	n.refs = n.refs[:1]
	return nil
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
