package fusefs

import (
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/husk-project/husk/internal/procs"
)

// counted is the server's RawFileSystem counting in a procs.Load the
// requests a caller waits for, so that the scheduler can be sized to how
// many overlap (see package procs). RELEASE, FORGET and INTERRUPT, which
// the kernel sends without waiting, are not counted: a chain of round
// trips would overlap with them. Nor is SETLKW, which waits as long as
// another process holds the lock: every request meanwhile would count as
// parallel work. The rest left out (ioctl, locks, xattr changes,
// fallocate) are rare; they pass through uncounted.
type counted struct {
	fuse.RawFileSystem
	load *procs.Load
}

// Lookup implements fuse.RawFileSystem.
func (c counted) Lookup(cancel <-chan struct{}, header *fuse.InHeader, name string,
	out *fuse.EntryOut) fuse.Status {
	c.load.Enter()
	defer c.load.Leave()
	return c.RawFileSystem.Lookup(cancel, header, name, out)
}

// GetAttr implements fuse.RawFileSystem.
func (c counted) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn,
	out *fuse.AttrOut) fuse.Status {
	c.load.Enter()
	defer c.load.Leave()
	return c.RawFileSystem.GetAttr(cancel, in, out)
}

// SetAttr implements fuse.RawFileSystem.
func (c counted) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn,
	out *fuse.AttrOut) fuse.Status {
	c.load.Enter()
	defer c.load.Leave()
	return c.RawFileSystem.SetAttr(cancel, in, out)
}

// Mknod implements fuse.RawFileSystem.
func (c counted) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string,
	out *fuse.EntryOut) fuse.Status {
	c.load.Enter()
	defer c.load.Leave()
	return c.RawFileSystem.Mknod(cancel, in, name, out)
}

// Mkdir implements fuse.RawFileSystem.
func (c counted) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string,
	out *fuse.EntryOut) fuse.Status {
	c.load.Enter()
	defer c.load.Leave()
	return c.RawFileSystem.Mkdir(cancel, in, name, out)
}

// Unlink implements fuse.RawFileSystem.
func (c counted) Unlink(cancel <-chan struct{}, header *fuse.InHeader, name string) fuse.Status {
	c.load.Enter()
	defer c.load.Leave()
	return c.RawFileSystem.Unlink(cancel, header, name)
}

// Rmdir implements fuse.RawFileSystem.
func (c counted) Rmdir(cancel <-chan struct{}, header *fuse.InHeader, name string) fuse.Status {
	c.load.Enter()
	defer c.load.Leave()
	return c.RawFileSystem.Rmdir(cancel, header, name)
}

// Rename implements fuse.RawFileSystem.
func (c counted) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName,
	newName string) fuse.Status {
	c.load.Enter()
	defer c.load.Leave()
	return c.RawFileSystem.Rename(cancel, in, oldName, newName)
}

// Link implements fuse.RawFileSystem.
func (c counted) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string,
	out *fuse.EntryOut) fuse.Status {
	c.load.Enter()
	defer c.load.Leave()
	return c.RawFileSystem.Link(cancel, in, name, out)
}

// Symlink implements fuse.RawFileSystem.
func (c counted) Symlink(cancel <-chan struct{}, header *fuse.InHeader, target, name string,
	out *fuse.EntryOut) fuse.Status {
	c.load.Enter()
	defer c.load.Leave()
	return c.RawFileSystem.Symlink(cancel, header, target, name, out)
}

// Readlink implements fuse.RawFileSystem.
func (c counted) Readlink(cancel <-chan struct{}, header *fuse.InHeader) ([]byte, fuse.Status) {
	c.load.Enter()
	defer c.load.Leave()
	return c.RawFileSystem.Readlink(cancel, header)
}

// Access implements fuse.RawFileSystem.
func (c counted) Access(cancel <-chan struct{}, in *fuse.AccessIn) fuse.Status {
	c.load.Enter()
	defer c.load.Leave()
	return c.RawFileSystem.Access(cancel, in)
}

// GetXAttr implements fuse.RawFileSystem.
func (c counted) GetXAttr(cancel <-chan struct{}, header *fuse.InHeader, attr string,
	dest []byte) (uint32, fuse.Status) {
	c.load.Enter()
	defer c.load.Leave()
	return c.RawFileSystem.GetXAttr(cancel, header, attr, dest)
}

// ListXAttr implements fuse.RawFileSystem.
func (c counted) ListXAttr(cancel <-chan struct{}, header *fuse.InHeader, dest []byte) (uint32,
	fuse.Status) {
	c.load.Enter()
	defer c.load.Leave()
	return c.RawFileSystem.ListXAttr(cancel, header, dest)
}

// Create implements fuse.RawFileSystem.
func (c counted) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string,
	out *fuse.CreateOut) fuse.Status {
	c.load.Enter()
	defer c.load.Leave()
	return c.RawFileSystem.Create(cancel, in, name, out)
}

// Open implements fuse.RawFileSystem.
func (c counted) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	c.load.Enter()
	defer c.load.Leave()
	return c.RawFileSystem.Open(cancel, in, out)
}

// Read implements fuse.RawFileSystem.
func (c counted) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult,
	fuse.Status) {
	c.load.Enter()
	defer c.load.Leave()
	return c.RawFileSystem.Read(cancel, in, buf)
}

// Lseek implements fuse.RawFileSystem.
func (c counted) Lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	c.load.Enter()
	defer c.load.Leave()
	return c.RawFileSystem.Lseek(cancel, in, out)
}

// Write implements fuse.RawFileSystem.
func (c counted) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32,
	fuse.Status) {
	c.load.Enter()
	defer c.load.Leave()
	return c.RawFileSystem.Write(cancel, in, data)
}

// Writev implements fuse.RawFileSystem.
func (c counted) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32,
	fuse.Status) {
	c.load.Enter()
	defer c.load.Leave()
	return c.RawFileSystem.Writev(cancel, in, data)
}

// Flush implements fuse.RawFileSystem.
func (c counted) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	c.load.Enter()
	defer c.load.Leave()
	return c.RawFileSystem.Flush(cancel, in)
}

// Fsync implements fuse.RawFileSystem.
func (c counted) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	c.load.Enter()
	defer c.load.Leave()
	return c.RawFileSystem.Fsync(cancel, in)
}

// ReadDir implements fuse.RawFileSystem.
func (c counted) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn,
	out *fuse.DirEntryList) fuse.Status {
	c.load.Enter()
	defer c.load.Leave()
	return c.RawFileSystem.ReadDir(cancel, in, out)
}

// ReadDirPlus implements fuse.RawFileSystem.
func (c counted) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn,
	out *fuse.DirEntryList) fuse.Status {
	c.load.Enter()
	defer c.load.Leave()
	return c.RawFileSystem.ReadDirPlus(cancel, in, out)
}

// StatFs implements fuse.RawFileSystem.
func (c counted) StatFs(cancel <-chan struct{}, header *fuse.InHeader,
	out *fuse.StatfsOut) fuse.Status {
	c.load.Enter()
	defer c.load.Leave()
	return c.RawFileSystem.StatFs(cancel, header, out)
}

// Statx implements fuse.RawFileSystem.
func (c counted) Statx(cancel <-chan struct{}, in *fuse.StatxIn, out *fuse.StatxOut) fuse.Status {
	c.load.Enter()
	defer c.load.Leave()
	return c.RawFileSystem.Statx(cancel, in, out)
}
