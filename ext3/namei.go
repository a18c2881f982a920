package ext3

import (
	"math/rand/v2"
	"strings"
	"syscall"
)

// linkMax is EXT2_LINK_MAX: the most links an inode (and subdirectories a
// directory) may have.
const linkMax = 32000

// Getattr returns the attributes of inode ino.
func (f *FS) Getattr(ino uint32) (Attr, error) {
	in, err := f.igetLive(ino)
	if err != nil {
		return Attr{}, err
	}
	defer f.iput(in)
	in.mu.RLock()
	defer in.mu.RUnlock()
	return in.attr(), nil
}

// igetLive is iget that refuses free inodes with ENOENT.
func (f *FS) igetLive(ino uint32) (*inode, error) {
	if !f.validIno(ino) {
		return nil, syscall.ENOENT
	}
	in, err := f.iget(ino)
	if err != nil {
		return nil, err
	}
	in.mu.RLock()
	dead := in.mode() == 0 || (in.nlink() == 0 && !in.orphan)
	in.mu.RUnlock()
	if dead {
		f.iput(in)
		return nil, syscall.ENOENT
	}
	return in, nil
}

// igetDir returns directory dir, or ENOTDIR.
func (f *FS) igetDir(dir uint32) (*inode, error) {
	in, err := f.igetLive(dir)
	if err != nil {
		return nil, err
	}
	if !in.isDir() {
		f.iput(in)
		return nil, syscall.ENOTDIR
	}
	return in, nil
}

func checkName(name string) error {
	switch {
	case len(name) > maxNameLen:
		return syscall.ENAMETOOLONG
	case name == "" || strings.ContainsRune(name, '/') || strings.ContainsRune(name, 0):
		return syscall.EINVAL
	}
	return nil
}

// Lookup finds name in directory dir.
func (f *FS) Lookup(dir uint32, name string) (Attr, error) {
	if err := checkName(name); err != nil {
		return Attr{}, err
	}
	d, err := f.igetDir(dir)
	if err != nil {
		return Attr{}, err
	}
	defer f.iput(d)
	d.mu.RLock()
	ino, _, err := f.dirLookup(d, name)
	d.mu.RUnlock()
	if err != nil {
		return Attr{}, err
	}
	if !f.validIno(ino) {
		return Attr{}, corrupt("directory entry", 0, dir, "%q points at inode %d", name, ino)
	}
	a, err := f.Getattr(ino)
	if err == syscall.ENOENT && f.stillNames(d, name, ino) {
		// Not unlinked since: the entry names a free inode. ENOENT
		// would hide it (a listing ends there, as if the directory
		// went away), where ext4 reports the damage.
		return Attr{}, corrupt("directory entry", 0, dir, "%q points at free inode %d",
			name, ino)
	}
	return a, err
}

// stillNames reports whether name in directory d is still inode ino.
func (f *FS) stillNames(d *inode, name string, ino uint32) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	got, _, err := f.dirLookup(d, name)
	return err == nil && got == ino
}

// ReadDir lists directory dir without "." and "..".
func (f *FS) ReadDir(dir uint32) ([]DirEntry, error) {
	d, err := f.igetDir(dir)
	if err != nil {
		return nil, err
	}
	defer f.iput(d)
	d.mu.RLock()
	defer d.mu.RUnlock()
	ents, err := f.readDir(d)
	if err != nil || f.filetype {
		return ents, err
	}
	for i := range ents {
		if a, err := f.Getattr(ents[i].Ino); err == nil {
			ents[i].Type = a.Mode & sIFMT
		}
	}
	return ents, nil
}

// Readlink returns the target of symlink ino.
func (f *FS) Readlink(ino uint32) (string, error) {
	in, err := f.igetLive(ino)
	if err != nil {
		return "", err
	}
	defer f.iput(in)
	in.mu.RLock()
	defer in.mu.RUnlock()
	if !in.isLnk() {
		return "", syscall.EINVAL
	}
	size := in.size()
	if in.isFastSymlink() {
		return string(in.raw[iBlock : iBlock+int(size)]), nil
	}
	if size >= uint64(f.bs) {
		return "", corrupt("symlink", 0, ino, "target of %d bytes", size)
	}
	p, err := f.bmap(in, 0)
	if err != nil {
		return "", err
	}
	if p == 0 {
		return "", corrupt("symlink", 0, ino, "no data block")
	}
	b, err := f.cache.get(p)
	if err != nil {
		return "", err
	}
	defer f.cache.put(b)
	return string(b.data[:size]), nil
}

// newInode allocates and initialises an inode near dir.
// Preconditions: op held shared.
func (f *FS) newInode(dir uint32, mode, uid, gid uint32) (*inode, error) {
	ino, err := f.allocInode(dir, mode&sIFMT == sIFDIR)
	if err != nil {
		return nil, err
	}
	in := &inode{ino: ino, raw: make([]byte, f.inodeSize), refs: 1}
	if f.inodeSize > goodOldInode {
		in.set16(iExtraIsize, extraIsize)
	}
	in.set16(iMode, uint16(mode))
	in.setUID(uid)
	in.setGID(gid)
	t := now()
	in.setTime(tsAtime, t)
	in.setTime(tsMtime, t)
	in.setTime(tsCtime, t)
	if in.extraSize() >= iCrtimeExtra+4-goodOldInode {
		in.set32(iCrtime, uint32(t.Sec))
		in.set32(iCrtimeExtra, t.Nsec<<2)
	}
	in.set32(iGeneration, rand.Uint32())
	f.imu.Lock()
	f.inodes[ino] = in
	// Creates must bound the inode cache too: an untar makes thousands
	// of inodes without a single cache miss.
	f.evictInodesLocked()
	f.imu.Unlock()
	return in, nil
}

// Create makes a regular file.
func (f *FS) Create(dir uint32, name string, mode, uid, gid uint32) (Attr, error) {
	return f.mknod(dir, name, sIFREG|mode&07777, 0, uid, gid, "")
}

// Mkdir makes a directory.
func (f *FS) Mkdir(dir uint32, name string, mode, uid, gid uint32) (Attr, error) {
	return f.mknod(dir, name, sIFDIR|mode&07777, 0, uid, gid, "")
}

// Mknod makes a device, fifo, socket or regular file; rdev uses the
// kernel's new_encode_dev layout.
func (f *FS) Mknod(dir uint32, name string, mode, rdev, uid, gid uint32) (Attr, error) {
	switch mode & sIFMT {
	case sIFCHR, sIFBLK, sIFIFO, sIFSOCK, sIFREG:
	case 0:
		mode |= sIFREG
	default:
		return Attr{}, syscall.EINVAL
	}
	return f.mknod(dir, name, mode, rdev, uid, gid, "")
}

// Symlink makes a symbolic link to target.
func (f *FS) Symlink(dir uint32, name, target string, uid, gid uint32) (Attr, error) {
	if len(target) == 0 {
		return Attr{}, syscall.ENOENT
	}
	if len(target) >= f.bs {
		return Attr{}, syscall.ENAMETOOLONG
	}
	return f.mknod(dir, name, sIFLNK|0777, 0, uid, gid, target)
}

func (f *FS) mknod(dir uint32, name string, mode, rdev, uid, gid uint32,
	target string) (Attr, error) {
	var a Attr
	err := f.retryNoSpace(func() error {
		var err error
		a, err = f.mknod1(dir, name, mode, rdev, uid, gid, target)
		return err
	})
	return a, err
}

func (f *FS) mknod1(dir uint32, name string, mode, rdev, uid, gid uint32,
	target string) (Attr, error) {
	if err := checkName(name); err != nil {
		return Attr{}, err
	}
	if err := f.begin(); err != nil {
		return Attr{}, err
	}
	defer f.end()
	d, err := f.igetDir(dir)
	if err != nil {
		return Attr{}, err
	}
	defer f.iput(d)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.nlink() == 0 {
		return Attr{}, syscall.ENOENT
	}
	if _, _, err := f.dirLookup(d, name); err == nil {
		return Attr{}, syscall.EEXIST
	} else if err != syscall.ENOENT {
		return Attr{}, err
	}
	isDir := mode&sIFMT == sIFDIR
	if isDir && d.nlink() >= linkMax {
		return Attr{}, syscall.EMLINK
	}
	in, err := f.newInode(dir, mode, uid, gid)
	if err != nil {
		return Attr{}, err
	}
	defer f.iput(in)
	in.mu.Lock()
	defer in.mu.Unlock()
	if err := f.fillNew(d, in, rdev, target); err != nil {
		f.undoNew(in, isDir)
		return Attr{}, err
	}
	if err := f.dirAdd(d, name, in.ino, ftOf(mode), f.reserveFor(uid)); err != nil {
		f.undoNew(in, isDir)
		return Attr{}, err
	}
	if isDir {
		d.setNlink(d.nlink() + 1)
	}
	t := in.time(tsCtime)
	d.setTime(tsMtime, t)
	d.setTime(tsCtime, t)
	if err := f.writeInode(d); err != nil {
		return Attr{}, err
	}
	return in.attr(), nil
}

// fillNew gives a new inode its content: a directory block, a symlink
// target or a device number; then writes it.
func (f *FS) fillNew(d, in *inode, rdev uint32, target string) error {
	switch in.ftype() {
	case sIFDIR:
		in.setNlink(2)
		p, _, _, err := f.bmapAlloc(in, 0, 1, f.mayUseReserve(in))
		if err != nil {
			return err
		}
		b := f.cache.getNew(p)
		f.initDirBlock(b.data, in.ino, d.ino)
		f.cache.markDirty(b)
		f.cache.put(b)
		in.setSize(uint64(f.bs))
	case sIFLNK:
		in.setNlink(1)
		if len(target) < 60 {
			copy(in.raw[iBlock:iBlock+60], target)
		} else {
			p, _, _, err := f.bmapAlloc(in, 0, 1, f.mayUseReserve(in))
			if err != nil {
				return err
			}
			b := f.cache.getNew(p)
			copy(b.data, target)
			f.cache.markDirty(b)
			f.cache.put(b)
		}
		in.setSize(uint64(len(target)))
	case sIFCHR, sIFBLK:
		in.setNlink(1)
		in.setRdev(rdev)
	default:
		in.setNlink(1)
	}
	return f.writeInode(in)
}

// undoNew releases a half-made inode after a failure (ENOSPC). Only a
// block map is freed: the i_block of a device or a fast symlink holds its
// number or target, which read as block numbers would free blocks that
// belong to other files.
func (f *FS) undoNew(in *inode, isDir bool) {
	if in.hasBlockMap() {
		f.freeRange(in, 0, f.maxBlocks())
	}
	in.setNlink(0)
	in.set32(iDtime, uint32(now().Sec))
	f.writeInode(in)
	f.imu.Lock()
	delete(f.inodes, in.ino)
	f.imu.Unlock()
	f.freeInodeBit(in.ino, isDir)
}

// Link adds a hard link name in dir to inode ino.
func (f *FS) Link(ino, dir uint32, name string) (Attr, error) {
	var a Attr
	err := f.retryNoSpace(func() error {
		var err error
		a, err = f.link(ino, dir, name)
		return err
	})
	return a, err
}

func (f *FS) link(ino, dir uint32, name string) (Attr, error) {
	if err := checkName(name); err != nil {
		return Attr{}, err
	}
	if err := f.begin(); err != nil {
		return Attr{}, err
	}
	defer f.end()
	d, err := f.igetDir(dir)
	if err != nil {
		return Attr{}, err
	}
	defer f.iput(d)
	in, err := f.igetLive(ino)
	if err != nil {
		return Attr{}, err
	}
	defer f.iput(in)
	if in.isDir() {
		return Attr{}, syscall.EPERM
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.nlink() == 0 || d.nlink() == 0 {
		return Attr{}, syscall.ENOENT
	}
	if in.nlink() >= linkMax {
		return Attr{}, syscall.EMLINK
	}
	if _, _, err := f.dirLookup(d, name); err == nil {
		return Attr{}, syscall.EEXIST
	} else if err != syscall.ENOENT {
		return Attr{}, err
	}
	if err := f.dirAdd(d, name, ino, ftOf(in.mode()), f.mayUseReserve(in)); err != nil {
		return Attr{}, err
	}
	t := now()
	in.setNlink(in.nlink() + 1)
	in.setTime(tsCtime, t)
	d.setTime(tsMtime, t)
	d.setTime(tsCtime, t)
	if err := f.writeInode(in); err != nil {
		return Attr{}, err
	}
	return in.attr(), f.writeInode(d)
}

// Unlink removes name (not a directory) from dir.
func (f *FS) Unlink(dir uint32, name string) error {
	return f.remove(dir, name, false)
}

// Rmdir removes the empty directory name from dir.
func (f *FS) Rmdir(dir uint32, name string) error {
	return f.remove(dir, name, true)
}

func (f *FS) remove(dir uint32, name string, wantDir bool) error {
	if err := checkName(name); err != nil {
		return err
	}
	if name == "." {
		return syscall.EINVAL
	}
	if name == ".." {
		return syscall.ENOTEMPTY
	}
	if err := f.begin(); err != nil {
		return err
	}
	defer f.end()
	d, err := f.igetDir(dir)
	if err != nil {
		return err
	}
	defer f.iput(d)
	d.mu.Lock()
	defer d.mu.Unlock()
	ino, _, err := f.dirLookup(d, name)
	if err != nil {
		return err
	}
	if ino == d.ino || !f.validIno(ino) {
		return corrupt("directory entry", 0, d.ino, "%q points at inode %d", name, ino)
	}
	in, err := f.igetLive(ino)
	if err != nil {
		return err
	}
	defer f.iput(in)
	in.mu.Lock()
	defer in.mu.Unlock()
	if wantDir != in.isDir() {
		if wantDir {
			return syscall.ENOTDIR
		}
		return syscall.EISDIR
	}
	if wantDir {
		if empty, err := f.dirEmpty(in); err != nil {
			return err
		} else if !empty {
			return syscall.ENOTEMPTY
		}
	}
	if err := f.dirRemove(d, name); err != nil {
		return err
	}
	t := now()
	d.setTime(tsMtime, t)
	d.setTime(tsCtime, t)
	if wantDir && d.nlink() > 2 {
		d.setNlink(d.nlink() - 1)
	}
	if err := f.writeInode(d); err != nil {
		return err
	}
	return f.dropLink(in, t)
}

// dropLink removes one name of in (all of them for a directory) and frees
// or orphans it when none is left.
// Preconditions: in.mu held exclusively, op held shared.
func (f *FS) dropLink(in *inode, t Timespec) error {
	if in.isDir() || in.nlink() <= 1 {
		in.setNlink(0)
	} else {
		in.setNlink(in.nlink() - 1)
	}
	in.setTime(tsCtime, t)
	if in.nlink() > 0 {
		return f.writeInode(in)
	}
	f.imu.Lock()
	open := in.opens > 0
	if open {
		in.orphan = true
	} else {
		in.dying = true // see Release
	}
	f.imu.Unlock()
	if open {
		return f.addOrphan(in)
	}
	return f.deleteInode(in)
}
