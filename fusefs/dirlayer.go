package fusefs

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// DirOptions configure a [DirLayer].
type DirOptions struct {
	// IDMap translates owners between the container's view (Container,
	// what Attr carries) and the host's view (Server, what the directory
	// stores). Empty lists mean identity. Host ids with no mapping read as
	// 65534; container ids with no mapping (or that the host cannot store
	// in its user namespace) are written as the owner of the directory the
	// layer was opened at.
	IDMap IDMap
}

// DirLayer serves a host directory as a layer. All access goes through a
// descriptor opened at construction, relative to it and without following
// symlinks or crossing mounts, so the layer keeps working after the
// process changes its root (pivot_root) and cannot be tricked out of its
// tree by symlinks inside it.
//
// A [Node] is the host inode number. The layer remembers, for each inode
// it has seen, one parent and name (the last one seen, updated on rename),
// which is how it finds the inode again. Entries on other file systems
// mounted below the directory are not reachable (EXDEV).
type DirLayer struct {
	root    *os.File // the directory, O_RDONLY (syncfs needs a real fd)
	rootIno uint64   // the directory's inode
	rootUid uint32   // the directory's owner (host view), for unmapped ids
	rootGid uint32
	top     Node // the layer's root: rootIno, or upper/ of an overlay dir
	ids     IDMap

	mu    sync.Mutex
	where map[Node][]dirLink // inode -> its known names, newest first; protected by mu
	fds   map[Node]*sharedFd // files open through Open; protected by mu
	dirs  map[Node]int       // O_PATH descriptors of directories; protected by mu

	onNew atomic.Pointer[func(uint64)] // OnNewInode's function, or nil
}

// maxDirFds bounds the directory descriptor cache.
const maxDirFds = 4096

// maxDepth bounds a walk up the remembered names: PATH_MAX allows no more
// than 2048 directories, and this also stops a loop of names.
const maxDepth = 4096

// dirLink is one name of an inode: its parent directory and its name.
type dirLink struct {
	parent Node
	name   string
}

// sharedFd is a descriptor shared by every open of one inode.
type sharedFd struct {
	f    *os.File
	refs int
}

// OpenDirLayer opens the directory at path as a layer. It is also a
// [Writable]; use it read-only by passing it only as a lower.
func OpenDirLayer(path string, opts *DirOptions) (*DirLayer, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return nil, fmt.Errorf("fusefs: dir layer: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("fusefs: dir layer %s: %w", path, err)
	}
	d := &DirLayer{root: f, rootIno: st.Ino, top: Node(st.Ino),
		rootUid: st.Uid, rootGid: st.Gid,
		where: map[Node][]dirLink{}, fds: map[Node]*sharedFd{},
		dirs: map[Node]int{}}
	if opts != nil {
		d.ids = opts.IDMap
	}
	return d, nil
}

// Close releases the directory descriptor and any cached file descriptors.
func (d *DirLayer) Close() error {
	d.mu.Lock()
	for n, s := range d.fds {
		s.f.Close()
		delete(d.fds, n)
	}
	d.dropDirsLocked()
	d.mu.Unlock()
	return d.root.Close()
}

// Root implements Layer.
func (d *DirLayer) Root() Node { return d.top }

// OpenOverlayDir opens an Apptainer directory overlay (COMPAT §3.3): the
// layer's root is dir/upper and the returned work node is dir/work, both
// made (mode 0755) if missing. Pass the work node as Options.WorkDir.
func OpenOverlayDir(dir string, opts *DirOptions) (*DirLayer, Node, error) {
	for _, sub := range []string{"upper", "work"} {
		if err := os.Mkdir(dir+"/"+sub, 0755); err != nil && !os.IsExist(err) {
			return nil, 0, fmt.Errorf("fusefs: overlay dir: %w", err)
		}
	}
	d, err := OpenDirLayer(dir, opts)
	if err != nil {
		return nil, 0, err
	}
	up, a, err := d.Lookup(Node(d.rootIno), "upper")
	if err == nil && a.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		err = syscall.ENOTDIR
	}
	var work Node
	if err == nil {
		work, a, err = d.Lookup(Node(d.rootIno), "work")
	}
	if err == nil && a.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		err = syscall.ENOTDIR
	}
	if err != nil {
		d.Close()
		return nil, 0, fmt.Errorf("fusefs: overlay dir %s: %w", dir, err)
	}
	d.top = up
	return d, work, nil
}

// openRel opens path relative to the root, never leaving the tree.
func (d *DirLayer) openRel(path string, flags int) (int, error) {
	return d.openBeneath(int(d.root.Fd()), path, flags)
}

// openBeneath opens path relative to directory fd, never leaving it, not
// following symlinks and not crossing mounts.
func (d *DirLayer) openBeneath(fd int, path string, flags int) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC | unix.O_NOFOLLOW),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_XDEV}
	for {
		nfd, err := unix.Openat2(fd, path, &how)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "openat2", Path: path, Err: err}
		}
		return nfd, nil
	}
}

// openNode opens n itself with flags. It goes through n's parent
// directory descriptor, one name at a time: a whole path from the root
// may be longer than the host accepts (PATH_MAX), although every name in
// it is fine.
func (d *DirLayer) openNode(n Node, flags int) (int, error) {
	return d.openNodeAt(n, flags, 0)
}

// openNodeAt is openNode for a node depth directories below the one that
// asked; the depth bounds the walk should the remembered names loop.
func (d *DirLayer) openNodeAt(n Node, flags, depth int) (int, error) {
	if n == Node(d.rootIno) {
		return d.openRel(".", flags)
	}
	fd, name, err := d.parentOfAt(n, depth)
	if err != nil {
		return -1, err
	}
	defer unix.Close(fd)
	return d.openBeneath(fd, name, flags)
}

// openDir opens directory dir as an O_PATH descriptor, which the caller
// closes. Descriptors are cached per directory and handed out as dups: a
// dup is much cheaper than walking the path again, and opening a
// directory opens (and caches) its parent first, so a deep walk costs one
// openat2 per directory not seen before.
func (d *DirLayer) openDir(dir Node) (int, error) { return d.openDirAt(dir, 0) }

// openDirAt is openDir at a depth of the walk (see openNodeAt).
func (d *DirLayer) openDirAt(dir Node, depth int) (int, error) {
	if depth > maxDepth {
		return -1, fmt.Errorf("fusefs: dir layer: inode %d: deeper than %d: %w",
			dir, maxDepth, syscall.ELOOP)
	}
	d.mu.Lock()
	if fd, ok := d.dirs[dir]; ok {
		nfd, err := unix.Dup(fd)
		d.mu.Unlock()
		if err != nil {
			return -1, &os.PathError{Op: "dup", Path: fmt.Sprint("inode ", dir), Err: err}
		}
		return nfd, nil
	}
	d.mu.Unlock()
	fd, err := d.openNodeAt(dir, unix.O_PATH|unix.O_DIRECTORY, depth)
	if err != nil {
		return -1, err
	}
	nfd, err := unix.Dup(fd)
	if err != nil {
		unix.Close(fd)
		return -1, &os.PathError{Op: "dup", Path: fmt.Sprint("inode ", dir), Err: err}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.dirs[dir]; ok {
		unix.Close(fd)
		return nfd, nil
	}
	if len(d.dirs) >= maxDirFds {
		d.dropDirsLocked()
	}
	d.dirs[dir] = fd
	return nfd, nil
}

// forgetDir drops the cached descriptor of a removed directory, whose
// inode number the host may give to a new one.
func (d *DirLayer) forgetDir(dir Node) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if fd, ok := d.dirs[dir]; ok {
		unix.Close(fd)
		delete(d.dirs, dir)
	}
}

// dropDirsLocked empties the directory descriptor cache.
//
// Preconditions: d.mu held.
func (d *DirLayer) dropDirsLocked() {
	for n, fd := range d.dirs {
		unix.Close(fd)
		delete(d.dirs, n)
	}
}

// parentOf opens n's parent directory (O_PATH) and returns it with n's
// name. For the root it returns the root itself and ".".
func (d *DirLayer) parentOf(n Node) (int, string, error) { return d.parentOfAt(n, 0) }

// parentOfAt is parentOf at a depth of the walk (see openNodeAt).
func (d *DirLayer) parentOfAt(n Node, depth int) (int, string, error) {
	if n == Node(d.rootIno) {
		fd, err := d.openRel(".", unix.O_PATH|unix.O_DIRECTORY)
		return fd, ".", err
	}
	d.mu.Lock()
	ls := d.where[n]
	d.mu.Unlock()
	if len(ls) == 0 {
		return -1, "", fmt.Errorf("fusefs: dir layer: inode %d has no name: %w", n, syscall.ENOENT)
	}
	fd, err := d.openDirAt(ls[0].parent, depth+1)
	return fd, ls[0].name, err
}

// remember records that name in dir is inode ino.
func (d *DirLayer) remember(dir Node, name string, ino uint64) {
	if ino == d.rootIno {
		return
	}
	d.mu.Lock()
	d.addLinkLocked(Node(ino), dirLink{dir, name})
	d.mu.Unlock()
}

// addLinkLocked records l as the newest name of n.
//
// Preconditions: d.mu held.
func (d *DirLayer) addLinkLocked(n Node, l dirLink) {
	ls := d.where[n]
	for i, x := range ls {
		if x == l {
			if i > 0 {
				copy(ls[1:i+1], ls[:i])
				ls[0] = l
			}
			return
		}
	}
	d.where[n] = append([]dirLink{l}, ls...)
}

// dropLinkLocked forgets name l of n.
//
// Preconditions: d.mu held.
func (d *DirLayer) dropLinkLocked(n Node, l dirLink) {
	ls := d.where[n]
	for i, x := range ls {
		if x == l {
			ls = append(ls[:i:i], ls[i+1:]...)
			break
		}
	}
	if len(ls) == 0 {
		delete(d.where, n)
	} else {
		d.where[n] = ls
	}
}

// attr converts a host stat to an Attr in the container's view.
func (d *DirLayer) attr(st *unix.Stat_t) Attr {
	return Attr{Ino: st.Ino, Mode: st.Mode, Nlink: uint32(st.Nlink),
		Uid: d.ids.uidToContainer(st.Uid), Gid: d.ids.gidToContainer(st.Gid),
		Size: uint64(st.Size), Blocks: uint64(st.Blocks), Rdev: uint32(st.Rdev),
		Atime: Timespec{st.Atim.Sec, uint32(st.Atim.Nsec)},
		Mtime: Timespec{st.Mtim.Sec, uint32(st.Mtim.Nsec)},
		Ctime: Timespec{st.Ctim.Sec, uint32(st.Ctim.Nsec)}}
}

// statAt stats name in the directory fd without following symlinks.
func (d *DirLayer) statAt(fd int, name string) (Attr, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return Attr{}, &os.PathError{Op: "fstatat", Path: name, Err: err}
	}
	return d.attr(&st), nil
}

// Lookup implements Layer.
func (d *DirLayer) Lookup(dir Node, name string) (Node, Attr, error) {
	fd, err := d.openDir(dir)
	if err != nil {
		return 0, Attr{}, err
	}
	defer unix.Close(fd)
	a, err := d.statAt(fd, name)
	if err != nil {
		return 0, Attr{}, err
	}
	d.remember(dir, name, a.Ino)
	return Node(a.Ino), a, nil
}

// Getattr implements Layer. An open file is stated through its
// descriptor, which is cheaper and works after the file is unlinked.
func (d *DirLayer) Getattr(n Node) (Attr, error) {
	if s := d.shared(n); s != nil {
		defer d.releaseFd(n, s)
		var st unix.Stat_t
		if err := unix.Fstat(int(s.f.Fd()), &st); err != nil {
			return Attr{}, &os.PathError{Op: "fstat", Path: fmt.Sprint("inode ", n), Err: err}
		}
		return d.attr(&st), nil
	}
	fd, name, err := d.parentOf(n)
	if err != nil {
		return Attr{}, err
	}
	defer unix.Close(fd)
	return d.statAt(fd, name)
}

// ReadDir implements Layer.
func (d *DirLayer) ReadDir(dir Node) ([]Dirent, error) {
	fd, err := d.openNode(dir, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	p := fmt.Sprint("inode ", dir)
	var out []Dirent
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "getdents", Path: p, Err: err}
		}
		if n <= 0 {
			break
		}
		out = parseDirents(buf[:n], out)
	}
	for _, e := range out {
		d.remember(dir, e.Name, e.Ino)
	}
	return out, nil
}

// parseDirents decodes linux_dirent64 records (ino u64, off s64,
// reclen u16, type u8, name NUL-terminated), skipping "." and "..".
func parseDirents(b []byte, out []Dirent) []Dirent {
	for len(b) >= 19 {
		ino := le64(b[0:])
		reclen := int(b[16]) | int(b[17])<<8
		if reclen < 19 || reclen > len(b) {
			break
		}
		typ := b[18]
		name := b[19:reclen]
		if i := strings.IndexByte(string(name), 0); i >= 0 {
			name = name[:i]
		}
		if s := string(name); s != "." && s != ".." {
			out = append(out, Dirent{Name: s, Node: Node(ino), Ino: ino,
				Mode: uint32(typ) << 12})
		}
		b = b[reclen:]
	}
	return out
}

func le64(b []byte) uint64 {
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// Readlink implements Layer.
func (d *DirLayer) Readlink(n Node) (string, error) {
	fd, name, err := d.parentOf(n)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	buf := make([]byte, 4096)
	k, err := unix.Readlinkat(fd, name, buf)
	if err != nil {
		return "", &os.PathError{Op: "readlinkat", Path: name, Err: err}
	}
	return string(buf[:k]), nil
}

// Statfs implements Layer.
func (d *DirLayer) Statfs() (Statfs, error) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(d.root.Fd()), &st); err != nil {
		return Statfs{}, &os.PathError{Op: "fstatfs", Path: d.root.Name(), Err: err}
	}
	return Statfs{Bsize: uint32(st.Bsize), Blocks: st.Blocks, Bfree: st.Bfree,
		Bavail: st.Bavail, Files: st.Files, Ffree: st.Ffree,
		NameLen: uint32(st.Namelen)}, nil
}
