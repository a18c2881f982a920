package union

import (
	"fmt"

	"github.com/husk-project/husk/fusefs"
)

// rootedLayer is a writable layer whose root is one of its subdirectories.
// Directory overlays keep the upper tree in upper/ and the work directory
// in work/ beside it: the union must see upper/ as its root but still
// reach work/ by node.
type rootedLayer struct {
	fusefs.Writable
	root fusefs.Node
}

// Root implements fusefs.Layer.
func (r *rootedLayer) Root() fusefs.Node { return r.root }

// subLayer returns w rooted at its child upper, and the node of its child
// work.
func subLayer(w fusefs.Writable, upper, work string) (fusefs.Writable, fusefs.Node, error) {
	up, a, err := w.Lookup(w.Root(), upper)
	if err != nil {
		return nil, 0, fmt.Errorf("union: %s: %w", upper, err)
	}
	if a.Mode&0o170000 != 0o040000 {
		return nil, 0, fmt.Errorf("union: %s is not a directory", upper)
	}
	wk, a, err := w.Lookup(w.Root(), work)
	if err != nil {
		return nil, 0, fmt.Errorf("union: %s: %w", work, err)
	}
	if a.Mode&0o170000 != 0o040000 {
		return nil, 0, fmt.Errorf("union: %s is not a directory", work)
	}
	return &rootedLayer{Writable: w, root: up}, wk, nil
}
