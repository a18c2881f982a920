package fusefs

import (
	"runtime"
	"sync/atomic"
)

// Generations of upper inode numbers.
//
// The upper (an ext3 image, or a host directory) hands the number of a
// freed inode to the next new file, while the kernel may still hold a
// node it resolved to the freed one, and send requests for it: they must
// not act on the new file. Each number the union's nodes stand for has a
// generation, bumped when the upper hands the number out again; a node
// notes the generation when it takes the upper inode, and is stale once
// the two differ.
//
// Only numbers that some node stands for are recorded: each node counts
// itself in while its top is that upper inode, and out when it is
// collected. The record keeping every number ever made took 75 bytes a
// file, for as long as the union ran (an instance creating files for
// days).

// upperUse is what is recorded of an upper inode number.
type upperUse struct {
	ino   uint64        // the upper inode number; immutable
	gen   atomic.Uint64 // 0 until the number is handed out again while in use
	nodes int           // nodes whose top is this upper inode; guarded by stMu
}

// upperTok holds the upperUse a node counts in, nil when none: the node's
// cleanup takes that count out when the node is collected, and must not
// reach the node itself.
type upperTok struct{ use atomic.Pointer[upperUse] }

// setRefs replaces the node's layer inodes. An upper inode new on top
// counts the node in and brings its generation (see stale).
//
// Lock order: n.mu, then stMu.
func (n *node) setRefs(r []layerRef) {
	u := n.u
	n.mu.Lock()
	defer n.mu.Unlock()
	old := n.refs
	n.refs = r
	if len(old) > 0 && old[0] == r[0] {
		return
	}
	if n.tok != nil {
		if e := n.tok.use.Swap(nil); e != nil {
			u.untrack(e)
		}
	}
	if r[0].l != 0 {
		return
	}
	if n.tok == nil {
		n.tok = &upperTok{}
		runtime.AddCleanup(n, func(t *upperTok) {
			if e := t.use.Swap(nil); e != nil {
				u.untrack(e)
			}
		}, n.tok)
	}
	e := u.track(uint64(r[0].n))
	n.upGen = e.gen.Load()
	n.tok.use.Store(e)
}

// newNode makes a node for stable number ino backed by refs.
func (u *Union) newNode(ino uint64, refs []layerRef) *node {
	n := &node{u: u, ino: ino}
	n.setRefs(refs)
	return n
}

// track counts a node in for upper inode ino and returns its record.
func (u *Union) track(ino uint64) *upperUse {
	u.stMu.Lock()
	defer u.stMu.Unlock()
	e := u.gens[ino]
	if e == nil {
		e = &upperUse{ino: ino}
		u.gens[ino] = e
	}
	e.nodes++
	return e
}

// untrack counts a node out of e.
func (u *Union) untrack(e *upperUse) {
	u.stMu.Lock()
	defer u.stMu.Unlock()
	if e.nodes--; e.nodes <= 0 {
		delete(u.gens, e.ino)
	}
}

// newUpperInode forgets what was known about an earlier upper inode with
// the same number, which the upper may reuse, and, if nodes still stand
// for that one, gives the number a new generation: they go stale, and
// go-fuse does not take a node for the new file for one of theirs.
func (u *Union) newUpperInode(ino uint64) {
	u.stMu.Lock()
	defer u.stMu.Unlock()
	delete(u.copied, ino)
	if e := u.gens[ino]; e != nil {
		u.gen++
		e.gen.Store(u.gen)
	}
}

// stale reports whether n's upper inode was freed and its number given
// to another file since n got it (newUpperInode). Open, Getattr, Setattr
// and the xattr changes ask. It goes by the upper inode, not n's number:
// a file copied up keeps its image file's number (a stale node of one
// opened and chmod-ed the file that took its upper inode's number).
func (n *node) stale() bool {
	n.mu.Lock()
	t, g, tok := n.refs[0], n.upGen, n.tok
	n.mu.Unlock()
	if t.l != 0 || tok == nil {
		return false
	}
	e := tok.use.Load()
	return e != nil && e.gen.Load() != g
}

// upperGen returns the generation of upper inode ino.
func (u *Union) upperGen(ino Node) uint64 {
	u.stMu.Lock()
	defer u.stMu.Unlock()
	if e := u.gens[uint64(ino)]; e != nil {
		return e.gen.Load()
	}
	return 0
}

// genOf returns the generation of stable inode number ino, which the
// kernel's node carries (fs.StableAttr.Gen): that of the upper inode it
// names, if it names one. A node of a copied-up file keeps the number,
// and so the generation, its image file had.
func (u *Union) genOf(ino uint64) uint64 {
	if ino>>48 != 1 {
		return 0 // a lower layer's (stableIno)
	}
	return u.upperGen(Node(ino & (1<<48 - 1)))
}
