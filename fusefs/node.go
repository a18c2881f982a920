package fusefs

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// layerRef is one layer's inode behind a union node: layer index (0 the
// upper, i+1 the i-th lower) and the layer's handle.
type layerRef struct {
	l int
	n Node
}

// node is one inode of the union. See locking.go for the locks.
type node struct {
	fs.Inode
	u   *Union
	ino uint64 // stable inode number; immutable

	// cuMu makes copy-ups of this node one at a time.
	cuMu sync.Mutex
	// mu guards refs, upGen and x.
	mu sync.Mutex
	// refs are the layer inodes behind this node, top first: for a
	// directory every merged directory down to the first opaque one, for
	// anything else the one that provides it (after a copy-up, the upper
	// copy first and the lower original after it). Never changed in
	// place (getRefs hands out the slice).
	refs []layerRef
	// upGen is the generation of the upper inode on top of refs when it
	// came there, and tok counts the node among that inode's
	// (generation.go).
	upGen uint64
	tok   *upperTok
	// x holds what few nodes need, made on first use (see extra): most
	// nodes are files the kernel looked up, and a walk of a large image
	// keeps one node per name.
	x *nodeExtra
}

// nodeExtra is the part of a node that directories, O_TMPFILE files and
// files read without a handle need.
type nodeExtra struct {
	// dirMu guards the namespace of a directory: held for writing to
	// change a name in it, for reading to look names up or list them.
	dirMu sync.RWMutex
	// tmp is the work-directory name of an O_TMPFILE file that has not
	// been linked into the tree yet, else "".
	tmp string
	// snap is the listing the kernel's handle-less requests read on in
	// (opendir.go), nil when none is being read.
	snap atomic.Pointer[dirSnap]
	// reads are the handles of a file's readers that opened it without
	// OPEN (openless.go).
	reads atomic.Pointer[implicitReads]
}

// Compile-time checks: node implements these go-fuse interfaces.
var (
	_ fs.NodeGetattrer      = (*node)(nil)
	_ fs.NodeSetattrer      = (*node)(nil)
	_ fs.NodeLookuper       = (*node)(nil)
	_ fs.NodeOpendirHandler = (*node)(nil)
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeCreater        = (*node)(nil)
	_ fs.NodeRenamer        = (*node)(nil)
	_ fs.NodeGetxattrer     = (*node)(nil)
	_ fs.NodeStatfser       = (*node)(nil)
)

// attr reads the node's attributes from its top layer.
func (n *node) attr() (Attr, error) {
	t := n.top()
	return n.u.layers[t.l].Getattr(t.n)
}

// fillAttr converts a layer Attr to the kernel's view.
func (u *Union) fillAttr(ino uint64, a Attr, out *fuse.Attr) {
	out.Ino = ino
	out.Mode = a.Mode
	out.Nlink = a.Nlink
	out.Uid = u.ids.uidToServer(a.Uid)
	out.Gid = u.ids.gidToServer(a.Gid)
	out.Size = a.Size
	out.Blocks = a.Blocks
	out.Rdev = a.Rdev
	out.Blksize = 4096
	out.Atime, out.Atimensec = uint64(a.Atime.Sec), a.Atime.Nsec
	out.Mtime, out.Mtimensec = uint64(a.Mtime.Sec), a.Mtime.Nsec
	out.Ctime, out.Ctimensec = uint64(a.Ctime.Sec), a.Ctime.Nsec
}

// Getattr implements fs.NodeGetattrer.
func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	a, err := n.attr()
	if err != nil {
		return n.nodeErrno("getattr", err)
	}
	if n.stale() {
		// Read from the file that took the number of n's (the next
		// replacement of a file renamed over, still being written): a
		// stat by path racing a rename-over saw a size the file never
		// had. Asked after the read, as for Open.
		return n.gone()
	}
	if a.Nlink > 0 && n.tmpName() != "" {
		a.Nlink-- // the work-directory name is not a name in the union
	}
	n.u.fillAttr(n.ino, a, &out.Attr)
	return 0
}

// Setattr implements fs.NodeSetattrer. It copies the node up first; a
// truncation copies only the data that survives it.
func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn,
	out *fuse.AttrOut) syscall.Errno {
	u := n.u
	if u.upper == nil {
		return syscall.EROFS
	}
	if n.stale() {
		return n.gone() // see Open; an open handle keeps a node from going stale
	}
	if n.sameOwner(in) {
		errno := n.Getattr(ctx, f, out)
		out.SetTimeout(u.attrTimeout())
		return errno
	}
	limit := int64(-1)
	if sz, ok := in.GetSize(); ok {
		limit = int64(sz)
	}
	if err := u.copyUp(n, limit); err != nil {
		return n.nodeErrno("setattr copy-up", err)
	}
	var sa SetAttr
	if m, ok := in.GetMode(); ok {
		sa.SetMode, sa.Mode = true, m&07777
	}
	if id, ok := in.GetUID(); ok {
		sa.SetUid, sa.Uid = true, u.ids.uidToContainer(id)
	}
	if id, ok := in.GetGID(); ok {
		sa.SetGid, sa.Gid = true, u.ids.gidToContainer(id)
	}
	if sz, ok := in.GetSize(); ok {
		sa.SetSize, sa.Size = true, sz
	}
	if in.Valid&fuse.FATTR_KILL_SUIDGID != 0 && !sa.SetMode {
		if m, ok := n.killedMode(); ok {
			sa.SetMode, sa.Mode = true, m
		} else if in.Valid&^(fuse.FATTR_KILL_SUIDGID|fuse.FATTR_FH) == 0 {
			errno := n.Getattr(ctx, f, out)
			out.SetTimeout(u.attrTimeout())
			return errno
		}
	}
	now := time.Now()
	if t, ok := in.GetATime(); ok {
		sa.SetAtime, sa.Atime = true, timespec(t)
	} else if in.Valid&fuse.FATTR_ATIME_NOW != 0 {
		sa.SetAtime, sa.Atime = true, timespec(now)
	}
	if t, ok := in.GetMTime(); ok {
		sa.SetMtime, sa.Mtime = true, timespec(t)
	} else if in.Valid&fuse.FATTR_MTIME_NOW != 0 {
		sa.SetMtime, sa.Mtime = true, timespec(now)
	}
	if t, ok := in.GetCTime(); ok {
		sa.SetCtime, sa.Ctime = true, timespec(t)
	}
	a, err := u.upper.Setattr(n.top().n, sa)
	if err != nil {
		return n.nodeErrno("setattr", err)
	}
	u.fillAttr(n.ino, a, &out.Attr)
	// go-fuse times out what Setattr returns at once; the union is the
	// only writer, so the kernel may keep it as long as a GETATTR's.
	out.SetTimeout(u.attrTimeout())
	return 0
}

// sameOwner drops from in an owner or group the file is shown with
// already, and reports whether nothing is left to change. Without
// --fakeroot every file is shown as the user's (IDMap.Squash), and a
// chown -R to oneself had copied each file up and stored the user as its
// owner, so that a later --fakeroot run found root's and _apt's files
// owned by the user.
func (n *node) sameOwner(in *fuse.SetAttrIn) bool {
	uid, setUID := in.GetUID()
	gid, setGID := in.GetGID()
	if !setUID && !setGID {
		return false
	}
	a, err := n.attr()
	if err != nil {
		return false // the change meets it
	}
	was := in.Valid
	if setUID && uid == n.u.ids.uidToServer(a.Uid) {
		in.Valid &^= fuse.FATTR_UID
	}
	if setGID && gid == n.u.ids.gidToServer(a.Gid) {
		in.Valid &^= fuse.FATTR_GID
	}
	if in.Valid != was && a.Mode&syscall.S_IFMT != syscall.S_IFDIR &&
		a.Mode&(syscall.S_ISUID|syscall.S_ISGID) != 0 {
		// A chown clears the set-id bits even so; the layer's chown
		// would have (the kernel leaves it to husk).
		in.Valid |= fuse.FATTR_KILL_SUIDGID
	}
	return in.Valid&^(fuse.FATTR_FH|fuse.FATTR_LOCKOWNER|fuse.FATTR_CTIME) == 0
}

func timespec(t time.Time) Timespec {
	return Timespec{Sec: t.Unix(), Nsec: uint32(t.Nanosecond())}
}

// Getxattr implements fs.NodeGetxattrer.
func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if privateXattr(attr) {
		return 0, syscall.ENODATA
	}
	if systemXattr(attr) {
		return 0, syscall.EOPNOTSUPP
	}
	t := n.top()
	v, err := n.u.layers[t.l].Getxattr(t.n, attr)
	if err != nil {
		return 0, n.nodeErrno("getxattr", err)
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// Listxattr implements fs.NodeListxattrer.
func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	t := n.top()
	names, err := n.u.layers[t.l].Listxattr(t.n)
	if err != nil {
		return 0, n.nodeErrno("listxattr", err)
	}
	var b []byte
	for _, s := range names {
		if n.u.hideTrusted && strings.HasPrefix(s, "trusted.") {
			continue
		}
		if !privateXattr(s) && !systemXattr(s) {
			b = append(append(b, s...), 0)
		}
	}
	if len(dest) < len(b) {
		return uint32(len(b)), syscall.ERANGE
	}
	return uint32(copy(dest, b)), 0
}

// Setxattr implements fs.NodeSetxattrer.
func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if privateXattr(attr) {
		return syscall.EPERM
	}
	if systemXattr(attr) {
		return syscall.EOPNOTSUPP
	}
	return n.changeXattr(func(up Node) error {
		return n.u.upper.Setxattr(up, attr, data, flags)
	})
}

// Removexattr implements fs.NodeRemovexattrer.
func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if privateXattr(attr) {
		return syscall.ENODATA
	}
	if systemXattr(attr) {
		return syscall.EOPNOTSUPP
	}
	return n.changeXattr(func(up Node) error { return n.u.upper.Removexattr(up, attr) })
}

// changeXattr copies the node up and applies change to its upper inode.
func (n *node) changeXattr(change func(Node) error) syscall.Errno {
	u := n.u
	if u.upper == nil {
		return syscall.EROFS
	}
	if n.stale() {
		return n.gone() // see Setattr
	}
	if err := u.copyUp(n, -1); err != nil {
		return n.nodeErrno("xattr copy-up", err)
	}
	return n.nodeErrno("xattr", change(n.top().n))
}

// Statfs implements fs.NodeStatfser: the upper's numbers, or the top
// lower's for a read-only union.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	l := n.u.layers[0]
	if l == nil {
		l = n.u.layers[1]
	}
	s, err := l.Statfs()
	if err != nil {
		return n.u.toErrno("statfs", err)
	}
	*out = fuse.StatfsOut{Blocks: s.Blocks, Bfree: s.Bfree, Bavail: s.Bavail,
		Files: s.Files, Ffree: s.Ffree, Bsize: s.Bsize, NameLen: s.NameLen,
		Frsize: s.Bsize}
	return 0
}
