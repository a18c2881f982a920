package fusefs

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// The writable half of DirLayer. Owners are set explicitly after creation
// (the server usually runs as root of its namespace) and modes are set
// with chmod after chown, so neither the umask nor chown's clearing of
// set-id bits changes what the caller asked for.

// xattrPath names n for the path-based xattr calls: through the parent's
// descriptor in /proc/self/fd, because O_PATH descriptors do not support
// f*xattr. follow is set for the root, which is reached through the magic
// link itself.
func (d *DirLayer) xattrPath(n Node) (path string, follow bool, done func(), err error) {
	if s := d.shared(n); s != nil {
		// Open: by its descriptor, which outlives its name (Setattr);
		// thread-self, as there.
		return fmt.Sprintf("/proc/thread-self/fd/%d", s.f.Fd()), true,
			func() { d.releaseFd(n, s) }, nil
	}
	fd, name, err := d.parentOf(n)
	if err != nil {
		return "", false, nil, err
	}
	done = func() { unix.Close(fd) }
	if name == "." {
		return fmt.Sprintf("/proc/self/fd/%d", fd), true, done, nil
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", fd, name), false, done, nil
}

// Listxattr implements Layer.
func (d *DirLayer) Listxattr(n Node) ([]string, error) {
	p, follow, done, err := d.xattrPath(n)
	if err != nil {
		return nil, err
	}
	defer done()
	list := unix.Llistxattr
	if follow {
		list = unix.Listxattr
	}
	buf := make([]byte, 4096)
	for {
		k, err := list(p, buf)
		if err == unix.ERANGE {
			buf = make([]byte, 2*len(buf))
			continue
		}
		if err == unix.ENOTSUP {
			return nil, nil
		}
		if err != nil {
			return nil, &os.PathError{Op: "listxattr", Path: p, Err: err}
		}
		var names []string
		for _, s := range strings.Split(string(buf[:k]), "\x00") {
			if s != "" {
				names = append(names, s)
			}
		}
		return names, nil
	}
}

// Getxattr implements Layer.
func (d *DirLayer) Getxattr(n Node, name string) ([]byte, error) {
	p, follow, done, err := d.xattrPath(n)
	if err != nil {
		return nil, err
	}
	defer done()
	get := unix.Lgetxattr
	if follow {
		get = unix.Getxattr
	}
	buf := make([]byte, 256)
	for {
		k, err := get(p, name, buf)
		if err == unix.ERANGE {
			sz, err2 := get(p, name, nil)
			if err2 != nil {
				return nil, &os.PathError{Op: "getxattr", Path: p, Err: err2}
			}
			buf = make([]byte, sz+1)
			continue
		}
		if err == unix.ENOTSUP {
			err = unix.ENODATA
		}
		if err != nil {
			return nil, &os.PathError{Op: "getxattr " + name, Path: p, Err: err}
		}
		return buf[:k], nil
	}
}

// Setxattr implements Writable.
func (d *DirLayer) Setxattr(n Node, name string, value []byte, flags uint32) error {
	p, follow, done, err := d.xattrPath(n)
	if err != nil {
		return err
	}
	defer done()
	set := unix.Lsetxattr
	if follow {
		set = unix.Setxattr
	}
	if err := set(p, name, value, int(flags)); err != nil {
		return &os.PathError{Op: "setxattr " + name, Path: p, Err: err}
	}
	return nil
}

// Removexattr implements Writable.
func (d *DirLayer) Removexattr(n Node, name string) error {
	p, follow, done, err := d.xattrPath(n)
	if err != nil {
		return err
	}
	defer done()
	rm := unix.Lremovexattr
	if follow {
		rm = unix.Removexattr
	}
	if err := rm(p, name); err != nil {
		return &os.PathError{Op: "removexattr " + name, Path: p, Err: err}
	}
	return nil
}

// chown sets the owner of name in directory fd (of fd itself when name is
// empty) to a container owner,
// translated to the host's view. Ids the map does not cover, or that the
// host refuses (EINVAL: not mapped in this user namespace), are stored as
// the owner of the layer's directory, as fuse-overlayfs's squash_to_uid
// does: a copy-up of a root-owned image file by an unprivileged user then
// works, and reads back as the user's.
func (d *DirLayer) chown(fd int, name string, uid, gid uint32) error {
	hu, hg := mapID(d.ids.UIDs, uid, true), mapID(d.ids.GIDs, gid, true)
	if len(d.ids.UIDs) > 0 && hu == overflowID && uid != overflowID {
		hu = d.rootUid
	}
	if len(d.ids.GIDs) > 0 && hg == overflowID && gid != overflowID {
		hg = d.rootGid
	}
	flags := unix.AT_SYMLINK_NOFOLLOW
	if name == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	err := unix.Fchownat(fd, name, int(hu), int(hg), flags)
	if err == unix.EINVAL {
		err = unix.Fchownat(fd, name, int(d.rootUid), int(d.rootGid), flags)
	}
	if err == unix.EINVAL {
		// The root's owner is not mapped either (a set-group-ID directory
		// of a group the namespace does not map): the file keeps the
		// owner and group the host gave it.
		err = nil
	}
	if err != nil {
		return &os.PathError{Op: "fchownat", Path: name, Err: err}
	}
	return nil
}

// made finishes a creation in dir: owner, mode, stat, and remembering the
// new name. It undoes the creation when any step fails.
func (d *DirLayer) made(fd int, dir Node, name string, mode, uid, gid uint32,
	chmod bool) (Node, Attr, error) {
	err := d.chown(fd, name, uid, gid)
	if err == nil && chmod {
		err = unix.Fchmodat(fd, name, mode&07777, 0)
	}
	var a Attr
	if err == nil {
		a, err = d.statAt(fd, name)
	}
	if err != nil {
		flag := 0
		if mode&unix.S_IFMT == unix.S_IFDIR {
			flag = unix.AT_REMOVEDIR
		}
		unix.Unlinkat(fd, name, flag)
		return 0, Attr{}, &os.PathError{Op: "create", Path: name, Err: err}
	}
	if fn := d.onNew.Load(); fn != nil {
		(*fn)(a.Ino) // before the name leads to it (OnNewInode)
	}
	d.remember(dir, name, a.Ino)
	return Node(a.Ino), a, nil
}

// OnNewInode has fn called with the host inode number of each file,
// directory or link the layer makes, before its name is remembered: the
// host may give a new file the number of one just removed, which a FUSE
// request resolved earlier may still name (ext3.FS.OnNewInode).
func (d *DirLayer) OnNewInode(fn func(ino uint64)) { d.onNew.Store(&fn) }

// Create implements Writable.
func (d *DirLayer) Create(dir Node, name string, mode, uid, gid uint32) (Node, Attr, error) {
	fd, err := d.openDir(dir)
	if err != nil {
		return 0, Attr{}, err
	}
	defer unix.Close(fd)
	f, err := unix.Openat(fd, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|
		unix.O_NOFOLLOW|unix.O_CLOEXEC, 0600)
	if err != nil {
		return 0, Attr{}, &os.PathError{Op: "openat", Path: name, Err: err}
	}
	unix.Close(f)
	return d.made(fd, dir, name, mode|unix.S_IFREG, uid, gid, true)
}

// Mkdir implements Writable.
func (d *DirLayer) Mkdir(dir Node, name string, mode, uid, gid uint32) (Node, Attr, error) {
	fd, err := d.openDir(dir)
	if err != nil {
		return 0, Attr{}, err
	}
	defer unix.Close(fd)
	if err := unix.Mkdirat(fd, name, 0700); err != nil {
		return 0, Attr{}, &os.PathError{Op: "mkdirat", Path: name, Err: err}
	}
	return d.made(fd, dir, name, mode|unix.S_IFDIR, uid, gid, true)
}

// Mknod implements Writable.
func (d *DirLayer) Mknod(dir Node, name string, mode, rdev, uid, gid uint32) (Node, Attr, error) {
	fd, err := d.openDir(dir)
	if err != nil {
		return 0, Attr{}, err
	}
	defer unix.Close(fd)
	if err := unix.Mknodat(fd, name, mode&^07777|0600, int(rdev)); err != nil {
		return 0, Attr{}, &os.PathError{Op: "mknodat", Path: name, Err: err}
	}
	return d.made(fd, dir, name, mode, uid, gid, true)
}

// Symlink implements Writable.
func (d *DirLayer) Symlink(dir Node, name, target string, uid, gid uint32) (Node, Attr, error) {
	fd, err := d.openDir(dir)
	if err != nil {
		return 0, Attr{}, err
	}
	defer unix.Close(fd)
	if err := unix.Symlinkat(target, fd, name); err != nil {
		return 0, Attr{}, &os.PathError{Op: "symlinkat", Path: name, Err: err}
	}
	return d.made(fd, dir, name, unix.S_IFLNK|0777, uid, gid, false)
}

// Link implements Writable.
func (d *DirLayer) Link(n Node, dir Node, name string) (Attr, error) {
	ofd, oname, err := d.parentOf(n)
	if err != nil {
		return Attr{}, err
	}
	defer unix.Close(ofd)
	fd, err := d.openDir(dir)
	if err != nil {
		return Attr{}, err
	}
	defer unix.Close(fd)
	if err := unix.Linkat(ofd, oname, fd, name, 0); err != nil {
		return Attr{}, &os.PathError{Op: "linkat", Path: name, Err: err}
	}
	a, err := d.statAt(fd, name)
	if err == nil {
		d.remember(dir, name, a.Ino)
	}
	return a, err
}

// remove unlinks name in dir, forgetting it if it was the remembered name.
func (d *DirLayer) remove(dir Node, name string, flags int) error {
	fd, err := d.openDir(dir)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	a, _ := d.statAt(fd, name)
	if err := unix.Unlinkat(fd, name, flags); err != nil {
		return &os.PathError{Op: "unlinkat", Path: name, Err: err}
	}
	d.mu.Lock()
	d.dropLinkLocked(Node(a.Ino), dirLink{dir, name})
	d.mu.Unlock()
	if flags&unix.AT_REMOVEDIR != 0 {
		d.forgetDir(Node(a.Ino))
	}
	return nil
}

// Unlink implements Writable.
func (d *DirLayer) Unlink(dir Node, name string) error { return d.remove(dir, name, 0) }

// Rmdir implements Writable.
func (d *DirLayer) Rmdir(dir Node, name string) error {
	return d.remove(dir, name, unix.AT_REMOVEDIR)
}

// Rename implements Writable.
func (d *DirLayer) Rename(oldDir Node, oldName string, newDir Node, newName string,
	flags uint32) error {
	ofd, err := d.openDir(oldDir)
	if err != nil {
		return err
	}
	defer unix.Close(ofd)
	nfd, err := d.openDir(newDir)
	if err != nil {
		return err
	}
	defer unix.Close(nfd)
	oa, err := d.statAt(ofd, oldName)
	if err != nil {
		return err
	}
	na, nerr := d.statAt(nfd, newName)
	if err := unix.Renameat2(ofd, oldName, nfd, newName, uint(flags)); err != nil {
		return &os.PathError{Op: "renameat2", Path: oldName, Err: err}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if nerr == nil {
		d.dropLinkLocked(Node(na.Ino), dirLink{newDir, newName})
	}
	if nerr == nil && flags&RenameExchange == 0 {
		if fd, ok := d.dirs[Node(na.Ino)]; ok && na.Mode&unix.S_IFMT == unix.S_IFDIR {
			unix.Close(fd) // replaced, so removed
			delete(d.dirs, Node(na.Ino))
		}
	}
	d.dropLinkLocked(Node(oa.Ino), dirLink{oldDir, oldName})
	d.addLinkLocked(Node(oa.Ino), dirLink{newDir, newName})
	if nerr == nil && flags&RenameExchange != 0 {
		d.addLinkLocked(Node(na.Ino), dirLink{oldDir, oldName})
	}
	return nil
}
