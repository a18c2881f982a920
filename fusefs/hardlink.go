package fusefs

import (
	"fmt"
	"syscall"
)

// Hard links of lower files. Overlayfs without its index breaks them on
// copy-up: the copied name gets a new inode, the other names keep the old
// data. The union keeps them: when a lower inode with several names is
// copied up, every other name of it that the union shows is linked to the
// copy in the upper, so the link survives a remount. The names are found
// by walking the lower layer once, on the first such copy-up.

// lowerLinks returns the paths (as name lists) of every name of inode ino
// in lower layer l.
//
// Preconditions: u.linkMu held.
func (u *Union) lowerLinks(l int, ino uint64) ([][]string, error) {
	if u.linkIndex == nil {
		u.linkIndex = map[int]map[uint64][][]string{}
	}
	idx, ok := u.linkIndex[l]
	if !ok {
		idx = map[uint64][][]string{}
		layer := u.layers[l]
		if err := indexLinks(layer, layer.Root(), nil, idx); err != nil {
			return nil, err
		}
		u.linkIndex[l] = idx
	}
	return idx[ino], nil
}

// indexLinks adds the hard-linked non-directories below dir to idx.
func indexLinks(layer Layer, dir Node, path []string, idx map[uint64][][]string) error {
	ents, err := layer.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("index hard links: %w", err)
	}
	for _, e := range ents {
		p := append(path[:len(path):len(path)], e.Name)
		if e.Mode&syscall.S_IFMT == syscall.S_IFDIR {
			if err := indexLinks(layer, e.Node, p, idx); err != nil {
				return err
			}
			continue
		}
		if e.Mode&syscall.S_IFMT != syscall.S_IFREG {
			continue
		}
		a, err := layer.Getattr(e.Node)
		if err != nil {
			return fmt.Errorf("index hard links: %w", err)
		}
		if a.Nlink > 1 {
			idx[a.Ino] = append(idx[a.Ino], p)
		}
	}
	return nil
}

// linkOtherNames links, in the upper, every other name under which the
// union shows lower inode src (attributes a) to its copy up.
//
// Preconditions: u.linkMu held; no directory locked.
func (u *Union) linkOtherNames(src layerRef, a Attr, up Node) error {
	paths, err := u.lowerLinks(src.l, a.Ino)
	if err != nil {
		return err
	}
	for _, p := range paths {
		if err := u.linkPath(src, a, up, p); err != nil {
			return fmt.Errorf("link %v: %w", p, err)
		}
	}
	return nil
}

// linkPath links path p to up if the union shows src there.
func (u *Union) linkPath(src layerRef, a Attr, up Node, p []string) error {
	chain := []*node{u.root}
	for i, name := range p {
		dir := chain[i]
		dir.dir().RLock()
		refs, ca, err := u.resolve(dir, name, 0)
		var child *node
		if err == nil {
			child = u.childNode(dir, name, refs, ca)
		}
		dir.dir().RUnlock()
		if isErrno(err, syscall.ENOENT) {
			return nil // hidden by a whiteout or an opaque directory
		}
		if err != nil {
			return err
		}
		if i < len(p)-1 {
			if ca.Mode&syscall.S_IFMT != syscall.S_IFDIR {
				return nil
			}
			chain = append(chain, child)
			continue
		}
		if refs[0] != src {
			return nil // another file, or this name is linked already
		}
		// Copy the directories up top-down, so that each one's parent
		// is in the upper before it (detached nodes have no Parent).
		for j := 1; j < len(chain); j++ {
			if err := u.copyUpIn(chain[j], chain[j-1], p[j-1], -1); err != nil {
				return err
			}
		}
		dir.dir().Lock()
		defer dir.dir().Unlock()
		if refs, _, err := u.resolve(dir, name, 0); err != nil || refs[0] != src {
			return nil // changed meanwhile
		}
		pt := u.dirTimes(dir)
		if _, err := u.upper.Link(up, dir.top().n, name); err != nil {
			return err
		}
		pt.restore()
		for _, c := range []*node{child, dir.liveChild(name)} {
			if c != nil && !c.inUpper() {
				c.setRefs(append([]layerRef{{0, up}}, c.getRefs()...))
			}
		}
	}
	return nil
}
