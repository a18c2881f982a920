package fusefs

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// resolve finds name in directory dir, merging the layers as overlayfs
// does: the topmost entry wins; directories merge with the directories of
// the same name below them until an opaque one; a whiteout ends the
// search. It returns the layer inodes of the result, top first, and the
// top one's attributes. from skips dir's first refs (to ask "what do the
// lower layers have here").
//
// Preconditions: dir.dirMu held, or dir not reachable by others.
func (u *Union) resolve(dir *node, name string, from int) ([]layerRef, Attr, error) {
	if hiddenName(name) {
		return nil, Attr{}, syscall.ENOENT
	}
	var refs []layerRef
	var top Attr
	drefs := dir.getRefs()
	for i := from; i < len(drefs); i++ {
		r := drefs[i]
		layer := u.layers[r.l]
		n, a, err := layer.Lookup(r.n, name)
		if isErrno(err, syscall.ENOENT) {
			if u.hasWhiteoutFile(r.l, r.n, name) {
				break
			}
			continue
		}
		if err != nil {
			return nil, Attr{}, err
		}
		if isWhiteout(a) {
			break
		}
		isDir := a.Mode&syscall.S_IFMT == syscall.S_IFDIR
		if len(refs) == 0 {
			refs, top = []layerRef{{r.l, n}}, a
		} else if isDir {
			refs = append(refs, layerRef{r.l, n})
		} else {
			break
		}
		if !isDir || i == len(drefs)-1 || u.isOpaque(r.l, n) {
			break
		}
	}
	if len(refs) == 0 {
		return nil, Attr{}, syscall.ENOENT
	}
	return refs, top, nil
}

// inoOf is the stable inode number of an inode whose layer inodes are
// refs (top first) and whose top has attributes a.
//
// A skeleton ([MemLayer]) directory that merges with a directory below it
// does not give the number: [Union.Mountpoint] adds such directories
// while the union is mounted, and the number (hence the FUSE node id) of
// a directory the kernel has cached must not change, or the kernel drops
// the dentry and every mount under it.
func (u *Union) inoOf(refs []layerRef, a Attr) uint64 {
	ref := refs[0]
	if _, ok := u.layers[ref.l].(*MemLayer); ok {
		for _, r := range refs[1:] {
			if _, skel := u.layers[r.l].(*MemLayer); skel {
				continue
			}
			if ra, err := u.layers[r.l].Getattr(r.n); err == nil {
				return stableIno(r.l, ra.Ino)
			}
			break
		}
	}
	if ref.l == 0 {
		if ino, ok := u.copiedIno(a.Ino); ok {
			return ino
		}
	}
	return stableIno(ref.l, a.Ino)
}

// newChild makes the go-fuse inode for refs under parent and fills out.
//
// Preconditions: parent.dirMu held.
func (u *Union) newChild(ctx context.Context, parent *node, refs []layerRef, a Attr,
	out *fuse.EntryOut) *fs.Inode {
	return u.newChildIno(ctx, parent, u.inoOf(refs, a), refs, a, out)
}

// newChildIno is newChild with the inode number given.
//
// Preconditions: parent.dirMu held.
func (u *Union) newChildIno(ctx context.Context, parent *node, ino uint64, refs []layerRef,
	a Attr, out *fuse.EntryOut) *fs.Inode {
	n := u.newNode(ino, refs)
	u.fillAttr(ino, a, &out.Attr)
	st := fs.StableAttr{Mode: a.Mode & syscall.S_IFMT, Ino: ino, Gen: u.genOf(ino)}
	return parent.NewInode(ctx, n, st)
}

// Lookup implements fs.NodeLookuper.
func (n *node) Lookup(ctx context.Context, name string,
	out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	u := n.u
	n.dir().RLock()
	refs, a, err := u.resolve(n, name, 0)
	if err == nil && u.upper != nil && refs[0].l != 0 && a.Nlink > 1 &&
		a.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		if _, ok := u.linkedCopy(layerIno{refs[0].l, a.Ino}); ok {
			// Another name of this lower inode was copied up: make this
			// name a link to the copy, as the lower had it.
			n.dir().RUnlock()
			if err := n.linkName(name); err != nil {
				return nil, u.toErrno("lookup link copy-up", err)
			}
			n.dir().RLock()
			refs, a, err = u.resolve(n, name, 0)
		}
	}
	defer n.dir().RUnlock()
	if err != nil {
		return nil, u.toErrno("lookup", err)
	}
	ino := u.inoOf(refs, a)
	if a.Mode&syscall.S_IFMT == syscall.S_IFDIR && n.above(ino) {
		err := fmt.Errorf("directory entry %q links back to its own directory or one "+
			"above it: the image or overlay is damaged", name)
		if e, ok := u.layers[refs[0].l].(interface{ err(error) error }); ok {
			err = e.err(err) // names the image
		}
		return nil, u.toErrno("lookup", err)
	}
	if live := n.liveChild(name); live != nil {
		if sameDir(live.getRefs(), refs, a) {
			// Still the directory the kernel knows: keep its number (and
			// so its node id), whatever layers now back it. A new number
			// would make the kernel drop the dentry and every mount
			// under it.
			ino = live.ino
		}
		if live.ino == ino && live.StableAttr().Gen == u.genOf(ino) {
			// What go-fuse would pick anyway: no new node to throw away.
			u.fillAttr(ino, a, &out.Attr)
			return live.EmbeddedInode(), 0
		}
	}
	return u.newChildIno(ctx, n, ino, refs, a, out), 0
}

// above reports whether the directory numbered ino is n or one of its
// ancestors. A directory has one name, so only a damaged (or hostile)
// image or overlay links one back up; served, it would make the node tree
// a cycle, and every walk up it (go-fuse's paths, the readahead's) endless.
// A tree deeper than a path can name (maxDepth) counts as such too.
func (n *node) above(ino uint64) bool {
	p := n.EmbeddedInode()
	for depth := 0; p != nil; depth++ {
		if p.StableAttr().Ino == ino || depth > maxDepth {
			return true
		}
		_, p = p.Parent()
	}
	return false
}

// sameDir reports whether refs, a directory with attributes a, shares a
// layer directory with old, the refs of a live node.
func sameDir(old, refs []layerRef, a Attr) bool {
	if a.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return false
	}
	for _, o := range old {
		for _, r := range refs {
			if o == r {
				return true
			}
		}
	}
	return false
}

// linkName links name, a lower file whose inode another name copied up,
// to that copy in the upper, as the lower had it.
func (n *node) linkName(name string) error {
	u := n.u
	if err := u.copyUp(n, -1); err != nil {
		return err
	}
	u.linkMu.Lock()
	defer u.linkMu.Unlock()
	n.dir().Lock()
	defer n.dir().Unlock()
	refs, a, err := u.resolve(n, name, 0)
	if err != nil || refs[0].l == 0 {
		return err // gone, or linked meanwhile
	}
	up, ok := u.linkedCopy(layerIno{refs[0].l, a.Ino})
	if !ok {
		return nil
	}
	if _, err := u.upper.Link(up, n.top().n, name); err != nil {
		return fmt.Errorf("link %q: %w", name, err)
	}
	if live := n.liveChild(name); live != nil && !live.inUpper() {
		live.setRefs(append([]layerRef{{0, up}}, live.getRefs()...))
	}
	return nil
}

// mergedEntry is one name of a merged directory listing.
type mergedEntry struct {
	name string
	ino  uint64
	mode uint32
}

// list returns the merged listing of directory n, without "." and "..".
//
// Preconditions: n.dirMu held, or n is being removed (the kernel holds
// its inode lock).
func (u *Union) list(n *node) ([]mergedEntry, error) {
	refs := n.getRefs()
	if len(refs) == 1 {
		return u.listOne(n, refs[0])
	}
	seen := map[string]bool{}
	var out []mergedEntry
	for _, r := range refs {
		layer := u.layers[r.l]
		ents, err := layer.ReadDir(r.n)
		if err != nil {
			return nil, err
		}
		var hide []string
		for _, e := range ents {
			if hiddenName(e.Name) {
				// ".wh.<name>" files hide <name>; the ".wh..opq"
				// char device fuse-overlayfs leaves hides nothing.
				if e.Name != whOpqFile && len(e.Name) > len(whPrefix) &&
					e.Mode&syscall.S_IFMT == syscall.S_IFREG {
					hide = append(hide, e.Name[len(whPrefix):])
				}
				continue
			}
			if seen[e.Name] {
				continue
			}
			if e.Mode&syscall.S_IFMT == syscall.S_IFCHR {
				if a, err := layer.Getattr(e.Node); err == nil && isWhiteout(a) {
					hide = append(hide, e.Name)
					continue
				}
			}
			seen[e.Name] = true
			out = append(out, mergedEntry{e.Name, u.entryIno(n, r, layer, e),
				e.Mode & syscall.S_IFMT})
		}
		for _, h := range hide {
			seen[h] = true
		}
	}
	return out, nil
}

// listOne is list for a directory that one layer provides alone (most
// of an image): nothing to merge, only whiteout machinery to leave out.
func (u *Union) listOne(n *node, r layerRef) ([]mergedEntry, error) {
	layer := u.layers[r.l]
	ents, err := layer.ReadDir(r.n)
	if err != nil {
		return nil, err
	}
	out := make([]mergedEntry, 0, len(ents))
	for _, e := range ents {
		mode := e.Mode & syscall.S_IFMT
		if hiddenName(e.Name) {
			continue
		}
		if mode == syscall.S_IFCHR {
			if a, err := layer.Getattr(e.Node); err == nil && isWhiteout(a) {
				continue
			}
		}
		out = append(out, mergedEntry{e.Name, u.entryIno(n, r, layer, e), mode})
	}
	return out, nil
}

// entryIno is the inode number listed for entry e of layer r in
// directory n: its copy's if it was copied up, that of the directory it
// covers for a skeleton directory, and the live node's if the kernel
// knows the name.
func (u *Union) entryIno(n *node, r layerRef, layer Layer, e Dirent) uint64 {
	ino := stableIno(r.l, e.Ino)
	if r.l == 0 {
		if c, ok := u.copiedIno(e.Ino); ok {
			ino = c
		}
	}
	if _, skel := layer.(*MemLayer); skel && e.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		if refs, a, err := u.resolve(n, e.Name, 0); err == nil {
			ino = u.inoOf(refs, a)
		}
	}
	if live := n.GetChild(e.Name); live != nil {
		ino = live.StableAttr().Ino
	}
	return ino
}

// dirHandle is an open directory: a snapshot of the merged listing taken
// at opendir, in the order of its entries' offsets.
//
// An entry's offset (the cookie telldir returns and the kernel resumes a
// listing from) is a hash of its name, not its place in the snapshot: the
// kernel opens directories without the server (opendir.go), so when two
// processes list one directory while a third changes it, their requests
// reach one handle-less node, a listing that starts over takes a new
// snapshot, and a reader resumes from its offset in one it did not start
// from. An offset that names a position by name means the same place in
// every snapshot, so every name that stays is listed once, as ext4's
// hashed directories do. Two names of one hash in a directory get
// consecutive offsets.
//
// TODO: the offsets use 63 bits; a 32-bit program's telldir cannot hold
// them (ext4 gives such callers 32-bit hashes; FUSE does not tell).
type dirHandle struct {
	n    *node
	snap *dirSnap // nil for a handle opened for fsync only
	pos  int
	gave bool // Readdirent has returned an entry
}

// dirSnap is a listing handles read from: ".", "..", then the names in
// offset order. Handles share it; none changes it.
type dirSnap struct{ ents []fuse.DirEntry }

var (
	_ fs.FileLookuper     = (*dirHandle)(nil)
	_ fs.FileReaddirenter = (*dirHandle)(nil)
	_ fs.FileSeekdirer    = (*dirHandle)(nil)
	_ fs.FileFsyncdirer   = (*dirHandle)(nil)
)

// Fsyncdir implements fs.FileFsyncdirer: programs that fsync a directory
// after creating in it (dpkg, databases) must not see ENOTSUP.
func (h *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	u := h.n.u
	if !h.n.inUpper() {
		return 0
	}
	return u.toErrno("fsyncdir", u.upper.Fsync(h.n.top().n, flags&1 != 0))
}

// OpendirHandle implements fs.NodeOpendirHandler. Directories that no
// writable layer backs have content that only a copy-up (which goes
// through the kernel) can change, so the kernel may cache their listing.
func (n *node) OpendirHandle(ctx context.Context,
	flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	var fl uint32
	if !n.inUpper() {
		fl = fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE
	}
	if flags&openFsync != 0 {
		return &dirHandle{n: n, snap: &dirSnap{}}, fl, 0
	}
	if flags&openContinue != 0 {
		if s := n.extra().snap.Load(); s != nil {
			return &dirHandle{n: n, snap: s}, fl, 0
		}
	}
	s, err := n.snapshot()
	if err != nil {
		return nil, 0, n.u.toErrno("readdir", err)
	}
	if flags&openImplicit != 0 {
		n.extra().snap.Store(s)
	}
	return &dirHandle{n: n, snap: s}, fl, 0
}

// snapshot lists directory n for handles to read.
func (n *node) snapshot() (*dirSnap, error) {
	n.dir().RLock()
	ents, err := n.u.list(n)
	n.dir().RUnlock()
	if err != nil {
		return nil, err
	}
	parentIno := n.ino
	if _, p := n.Parent(); p != nil {
		parentIno = p.StableAttr().Ino
	}
	out := make([]fuse.DirEntry, 0, len(ents)+2)
	out = append(out, fuse.DirEntry{Name: ".", Ino: n.ino, Mode: syscall.S_IFDIR, Off: 1},
		fuse.DirEntry{Name: "..", Ino: parentIno, Mode: syscall.S_IFDIR, Off: 2})
	for _, e := range ents {
		out = append(out, fuse.DirEntry{Name: e.name, Ino: e.ino, Mode: e.mode,
			Off: nameCookie(e.name)})
	}
	named := out[2:]
	slices.SortFunc(named, func(a, b fuse.DirEntry) int { return cmp.Compare(a.Off, b.Off) })
	for i := 1; i < len(named); i++ {
		if named[i].Off <= named[i-1].Off {
			named[i].Off = named[i-1].Off + 1
		}
	}
	return &dirSnap{ents: out}, nil
}

// Readdirent implements fs.FileReaddirenter. go-fuse copies the entry
// it is given, so it gets one of the snapshot's own, not a new one each.
func (h *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	ents := h.snap.ents
	if h.pos >= len(ents) {
		if !h.gave {
			// The kernel's last request of a listing, answered
			// empty (implicitDirs opens a handle for each): the
			// next listing takes a new snapshot.
			h.n.extra().snap.CompareAndSwap(h.snap, nil)
		}
		return nil, 0
	}
	h.gave = true
	h.pos++
	return &ents[h.pos-1], 0
}

// Lookup implements fs.FileLookuper: go-fuse calls it for each name of
// a READDIRPLUS reply, which then carries the name's attributes and node
// so the kernel need not look it up. Only subdirectories are worth it: a
// walk descends into them, but mostly does not stat files (find takes
// their type from the listing), and every name given to the kernel costs
// a kernel inode and a union node for as long as the kernel keeps it.
// Other names are left out of the reply's attributes (node id 0, which
// the kernel skips) and looked up when they are used.
func (h *dirHandle) Lookup(ctx context.Context, name string,
	out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if ents := h.snap.ents; h.pos > 0 && h.pos <= len(ents) {
		if e := ents[h.pos-1]; e.Name == name && e.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			return nil, syscall.ENOENT
		}
	}
	return h.n.Lookup(ctx, name, out)
}

// Seekdir implements fs.FileSeekdirer: a listing resumes after the
// entries whose offsets are off or lower, whether or not one of them is
// off (its name may be gone since).
func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if off >= 1<<63 {
		h.pos = len(h.snap.ents) // past every offset given (and off+1 would wrap)
		return 0
	}
	h.pos, _ = slices.BinarySearchFunc(h.snap.ents, off+1, func(e fuse.DirEntry, o uint64) int {
		return cmp.Compare(e.Off, o)
	})
	return 0
}

// nameCookie is the offset of name in a listing: FNV-1a, in 63 bits (the
// kernel takes offsets as signed), above those of "." and "..".
func nameCookie(name string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= 1099511628211
	}
	return max(h>>1, 3)
}

// Releasedir implements fs.FileReleasedirer.
func (h *dirHandle) Releasedir(ctx context.Context, releaseFlags uint32) {}
