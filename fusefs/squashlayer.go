package fusefs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/husk-project/husk/squash"
)

// SquashLayer serves a squashfs image (package squash) as a read-only
// layer. A Node is the squashfs inode reference. Squashfs keeps one
// timestamp, reported as atime, mtime and ctime.
type SquashLayer struct {
	fs   *squash.FS
	name string // the image, for errors; "" if unknown

	// fd and base: the image file and the squashfs section's offset in
	// it, when known (Backed); uncompressed data is then spliced.
	fd     uintptr
	base   int64
	backed bool
	// spliced counts reads answered by ReadExtent; read by tests.
	spliced atomic.Int64
}

// NewSquashLayer wraps an open squashfs image.
func NewSquashLayer(f *squash.FS) *SquashLayer { return &SquashLayer{fs: f} }

var _ Layer = (*SquashLayer)(nil)

// Named sets the name of the image (file, and partition) that errors other
// than POSIX conditions carry (see [LayerError]), and returns s.
func (s *SquashLayer) Named(name string) *SquashLayer {
	s.name = name
	return s
}

// Backed tells s that its squashfs section starts at offset base of file
// f, which stays open while s is used, and returns s. Reads of data the
// image stores uncompressed (incompressible files, such as archives and
// media) are then answered by splicing it from f, without copying it
// through the server.
func (s *SquashLayer) Backed(f *os.File, base int64) *SquashLayer {
	s.fd, s.base, s.backed = f.Fd(), base, true
	return s
}

// extentReader is implemented by layers that can say where in an open
// file a read's bytes lie as they are (see SquashLayer.Backed).
type extentReader interface {
	// ReadExtent returns the file and offset holding the size bytes of n
	// at off, and how many there are (fewer at the end of the file), for
	// go-fuse to splice; ok is false when they must be read with ReadAt
	// (stored compressed, or not spliced whole: see spliceFits).
	ReadExtent(n Node, size int, off int64) (fd uintptr, at int64, k int, ok bool)
}

// ReadExtent implements extentReader.
func (s *SquashLayer) ReadExtent(n Node, size int, off int64) (uintptr, int64, int, bool) {
	if !s.backed {
		return 0, 0, 0, false
	}
	i, err := s.fs.Inode(squash.Ref(n))
	if err != nil {
		return 0, 0, 0, false // ReadAt reports it
	}
	start, k, ok := s.fs.StoredExtent(i, off, size)
	if !ok || !spliceFits(s.base+start, k) {
		return 0, 0, 0, false
	}
	s.spliced.Add(1)
	return s.fd, s.base + start, k, true
}

// spliceFits tells whether go-fuse can splice the k bytes at offset at of
// a file into its reply whole. It sizes its pipe by bytes, the reply's
// 16-byte header and k plus one page, but a pipe holds whole pages: the
// header takes one, and data that starts inside a page spans one page
// more than k alone. A splice that does not fit comes up short, and
// go-fuse takes that for the end of the file: the kernel then shrinks
// the file (`cat` of a 255,232-byte file stored at an odd offset lost its
// last 280 bytes). Such a read is copied instead. This follows go-fuse
// v2.12's trySplice; TestSplicedReadsUnaligned checks it against the
// go-fuse that husk is built with.
func spliceFits(at int64, k int) bool {
	if k <= 0 {
		return true
	}
	page := int64(unix.Getpagesize())
	spans := (at+int64(k)-1)/page - at/page + 1
	slots := (replyHeader + int64(k) + page + page - 1) / page
	return spans+1 <= slots
}

// replyHeader is the size of a FUSE reply's header (fuse_out_header).
const replyHeader = 16

// err names the image in err (see nameErr).
func (s *SquashLayer) err(err error) error { return nameErr(s.name, err) }

func squashAttr(n *squash.Inode) Attr {
	t := Timespec{Sec: n.Mtime}
	return Attr{Ino: uint64(n.Ino), Mode: n.Mode, Nlink: n.Nlink, Uid: n.Uid, Gid: n.Gid,
		Size: n.Size, Blocks: squashBlocks(n), Rdev: n.Rdev,
		Atime: t, Mtime: t, Ctime: t}
}

// squashBlocks is st_blocks as the kernel's squashfs gives it: the size in
// 512-byte units less the sparse blocks, which is how cp and tar --sparse
// tell a file has holes worth looking for (SEEK_HOLE, see Lseek).
func squashBlocks(n *squash.Inode) uint64 {
	return (n.Size - min(n.Sparse, n.Size) + 511) / 512
}

func (s *SquashLayer) inode(n Node) (*squash.Inode, error) {
	i, err := s.fs.Inode(squash.Ref(n))
	return i, s.err(err)
}

// Root implements Layer.
func (s *SquashLayer) Root() Node { return Node(s.fs.Root()) }

// Lookup implements Layer.
func (s *SquashLayer) Lookup(dir Node, name string) (Node, Attr, error) {
	d, err := s.inode(dir)
	if err != nil {
		return 0, Attr{}, err
	}
	n, err := s.fs.Lookup(d, name)
	if err != nil {
		return 0, Attr{}, s.err(err)
	}
	return Node(n.Ref), squashAttr(n), nil
}

// Getattr implements Layer.
func (s *SquashLayer) Getattr(n Node) (Attr, error) {
	i, err := s.inode(n)
	if err != nil {
		return Attr{}, err
	}
	return squashAttr(i), nil
}

// ReadDir implements Layer.
func (s *SquashLayer) ReadDir(dir Node) ([]Dirent, error) {
	d, err := s.inode(dir)
	if err != nil {
		return nil, err
	}
	ents, n, err := s.fs.DirEntries(d)
	if err != nil {
		return nil, s.err(err)
	}
	out := make([]Dirent, 0, n)
	for e := range ents {
		out = append(out, Dirent{Name: e.Name, Node: Node(e.Ref), Ino: uint64(e.Ino),
			Mode: e.Type})
	}
	return out, nil
}

// ReadAt implements Layer.
func (s *SquashLayer) ReadAt(n Node, p []byte, off int64) (int, error) {
	i, err := s.inode(n)
	if err != nil {
		return 0, err
	}
	k, err := s.fs.ReadAt(i, p, off)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return k, s.err(err)
}

// Lseek implements seeker: blocks the image stores as sparse are holes.
func (s *SquashLayer) Lseek(n Node, off int64, whence int) (int64, error) {
	i, err := s.inode(n)
	if err != nil {
		return 0, err
	}
	r, err := s.fs.SeekData(i, off, whence == unix.SEEK_HOLE)
	return r, s.err(err)
}

// Readlink implements Layer.
func (s *SquashLayer) Readlink(n Node) (string, error) {
	i, err := s.inode(n)
	if err != nil {
		return "", err
	}
	target, err := s.fs.Readlink(i)
	return target, s.err(err)
}

// Listxattr implements Layer.
func (s *SquashLayer) Listxattr(n Node) ([]string, error) {
	i, err := s.inode(n)
	if err != nil {
		return nil, err
	}
	xs, err := s.fs.Xattrs(i)
	if err != nil {
		return nil, s.err(err)
	}
	names := make([]string, len(xs))
	for k, x := range xs {
		names[k] = x.Name
	}
	return names, nil
}

// Getxattr implements Layer.
func (s *SquashLayer) Getxattr(n Node, name string) ([]byte, error) {
	i, err := s.inode(n)
	if err != nil {
		return nil, err
	}
	xs, err := s.fs.Xattrs(i)
	if err != nil {
		return nil, s.err(err)
	}
	for _, x := range xs {
		if x.Name == name {
			return x.Value, nil
		}
	}
	return nil, syscall.ENODATA
}

// Statfs implements Layer: a full file system of the image's size.
func (s *SquashLayer) Statfs() (Statfs, error) {
	bs := s.fs.BlockSize()
	if bs == 0 {
		return Statfs{}, fmt.Errorf("fusefs: squash layer: block size 0")
	}
	return Statfs{Bsize: bs, Blocks: (s.fs.BytesUsed() + uint64(bs) - 1) / uint64(bs),
		Files: uint64(s.fs.Inodes()), NameLen: 256}, nil
}
