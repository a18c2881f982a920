package fusefs

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// File data and attribute changes of DirLayer.

// withFile runs fn with a descriptor of n open for reading and, when
// write is set, writing: the shared one from Open if any, else a fresh one.
func (d *DirLayer) withFile(n Node, write bool, fn func(fd int) error) error {
	if s := d.shared(n); s != nil {
		defer d.releaseFd(n, s)
		return fn(int(s.f.Fd()))
	}
	flags := unix.O_RDONLY
	if write {
		flags = unix.O_RDWR
	}
	fd, err := d.openFile(n, flags)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return fn(fd)
}

// openFile opens n itself with flags: the file at n's remembered name,
// if that is still n. A rename over the name gives it to another file,
// and opening that one in n's place would serve the new file's data at
// the old one's size (a trial's readers of a file replaced by rename
// read mixed versions); n itself, if still open, has a shared descriptor.
func (d *DirLayer) openFile(n Node, flags int) (int, error) {
	fd, err := d.openNode(n, flags)
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, &os.PathError{Op: "fstat", Path: fmt.Sprint("inode ", n), Err: err}
	}
	if Node(st.Ino) != n {
		// n is gone, or this name was remembered for it after a rename
		// gave the name to another file (in one traced case by the
		// Lookup clearWhiteout makes at the start of that rename). The
		// union answers ESTALE, and the kernel's second walk of the
		// path looks the name up again (nodeErrno).
		//
		// TODO: find what remembers the stale name; a file with a
		// second name then fails its first open by this one.
		unix.Close(fd)
		return -1, unix.ENOENT
	}
	return fd, nil
}

func (d *DirLayer) releaseFd(n Node, s *sharedFd) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s.refs--
	if s.refs == 0 {
		s.f.Close()
		if d.fds[n] == s {
			delete(d.fds, n)
		}
	}
}

// Open keeps a descriptor of n open until the matching Release, so that
// reads and writes need no path walk and an unlinked open file keeps its
// data. It opens read-write when it can, read-only otherwise.
func (d *DirLayer) Open(n Node) error {
	if d.shared(n) != nil {
		return nil // its reference is this Open's
	}
	fd, err := d.openFile(n, unix.O_RDWR)
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EROFS) {
		// Not writable on the host: reads only. Only then: a read-only
		// descriptor shared with a writer made its writes EBADF.
		fd, err = d.openFile(n, unix.O_RDONLY)
	}
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.fds[n]; s != nil {
		unix.Close(fd)
		s.refs++
		return nil
	}
	d.fds[n] = &sharedFd{f: os.NewFile(uintptr(fd), "dirlayer"), refs: 1}
	return nil
}

// Release ends an Open.
func (d *DirLayer) Release(n Node) error {
	d.mu.Lock()
	s := d.fds[n]
	d.mu.Unlock()
	if s != nil {
		d.releaseFd(n, s)
	}
	return nil
}

// ReadAt implements Layer.
func (d *DirLayer) ReadAt(n Node, p []byte, off int64) (int, error) {
	var got int
	err := d.withFile(n, false, func(fd int) error {
		for got < len(p) {
			k, err := unix.Pread(fd, p[got:], off+int64(got))
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return &os.PathError{Op: "pread", Path: fmt.Sprint("inode ", n), Err: err}
			}
			if k == 0 {
				break
			}
			got += k
		}
		return nil
	})
	return got, err
}

// shared returns n's descriptor from Open, with a reference the caller
// drops with releaseFd, or nil when n is not open.
func (d *DirLayer) shared(n Node) *sharedFd {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.fds[n]
	if s != nil {
		s.refs++
	}
	return s
}

// Setattr implements Writable. The change time cannot be set on a host
// file system; SetCtime is ignored (the host sets ctime itself).
func (d *DirLayer) Setattr(n Node, in SetAttr) (Attr, error) {
	if s := d.shared(n); s != nil {
		// Open: through the descriptor, which an unlinked file (or one
		// renamed over) still has, where its name is gone (fchmod or
		// ftruncate of an open temporary file).
		defer d.releaseFd(n, s)
		return d.setattrFd(int(s.f.Fd()), in)
	}
	fd, name, err := d.parentOf(n)
	if err != nil {
		return Attr{}, err
	}
	defer unix.Close(fd)
	a, err := d.statAt(fd, name)
	if err != nil {
		return Attr{}, err
	}
	if uid, gid, ok := in.owner(a); ok {
		if err := d.chown(fd, name, uid, gid); err != nil {
			return Attr{}, err
		}
	}
	if in.SetMode && a.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := unix.Fchmodat(fd, name, in.Mode&07777, 0); err != nil {
			return Attr{}, &os.PathError{Op: "fchmodat", Path: name, Err: err}
		}
	}
	if in.SetSize {
		err := d.withFile(n, true, func(f int) error { return unix.Ftruncate(f, int64(in.Size)) })
		if err != nil {
			return Attr{}, &os.PathError{Op: "ftruncate", Path: name, Err: err}
		}
	}
	if ts, ok := in.times(); ok {
		if err := unix.UtimesNanoAt(fd, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return Attr{}, &os.PathError{Op: "utimensat", Path: name, Err: err}
		}
	}
	return d.statAt(fd, name)
}

// setattrFd is Setattr of the file open as fd.
func (d *DirLayer) setattrFd(fd int, in SetAttr) (Attr, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return Attr{}, &os.PathError{Op: "fstat", Path: "open file", Err: err}
	}
	a := d.attr(&st)
	if uid, gid, ok := in.owner(a); ok {
		if err := d.chown(fd, "", uid, gid); err != nil {
			return Attr{}, err
		}
	}
	if in.SetMode {
		if err := unix.Fchmod(fd, in.Mode&07777); err != nil {
			return Attr{}, &os.PathError{Op: "fchmod", Path: "open file", Err: err}
		}
	}
	if in.SetSize {
		if err := unix.Ftruncate(fd, int64(in.Size)); err != nil {
			return Attr{}, &os.PathError{Op: "ftruncate", Path: "open file", Err: err}
		}
	}
	if ts, ok := in.times(); ok {
		// The descriptor's /proc link leads to the file itself, named or
		// not; thread-self, the table this thread uses (see package detach).
		p := fmt.Sprintf("/proc/thread-self/fd/%d", fd)
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, 0); err != nil {
			return Attr{}, &os.PathError{Op: "utimensat", Path: "open file", Err: err}
		}
	}
	if err := unix.Fstat(fd, &st); err != nil {
		return Attr{}, &os.PathError{Op: "fstat", Path: "open file", Err: err}
	}
	return d.attr(&st), nil
}

// WriteAt implements Writable.
func (d *DirLayer) WriteAt(n Node, p []byte, off int64) (int, error) {
	var done int
	err := d.withFile(n, true, func(fd int) error {
		for done < len(p) {
			k, err := unix.Pwrite(fd, p[done:], off+int64(done))
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return &os.PathError{Op: "pwrite", Path: fmt.Sprint("inode ", n), Err: err}
			}
			done += k
		}
		return nil
	})
	return done, err
}

// Fallocate implements Writable.
func (d *DirLayer) Fallocate(n Node, off, length int64, mode uint32) error {
	return d.withFile(n, true, func(fd int) error {
		if err := unix.Fallocate(fd, mode, off, length); err != nil {
			return &os.PathError{Op: "fallocate", Path: fmt.Sprint("inode ", n), Err: err}
		}
		return nil
	})
}

// Fsync implements Writable.
func (d *DirLayer) Fsync(n Node, datasync bool) error {
	return d.withFile(n, false, func(fd int) error {
		if datasync {
			return unix.Fdatasync(fd)
		}
		return unix.Fsync(fd)
	})
}

// Sync implements Writable.
func (d *DirLayer) Sync() error {
	if err := unix.Syncfs(int(d.root.Fd())); err != nil {
		return &os.PathError{Op: "syncfs", Path: d.root.Name(), Err: err}
	}
	return nil
}

// Lseek finds data or holes (SEEK_DATA, SEEK_HOLE) in n.
func (d *DirLayer) Lseek(n Node, off int64, whence int) (int64, error) {
	var res int64
	err := d.withFile(n, false, func(fd int) error {
		var err error
		res, err = unix.Seek(fd, off, whence)
		return err
	})
	return res, err
}

// owner returns the owner a change of in gives a file owned as in a,
// and whether in changes it.
func (in SetAttr) owner(a Attr) (uid, gid uint32, ok bool) {
	uid, gid = a.Uid, a.Gid
	if in.SetUid {
		uid = in.Uid
	}
	if in.SetGid {
		gid = in.Gid
	}
	return uid, gid, in.SetUid || in.SetGid
}

// times returns the utimensat times in sets (UTIME_OMIT for one it
// leaves), and whether it sets any.
func (in SetAttr) times() ([]unix.Timespec, bool) {
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
	if in.SetAtime {
		ts[0] = unix.Timespec{Sec: in.Atime.Sec, Nsec: int64(in.Atime.Nsec)}
	}
	if in.SetMtime {
		ts[1] = unix.Timespec{Sec: in.Mtime.Sec, Nsec: int64(in.Mtime.Nsec)}
	}
	return ts, in.SetAtime || in.SetMtime
}
