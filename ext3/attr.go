package ext3

import "syscall"

// SetAttr selects the attributes Setattr changes.
type SetAttr struct {
	SetMode  bool
	Mode     uint32 // permission bits (07777); the file type is kept
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

// gone reports whether in was deleted after the caller looked it up.
// Preconditions: in.mu held.
func (f *FS) gone(in *inode) bool {
	if in.mode() == 0 {
		return true
	}
	if in.nlink() != 0 {
		return false
	}
	f.imu.Lock()
	defer f.imu.Unlock()
	return !in.orphan
}

// Setattr changes mode, owner, size and time stamps. A smaller size frees
// the blocks past the end. ctime is set to now unless given.
func (f *FS) Setattr(ino uint32, a SetAttr) (Attr, error) {
	if err := f.begin(); err != nil {
		return Attr{}, err
	}
	defer f.end()
	in, err := f.igetLive(ino)
	if err != nil {
		return Attr{}, err
	}
	defer f.iput(in)
	in.mu.Lock()
	defer in.mu.Unlock()
	if f.gone(in) {
		return Attr{}, syscall.ENOENT
	}
	if a.SetSize {
		if in.isDir() {
			return Attr{}, syscall.EISDIR
		}
		if !in.isReg() {
			return Attr{}, syscall.EINVAL
		}
		if a.Size != in.size() {
			if err := f.truncateLocked(in, a.Size); err != nil {
				return Attr{}, err
			}
			t := now()
			in.setTime(tsMtime, t)
		}
	}
	if a.SetMode {
		// The ACL first: if it cannot be stored, the mode stays too.
		if err := f.chmodACL(in, a.Mode); err != nil {
			return Attr{}, err
		}
		in.set16(iMode, uint16(in.mode()&sIFMT|a.Mode&07777))
	}
	if a.SetUid {
		in.setUID(a.Uid)
	}
	if a.SetGid {
		in.setGID(a.Gid)
	}
	if a.SetAtime {
		in.setTime(tsAtime, a.Atime)
	}
	if a.SetMtime {
		in.setTime(tsMtime, a.Mtime)
	}
	if a.SetCtime {
		in.setTime(tsCtime, a.Ctime)
	} else {
		in.setTime(tsCtime, now())
	}
	if err := f.writeInode(in); err != nil {
		return Attr{}, err
	}
	return in.attr(), nil
}
