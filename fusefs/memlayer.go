package fusefs

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// MemLayer is an in-memory read-only layer of empty directories and empty
// files: Apptainer's overlay-lowerdir, the skeleton that provides mount
// points missing from the image. Place it in Options.Lowers just above the
// image; [Union.Mountpoint] adds to it while the union is mounted. Entries
// are owned by root with mode 0755 (directories) or 0644 (files).
type MemLayer struct {
	mu    sync.RWMutex
	nodes map[Node]*memNode // protected by mu
	now   Timespec
}

// memNode is one entry of a MemLayer.
type memNode struct {
	attr     Attr
	children map[string]Node // nil for files
}

// NewMemLayer returns a skeleton holding only its root directory.
func NewMemLayer() *MemLayer {
	t := time.Now()
	m := &MemLayer{nodes: map[Node]*memNode{}, now: Timespec{t.Unix(), uint32(t.Nanosecond())}}
	m.nodes[1] = m.newNode(1, true)
	return m
}

func (m *MemLayer) newNode(ino uint64, dir bool) *memNode {
	a := Attr{Ino: ino, Mode: syscall.S_IFREG | 0644, Nlink: 1,
		Atime: m.now, Mtime: m.now, Ctime: m.now}
	n := &memNode{attr: a}
	if dir {
		n.attr.Mode, n.attr.Nlink = syscall.S_IFDIR|0755, 2
		n.children = map[string]Node{}
	}
	return n
}

// Add creates name in directory dir, or returns the existing entry if
// it has the same kind. below says the layers below have name already,
// so dir, which then shows their directory's link count, counts it.
func (m *MemLayer) Add(dir Node, name string, isDir, below bool) (Node, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.nodes[dir]
	if d == nil || d.children == nil {
		return 0, fmt.Errorf("fusefs: skeleton: inode %d: %w", dir, syscall.ENOTDIR)
	}
	if c, ok := d.children[name]; ok {
		if (m.nodes[c].children != nil) != isDir {
			return 0, fmt.Errorf("fusefs: skeleton: %s: %w", name, syscall.EEXIST)
		}
		return c, nil
	}
	ino := Node(len(m.nodes) + 1)
	m.nodes[ino] = m.newNode(uint64(ino), isDir)
	d.children[name] = ino
	if isDir && !below {
		d.attr.Nlink++
	}
	return ino, nil
}

// copyAttr gives directory n the owner, permissions, times, link count
// and size of a (a skeleton /etc had shown 2 links and size 0).
func (m *MemLayer) copyAttr(n Node, a Attr) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if x := m.nodes[n]; x != nil {
		x.attr.Mode = x.attr.Mode&syscall.S_IFMT | a.Mode&07777
		x.attr.Uid, x.attr.Gid = a.Uid, a.Gid
		x.attr.Nlink, x.attr.Size = a.Nlink, a.Size
		x.attr.Atime, x.attr.Mtime, x.attr.Ctime = a.Atime, a.Mtime, a.Ctime
	}
}

// Root implements Layer.
func (m *MemLayer) Root() Node { return 1 }

func (m *MemLayer) get(n Node) (*memNode, error) {
	if x := m.nodes[n]; x != nil {
		return x, nil
	}
	return nil, fmt.Errorf("fusefs: skeleton: inode %d: %w", n, syscall.ESTALE)
}

// Lookup implements Layer.
func (m *MemLayer) Lookup(dir Node, name string) (Node, Attr, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	d, err := m.get(dir)
	if err != nil {
		return 0, Attr{}, err
	}
	c, ok := d.children[name]
	if !ok {
		return 0, Attr{}, syscall.ENOENT
	}
	return c, m.nodes[c].attr, nil
}

// Getattr implements Layer.
func (m *MemLayer) Getattr(n Node) (Attr, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	x, err := m.get(n)
	if err != nil {
		return Attr{}, err
	}
	return x.attr, nil
}

// ReadDir implements Layer.
func (m *MemLayer) ReadDir(dir Node) ([]Dirent, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	d, err := m.get(dir)
	if err != nil {
		return nil, err
	}
	out := make([]Dirent, 0, len(d.children))
	for name, c := range d.children {
		a := m.nodes[c].attr
		out = append(out, Dirent{Name: name, Node: c, Ino: a.Ino,
			Mode: a.Mode & syscall.S_IFMT})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ReadAt implements Layer: skeleton files are empty.
func (m *MemLayer) ReadAt(n Node, p []byte, off int64) (int, error) { return 0, nil }

// Readlink implements Layer: the skeleton has no symlinks.
func (m *MemLayer) Readlink(n Node) (string, error) { return "", syscall.EINVAL }

// Listxattr implements Layer.
func (m *MemLayer) Listxattr(n Node) ([]string, error) { return nil, nil }

// Getxattr implements Layer.
func (m *MemLayer) Getxattr(n Node, name string) ([]byte, error) {
	return nil, syscall.ENODATA
}

// Statfs implements Layer.
func (m *MemLayer) Statfs() (Statfs, error) {
	return Statfs{Bsize: 4096, NameLen: 255}, nil
}

// Mountpoint makes path (absolute, inside the union) exist, as a
// directory if dir is set and an empty file otherwise, by adding it and
// its missing parents to the union's skeleton layer, unless the union
// already has it. It is decided in-process, not through the kernel, and
// never writes to the upper. The union needs a [MemLayer] among its
// lowers.
//
// It may be called from a thread with a descriptor table of its own (stage
// 1 makes its mount points from one, see package detach): the work runs
// on one of the server's ordinary threads, whose table holds the layers'
// descriptors (a directory layer caches some as it goes) and the FUSE
// device its notices to the kernel are written to. Done on the caller's
// thread, a cached descriptor was missing there (EBADF), and the notice
// that drops the kernel's negative entry was lost.
func (u *Union) Mountpoint(p string, dir bool) error {
	errc := make(chan error, 1)
	go func() { errc <- u.mountpoint(p, dir) }()
	return <-errc
}

func (u *Union) mountpoint(p string, dir bool) error {
	ml := -1
	for l := 1; l < len(u.layers); l++ {
		if _, ok := u.layers[l].(*MemLayer); ok {
			ml = l
			break
		}
	}
	if ml < 0 {
		return errors.New("fusefs: mount point: the union has no skeleton layer")
	}
	mem := u.layers[ml].(*MemLayer)
	comps := strings.Split(strings.Trim(path.Clean("/"+p), "/"), "/")
	if len(comps) == 1 && comps[0] == "" {
		return nil
	}
	type notify struct {
		parent *node
		name   string
	}
	var notes []notify
	// step adds component c (the last one if last) below cur and returns
	// the node for it.
	step := func(cur *node, memDir Node, c string, last bool) (*node, Node, error) {
		cur.dir().Lock()
		defer cur.dir().Unlock()
		refs, a, err := u.resolve(cur, c, 0)
		if err == nil && last {
			return nil, 0, nil
		}
		existed := err == nil
		if err != nil && !isErrno(err, syscall.ENOENT) {
			return nil, 0, fmt.Errorf("fusefs: mount point %s: %w", p, err)
		}
		if err == nil && a.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			return nil, 0, fmt.Errorf("fusefs: mount point %s: %s: %w", p, c, syscall.ENOTDIR)
		}
		if memDir, err = mem.Add(memDir, c, dir || !last, existed); err != nil {
			return nil, 0, fmt.Errorf("fusefs: mount point %s: %w", p, err)
		}
		if existed {
			// The skeleton directory now sits above the image's: show
			// the image's owner, mode and times, not its own.
			mem.copyAttr(memDir, a)
		}
		if refs, a, err = u.resolve(cur, c, 0); err != nil {
			return nil, 0, fmt.Errorf("fusefs: mount point %s: %s hidden: %w", p, c, err)
		}
		if !existed {
			notes = append(notes, notify{cur, c})
		}
		child := u.childNode(cur, c, refs, a)
		child.setRefs(refs)
		return child, memDir, nil
	}
	var err error
	cur, memDir := u.root, mem.Root()
	for i, c := range comps {
		if cur, memDir, err = step(cur, memDir, c, i == len(comps)-1); err != nil || cur == nil {
			break
		}
	}
	// Drop what the kernel may have cached: a negative entry for the new
	// name, the parent's listing. Without a mount there is nothing to drop.
	for _, nt := range notes {
		if u.server != nil && !nt.parent.Forgotten() {
			nt.parent.NotifyEntry(nt.name)
			nt.parent.NotifyContent(0, 0)
		}
	}
	return err
}
