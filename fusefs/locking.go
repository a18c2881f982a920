package fusefs

import "sync"

// Locking. There is no union-wide lock: lookups, listings and data
// transfer in different directories never wait for each other, and a
// copy-up holds its parent directory only while the finished copy is
// renamed into place.
//
// The locks, in the order they are taken (a thread holding one may take
// those below it, never those above):
//
//  1. Union.linkMu: copy-ups of hard-linked lower files, one at a time,
//     and the index of their names.
//  2. node.cuMu: the copy-up of that node. A copy-up holding a file's
//     cuMu may take the cuMu of directories (its parents, the parents of
//     the other names of a hard-linked file), never the reverse.
//  3. Union.renameMu: a rename between two directories (as the kernel's
//     s_vfs_rename_mutex), the only thing that holds two directory locks.
//  4. node.dir(), a directory's dirMu: its namespace. Written by
//     whatever adds or removes a name in it (create, remove, rename, a
//     copy-up landing there), read by lookups and listings, so that
//     nobody sees, and the kernel caches, a half-made change. A thread holds at most one, but
//     for a rename between two directories, which takes them under
//     renameMu, an ancestor before its descendants.
//  5. node.mu and Union.stMu: leaves, held for a few instructions.
//
// Nobody waits for a cuMu or linkMu while holding a dirMu: operations
// copy up what they need before they lock directories, and check under
// the lock that it still holds (a rename starts over if not). The inode
// being removed or replaced (rmdir, rename over a directory) is not
// locked: the kernel holds its inode lock, so no name appears in it.

// getRefs returns the node's layer inodes, top first. The slice is never
// changed in place: writers store a new one.
func (n *node) getRefs() []layerRef {
	n.mu.Lock()
	r := n.refs
	n.mu.Unlock()
	return r
}

// top returns the layer inode that provides the node.
func (n *node) top() layerRef {
	n.mu.Lock()
	t := n.refs[0]
	n.mu.Unlock()
	return t
}

// inUpper reports whether the node's top inode is in the upper. Once
// true it stays true.
func (n *node) inUpper() bool { return n.u.upper != nil && n.top().l == 0 }

// extra returns n.x, made if need be.
func (n *node) extra() *nodeExtra {
	n.mu.Lock()
	if n.x == nil {
		n.x = &nodeExtra{}
	}
	x := n.x
	n.mu.Unlock()
	return x
}

// dir returns the lock of the directory's namespace.
func (n *node) dir() *sync.RWMutex { return &n.extra().dirMu }

// tmpName returns the work-directory name of an unlinked O_TMPFILE file.
func (n *node) tmpName() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.x == nil {
		return ""
	}
	return n.x.tmp
}

// takeTmp returns the work-directory name of an O_TMPFILE file and
// clears it, so that exactly one caller removes it.
func (n *node) takeTmp() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.x == nil {
		return ""
	}
	t := n.x.tmp
	n.x.tmp = ""
	return t
}

// lockDirs write-locks the namespaces of directories a and b (which may
// be the same) and returns the function that unlocks them.
func (u *Union) lockDirs(a, b *node) (unlock func()) {
	if a == b {
		a.dir().Lock()
		return a.dir().Unlock
	}
	u.renameMu.Lock()
	if isAncestor(b, a) {
		a, b = b, a
	}
	a.dir().Lock()
	b.dir().Lock()
	return func() {
		b.dir().Unlock()
		a.dir().Unlock()
		u.renameMu.Unlock()
	}
}

// isAncestor reports whether directory x is above y in the kernel's tree.
// Directories move only under renameMu, which the caller holds.
func isAncestor(x, y *node) bool {
	for i := 0; i < maxDepth; i++ {
		_, p := y.Parent()
		if p == nil {
			return false
		}
		if p == x.EmbeddedInode() {
			return true
		}
		pn, ok := p.Operations().(*node)
		if !ok {
			return false
		}
		y = pn
	}
	return false
}

// copiedIno returns the stable number kept by the copy-up that made upper
// inode ino, if any.
func (u *Union) copiedIno(ino uint64) (uint64, bool) {
	u.stMu.Lock()
	c, ok := u.copied[ino]
	u.stMu.Unlock()
	return c, ok
}

// linkedCopy returns the upper copy of hard-linked lower inode k.
func (u *Union) linkedCopy(k layerIno) (Node, bool) {
	u.stMu.Lock()
	up, ok := u.links[k]
	u.stMu.Unlock()
	return up, ok
}
