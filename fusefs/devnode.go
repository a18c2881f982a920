package fusefs

import (
	"context"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Device nodes made outside FUSE. The kernel refuses mknod(2) of a char
// or block device to anyone without CAP_MKNOD in the initial user
// namespace before FUSE sees the call, so a rootless --fakeroot container
// cannot make one through the mount. sandbox intercepts those calls
// (seccomp user notification) and makes the node here, through the same
// MKNOD path a FUSE request takes.

// MknodAt makes the node name (mode includes the file type; rdev in the
// kernel's new_encode_dev layout, as FUSE and mknod(2) pass it) in the
// directory whose stable inode number is parentIno, the st_ino the
// kernel reports for it. uid and gid are the caller's fsuid and fsgid as
// the FUSE server sees callers (a FUSE request header's ids): they are
// mapped through the union's IDMap as a request's are. The parent chain
// is copied up, a whiteout of name is replaced, and the kernel's cached
// negative entry for name and the parent's attributes are dropped, so the
// next lookup sees the node.
//
// parentIno must be a directory the kernel holds (the caller has it open
// or as its working directory); otherwise MknodAt returns ENOENT. Errors
// are syscall.Errno values: EEXIST, ENOENT, ENOSPC, EROFS without an
// upper, EPERM for a char 0/0 device (it would read back as a whiteout)
// and for a directory upper of an unprivileged server, whose host
// refuses device nodes.
//
// Finding the parent walks the directories the kernel has cached.
// TODO: index directory nodes by inode number if device nodes are ever
// made often in a large tree; mknod of devices is rare.
func (u *Union) MknodAt(parentIno uint64, name string, mode, rdev, uid, gid uint32) error {
	switch {
	case name == "" || strings.Contains(name, "/"):
		return syscall.EINVAL
	case name == "." || name == "..":
		return syscall.EEXIST
	}
	p := u.dirByIno(parentIno)
	if p == nil {
		return syscall.ENOENT
	}
	ctx := fuse.NewContext(context.Background(),
		&fuse.Caller{Owner: fuse.Owner{Uid: uid, Gid: gid}})
	var out fuse.EntryOut
	// The node go-fuse gets back is not added to the tree: the kernel
	// looks the name up afresh once its negative entry is gone.
	if _, errno := p.Mknod(ctx, name, mode, rdev, &out); errno != 0 {
		return errno
	}
	u.srvMu.Lock()
	mounted := u.server != nil && !u.unmounted
	u.srvMu.Unlock()
	if mounted && !p.Forgotten() {
		p.NotifyEntry(name)
		// The parent's mtime, ctime and size changed.
		p.NotifyContent(0, 0)
	}
	return nil
}

// dirByIno finds the live directory node with stable inode number ino
// among those the kernel has looked up, breadth first from the root.
func (u *Union) dirByIno(ino uint64) *node {
	if u.root.ino == ino {
		return u.root
	}
	queue := []*fs.Inode{u.root.EmbeddedInode()}
	for len(queue) > 0 {
		in := queue[0]
		queue = queue[1:]
		for _, ch := range in.Children() {
			if !ch.IsDir() || ch.Forgotten() {
				continue
			}
			if n, ok := ch.Operations().(*node); ok && n.ino == ino {
				return n
			}
			queue = append(queue, ch)
		}
	}
	return nil
}
