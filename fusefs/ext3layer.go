package fusefs

import (
	"errors"
	"fmt"
	"io"
	"syscall"

	"github.com/husk-project/husk/ext3"
)

// Ext3Layer serves an Apptainer ext3 overlay image (package ext3) as a
// layer: its root is the image's upper/ directory and its work directory
// is work/ (COMPAT §3.3). Writable when the ext3.FS was opened writable.
// A Node is the ext3 inode number.
type Ext3Layer struct {
	fs    *ext3.FS
	upper uint32
	name  string // the image, for errors; "" if unknown
}

var _ Writable = (*Ext3Layer)(nil)

// Named sets the name of the image (file, and partition) that errors other
// than POSIX conditions carry (see [LayerError]), and returns e.
func (e *Ext3Layer) Named(name string) *Ext3Layer {
	e.name = name
	return e
}

// err names the image in err (see nameErr).
func (e *Ext3Layer) err(err error) error { return nameErr(e.name, err) }

// node converts an ext3 result to a layer one.
func (e *Ext3Layer) node(a ext3.Attr, err error) (Node, Attr, error) {
	n, at, err := ext3Node(a, err)
	return n, at, e.err(err)
}

// NewExt3Layer wraps an open ext3 image. For a writable image, upper/ and
// work/ are made (mode 0755, root-owned) if missing, as Apptainer does;
// a read-only one must have upper/. work is 0 for a read-only image.
func NewExt3Layer(f *ext3.FS, writable bool) (l *Ext3Layer, work Node, err error) {
	up, err := ext3Dir(f, "upper", writable)
	if err != nil {
		return nil, 0, err
	}
	if writable {
		w, err := ext3Dir(f, "work", true)
		if err != nil {
			return nil, 0, err
		}
		work = Node(w)
	}
	return &Ext3Layer{fs: f, upper: up}, work, nil
}

// ext3Dir finds (or, if create, makes) directory name in the image root.
func ext3Dir(f *ext3.FS, name string, create bool) (uint32, error) {
	a, err := f.Lookup(ext3.RootIno, name)
	if isErrno(err, syscall.ENOENT) && create {
		a, err = f.Mkdir(ext3.RootIno, name, 0755, 0, 0)
	}
	if err != nil {
		return 0, fmt.Errorf("fusefs: ext3 overlay /%s: %w", name, err)
	}
	if a.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return 0, fmt.Errorf("fusefs: ext3 overlay /%s: %w", name, syscall.ENOTDIR)
	}
	return a.Ino, nil
}

func ext3Attr(a ext3.Attr) Attr {
	return Attr{Ino: uint64(a.Ino), Mode: a.Mode, Nlink: a.Nlink, Uid: a.Uid, Gid: a.Gid,
		Size: a.Size, Blocks: a.Blocks, Rdev: a.Rdev,
		Atime: Timespec(a.Atime), Mtime: Timespec(a.Mtime), Ctime: Timespec(a.Ctime)}
}

func ext3Node(a ext3.Attr, err error) (Node, Attr, error) {
	if err != nil {
		return 0, Attr{}, err
	}
	return Node(a.Ino), ext3Attr(a), nil
}

// Root implements Layer.
func (e *Ext3Layer) Root() Node { return Node(e.upper) }

// Lookup implements Layer.
func (e *Ext3Layer) Lookup(dir Node, name string) (Node, Attr, error) {
	return e.node(e.fs.Lookup(uint32(dir), name))
}

// Getattr implements Layer.
func (e *Ext3Layer) Getattr(n Node) (Attr, error) {
	a, err := e.fs.Getattr(uint32(n))
	return ext3Attr(a), e.err(err)
}

// ReadDir implements Layer.
func (e *Ext3Layer) ReadDir(dir Node) ([]Dirent, error) {
	ents, err := e.fs.ReadDir(uint32(dir))
	if err != nil {
		return nil, e.err(err)
	}
	out := make([]Dirent, 0, len(ents))
	for _, d := range ents {
		if d.Name == "." || d.Name == ".." {
			continue
		}
		mode := d.Type
		if mode == 0 { // no file type in the entry: ask the inode
			a, err := e.fs.Getattr(d.Ino)
			if err == syscall.ENOENT {
				// Unlinked since it was listed, or an entry naming a free
				// inode: Lookup tells which (ENOENT, or the damage), where
				// ENOENT here would end the listing as if the directory
				// had gone.
				if a, err = e.fs.Lookup(uint32(dir), d.Name); err == syscall.ENOENT {
					continue
				}
			}
			var ce *ext3.CorruptError
			if errors.As(err, &ce) {
				// Listed with no type, as ext4 lists it: a lookup of it
				// fails and warns, the rest of the directory is there.
				err, a = nil, ext3.Attr{}
			}
			if err != nil {
				return nil, e.err(err)
			}
			mode = a.Mode & syscall.S_IFMT
		}
		out = append(out, Dirent{Name: d.Name, Node: Node(d.Ino), Ino: uint64(d.Ino),
			Mode: mode})
	}
	return out, nil
}

// ReadAt implements Layer.
func (e *Ext3Layer) ReadAt(n Node, p []byte, off int64) (int, error) {
	k, err := e.fs.ReadAt(uint32(n), p, off)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return k, e.err(err)
}

// Lseek finds data and holes (SEEK_DATA, SEEK_HOLE) in file n.
func (e *Ext3Layer) Lseek(n Node, off int64, whence int) (int64, error) {
	r, err := e.fs.Lseek(uint32(n), off, whence)
	return r, e.err(err)
}

var _ seeker = (*Ext3Layer)(nil)

// Readlink implements Layer.
func (e *Ext3Layer) Readlink(n Node) (string, error) {
	t, err := e.fs.Readlink(uint32(n))
	return t, e.err(err)
}

// Listxattr implements Layer.
func (e *Ext3Layer) Listxattr(n Node) ([]string, error) {
	x, err := e.fs.Listxattr(uint32(n))
	return x, e.err(err)
}

// Getxattr implements Layer.
func (e *Ext3Layer) Getxattr(n Node, name string) ([]byte, error) {
	v, err := e.fs.Getxattr(uint32(n), name)
	return v, e.err(err)
}

// Statfs implements Layer.
func (e *Ext3Layer) Statfs() (Statfs, error) {
	s := e.fs.Statfs()
	return Statfs{Bsize: s.Bsize, Blocks: s.Blocks, Bfree: s.Bfree, Bavail: s.Bavail,
		Files: s.Files, Ffree: s.Ffree, NameLen: s.NameLen}, nil
}

// Create implements Writable.
func (e *Ext3Layer) Create(dir Node, name string, mode, uid, gid uint32) (Node, Attr, error) {
	return e.node(e.fs.Create(uint32(dir), name, mode, uid, gid))
}

// Mkdir implements Writable.
func (e *Ext3Layer) Mkdir(dir Node, name string, mode, uid, gid uint32) (Node, Attr, error) {
	return e.node(e.fs.Mkdir(uint32(dir), name, mode, uid, gid))
}

// Mknod implements Writable.
func (e *Ext3Layer) Mknod(dir Node, name string, mode, rdev, uid, gid uint32) (Node, Attr, error) {
	return e.node(e.fs.Mknod(uint32(dir), name, mode, rdev, uid, gid))
}

// Symlink implements Writable.
func (e *Ext3Layer) Symlink(dir Node, name, target string, uid, gid uint32) (Node, Attr, error) {
	return e.node(e.fs.Symlink(uint32(dir), name, target, uid, gid))
}

// Link implements Writable.
func (e *Ext3Layer) Link(n Node, dir Node, name string) (Attr, error) {
	a, err := e.fs.Link(uint32(n), uint32(dir), name)
	return ext3Attr(a), e.err(err)
}

// Unlink implements Writable.
func (e *Ext3Layer) Unlink(dir Node, name string) error {
	return e.err(e.fs.Unlink(uint32(dir), name))
}

// Rmdir implements Writable.
func (e *Ext3Layer) Rmdir(dir Node, name string) error {
	return e.err(e.fs.Rmdir(uint32(dir), name))
}

// Rename implements Writable.
func (e *Ext3Layer) Rename(oldDir Node, oldName string, newDir Node, newName string,
	flags uint32) error {
	return e.err(e.fs.Rename(uint32(oldDir), oldName, uint32(newDir), newName, flags))
}

// Setattr implements Writable.
func (e *Ext3Layer) Setattr(n Node, in SetAttr) (Attr, error) {
	a, err := e.fs.Setattr(uint32(n), ext3.SetAttr{SetMode: in.SetMode, Mode: in.Mode,
		SetUid: in.SetUid, Uid: in.Uid, SetGid: in.SetGid, Gid: in.Gid,
		SetSize: in.SetSize, Size: in.Size,
		SetAtime: in.SetAtime, Atime: ext3.Timespec(in.Atime),
		SetMtime: in.SetMtime, Mtime: ext3.Timespec(in.Mtime),
		SetCtime: in.SetCtime, Ctime: ext3.Timespec(in.Ctime)})
	return ext3Attr(a), e.err(err)
}

// WriteAt implements Writable.
func (e *Ext3Layer) WriteAt(n Node, p []byte, off int64) (int, error) {
	k, err := e.fs.WriteAt(uint32(n), p, off)
	return k, e.err(err)
}

// Fallocate implements Writable.
func (e *Ext3Layer) Fallocate(n Node, off, length int64, mode uint32) error {
	return e.err(e.fs.Fallocate(uint32(n), off, length, mode))
}

// Setxattr implements Writable.
func (e *Ext3Layer) Setxattr(n Node, name string, value []byte, flags uint32) error {
	return e.err(e.fs.Setxattr(uint32(n), name, value, flags))
}

// Removexattr implements Writable.
func (e *Ext3Layer) Removexattr(n Node, name string) error {
	return e.err(e.fs.Removexattr(uint32(n), name))
}

// Open implements Writable.
func (e *Ext3Layer) Open(n Node) error { return e.err(e.fs.Open(uint32(n))) }

// Release implements Writable.
func (e *Ext3Layer) Release(n Node) error { return e.err(e.fs.Release(uint32(n))) }

// Fsync implements Writable.
func (e *Ext3Layer) Fsync(n Node, datasync bool) error {
	return e.err(e.fs.Fsync(uint32(n), datasync))
}

// Sync implements Writable.
func (e *Ext3Layer) Sync() error { return e.err(e.fs.Sync()) }
