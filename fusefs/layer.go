package fusefs

// Node is a layer's own handle for one of its inodes. It is opaque to the
// union: an ext3 inode number, a squashfs inode reference, or a key into a
// directory layer's table. A handle stays valid for the life of the layer,
// across renames, and names the same inode for as long as the inode lives.
type Node uint64

// Timespec is a timestamp as stored on disk: seconds and nanoseconds.
type Timespec struct {
	Sec  int64
	Nsec uint32
}

// Attr is what a layer knows about one inode. Owners are stored as the
// container sees them (the user's own uid, or 0 under --fakeroot); the union
// translates them for the kernel.
type Attr struct {
	Ino    uint64 // inode number inside the layer (st_ino there)
	Mode   uint32 // st_mode: S_IF* type bits and permission bits
	Nlink  uint32
	Uid    uint32
	Gid    uint32
	Size   uint64
	Blocks uint64 // 512-byte units actually allocated
	Rdev   uint32 // device number, Linux encoding (unix.Mkdev)
	Atime  Timespec
	Mtime  Timespec
	Ctime  Timespec
}

// Dirent is one name in a directory listing. "." and ".." are never listed.
type Dirent struct {
	Name string
	Node Node
	Ino  uint64 // as Attr.Ino
	Mode uint32 // S_IF* type bits only
}

// Statfs is a layer's space accounting, in units of Bsize.
type Statfs struct {
	Bsize   uint32
	Blocks  uint64
	Bfree   uint64
	Bavail  uint64
	Files   uint64
	Ffree   uint64
	NameLen uint32
}

// Layer is one read-only level of the union. Methods are called from many
// goroutines at once. Errors that mean something to POSIX are returned as a
// syscall.Errno (possibly wrapped): ENOENT for a missing name, ENOTDIR,
// ENODATA for a missing xattr; anything else reaches the kernel as EIO and is
// logged.
type Layer interface {
	Root() Node
	Lookup(dir Node, name string) (Node, Attr, error)
	Getattr(n Node) (Attr, error)
	ReadDir(dir Node) ([]Dirent, error)
	ReadAt(n Node, p []byte, off int64) (int, error)
	Readlink(n Node) (string, error)
	Listxattr(n Node) ([]string, error)
	Getxattr(n Node, name string) ([]byte, error)
	Statfs() (Statfs, error)
}

// SetAttr says which attributes Setattr changes; fields whose Set* flag is
// false are ignored.
type SetAttr struct {
	SetMode  bool
	Mode     uint32 // permission bits only
	SetUid   bool
	Uid      uint32
	SetGid   bool
	Gid      uint32
	SetSize  bool
	Size     uint64
	SetAtime bool
	Atime    Timespec
	SetMtime bool
	Mtime    Timespec
	SetCtime bool
	Ctime    Timespec
}

// Rename flags, as renameat2(2).
const (
	RenameNoreplace = 0x1
	RenameExchange  = 0x2
)

// Writable is the one writable level of the union (the upper).
type Writable interface {
	Layer
	Create(dir Node, name string, mode, uid, gid uint32) (Node, Attr, error)
	Mkdir(dir Node, name string, mode, uid, gid uint32) (Node, Attr, error)
	// Mknod makes a device, fifo or socket; mode carries the S_IF* type.
	Mknod(dir Node, name string, mode, rdev, uid, gid uint32) (Node, Attr, error)
	Symlink(dir Node, name, target string, uid, gid uint32) (Node, Attr, error)
	Link(n Node, dir Node, name string) (Attr, error)
	Unlink(dir Node, name string) error
	Rmdir(dir Node, name string) error
	Rename(oldDir Node, oldName string, newDir Node, newName string, flags uint32) error
	Setattr(n Node, in SetAttr) (Attr, error)
	WriteAt(n Node, p []byte, off int64) (int, error)
	// Fallocate follows fallocate(2): mode 0, FALLOC_FL_KEEP_SIZE,
	// FALLOC_FL_PUNCH_HOLE|KEEP_SIZE, FALLOC_FL_ZERO_RANGE.
	Fallocate(n Node, off, length int64, mode uint32) error
	Setxattr(n Node, name string, value []byte, flags uint32) error
	Removexattr(n Node, name string) error
	// Open and Release bracket the time a file is open, so that an inode
	// unlinked while open keeps its data until the last Release.
	Open(n Node) error
	Release(n Node) error
	Fsync(n Node, datasync bool) error
	// Sync makes everything written so far durable (syncfs, unmount).
	Sync() error
}
