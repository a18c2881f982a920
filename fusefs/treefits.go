package fusefs

import (
	"syscall"
)

// treeFits answers ENOSPC before a rename copies directory n and all below
// it to the upper (copyTree) when the lower layers hold more than the
// upper has room for. The copy is made in place, piece by piece, each
// piece a valid part of the union; one that stops at a full upper leaves
// what it copied there, hidden under the same names, where the user
// cannot free it (deleting it in the union only adds whiteouts): a
// new-user trial's failed `mv /usr/lib /ulib` left 50 MB of a 64 MB
// overlay so. The estimate counts every lower layer's entries, what the
// upper has of them already included, so it errs on the large side; it
// stops counting once past the room there is. The room kept back (a
// fiftieth, and 64 blocks and inodes) is for what the estimate leaves
// out: xattrs the copies keep, and the rename itself (an entry in the new
// parent, a whiteout at the old name); a second trial filled an overlay
// to just above its estimate, and the copy fit but the rename did not.
func (u *Union) treeFits(n *node) error {
	st, err := u.upper.Statfs()
	if err != nil || st.Bsize == 0 {
		return nil // no accounting to check against: the copy tells
	}
	keep := func(v uint64) uint64 { return v - min(v, v/50+64) }
	c := treeCount{bs: uint64(st.Bsize), maxBlocks: keep(st.Bavail), maxFiles: keep(st.Ffree)}
	for _, r := range n.getRefs() {
		if r.l == 0 {
			continue
		}
		if err := c.walk(u.layers[r.l], r.n); err != nil {
			return err
		}
	}
	return nil
}

// treeCount adds up what a copy of directory trees needs in an upper of
// block size bs, as blocks and inodes.
type treeCount struct {
	bs                  uint64
	blocks, files       uint64
	maxBlocks, maxFiles uint64
}

// walk counts the entries below dir of layer l.
func (c *treeCount) walk(l Layer, dir Node) error {
	ents, err := l.ReadDir(dir)
	if err != nil {
		return err
	}
	c.blocks += 2 // the directory's own listing, one block or more, and its opaque mark
	for _, e := range ents {
		c.files++
		switch e.Mode & syscall.S_IFMT {
		case syscall.S_IFDIR:
			if err := c.walk(l, e.Node); err != nil {
				return err
			}
		case syscall.S_IFREG, syscall.S_IFLNK:
			a, err := l.Getattr(e.Node)
			if err != nil {
				return err
			}
			data := (a.Size + c.bs - 1) / c.bs
			// Indirect blocks: one per bs/4 data blocks, and more.
			c.blocks += data + data/(c.bs/4)
		}
		if c.blocks > c.maxBlocks || c.files > c.maxFiles {
			return syscall.ENOSPC // past the room there is: stop
		}
	}
	return nil
}
