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
	gen   uint64 // 0 until the number is handed out again while in use
	nodes int    // nodes whose top is this upper inode
}

// upperTok is a node's count in an upperUse, which the node's cleanup
// takes out when the node is collected; 0 when the node counts in none.
type upperTok struct{ ino atomic.Uint64 }

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
	if len(old) > 0 && old[0].l == 0 && n.use != nil {
		u.untrack(uint64(old[0].n))
		n.use.ino.Store(0)
	}
	if r[0].l != 0 {
		return
	}
	n.upGen = u.track(uint64(r[0].n))
	if n.use == nil {
		n.use = &upperTok{}
		runtime.AddCleanup(n, func(t *upperTok) {
			if ino := t.ino.Load(); ino != 0 {
				u.untrack(ino)
			}
		}, n.use)
	}
	n.use.ino.Store(uint64(r[0].n))
}

// newNode makes a node for stable number ino backed by refs.
func (u *Union) newNode(ino uint64, refs []layerRef) *node {
	n := &node{u: u, ino: ino}
	n.setRefs(refs)
	return n
}

// track counts a node in for upper inode ino and returns its generation.
func (u *Union) track(ino uint64) uint64 {
	u.stMu.Lock()
	defer u.stMu.Unlock()
	e := u.gens[ino]
	e.nodes++
	u.gens[ino] = e
	return e.gen
}

// untrack counts a node out for upper inode ino.
func (u *Union) untrack(ino uint64) {
	u.stMu.Lock()
	defer u.stMu.Unlock()
	e := u.gens[ino]
	if e.nodes--; e.nodes <= 0 {
		delete(u.gens, ino)
	} else {
		u.gens[ino] = e
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
	if e, ok := u.gens[ino]; ok {
		u.gen++
		e.gen = u.gen
		u.gens[ino] = e
	}
}

// stale reports whether n's upper inode was freed and its number given
// to another file since n got it (newUpperInode). Open, Getattr, Setattr
// and the xattr changes ask. It goes by the upper inode, not n's number:
// a file copied up keeps its image file's number (a stale node of one
// opened and chmod-ed the file that took its upper inode's number).
func (n *node) stale() bool {
	n.mu.Lock()
	t, g := n.refs[0], n.upGen
	n.mu.Unlock()
	return t.l == 0 && g != n.u.upperGen(t.n)
}

// upperGen returns the generation of upper inode ino.
func (u *Union) upperGen(ino Node) uint64 {
	u.stMu.Lock()
	g := u.gens[uint64(ino)].gen
	u.stMu.Unlock()
	return g
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
