package ext3

import (
	"syscall"
)

// Rename flags (renameat2).
const (
	renameNoReplace = 1
	renameExchange  = 2
)

// Rename moves oldDir/oldName to newDir/newName with POSIX rules: a
// directory may replace only an empty directory, a non-directory only a
// non-directory; a directory cannot move into its own subtree (EINVAL).
// flags may be RENAME_NOREPLACE or RENAME_EXCHANGE.
//
// Locking follows the kernel's lock_rename: renames between directories
// hold renameMu so ancestry is stable, parents are locked ancestor first,
// then the two children in inode number order.
func (f *FS) Rename(oldDir uint32, oldName string, newDir uint32, newName string,
	flags uint32) error {
	return f.retryNoSpace(func() error {
		for {
			err := f.rename(oldDir, oldName, newDir, newName, flags)
			if err != syscall.EAGAIN {
				return err
			}
		}
	})
}

func (f *FS) rename(oldDir uint32, oldName string, newDir uint32, newName string,
	flags uint32) error {
	if flags&^(renameNoReplace|renameExchange) != 0 || flags == renameNoReplace|renameExchange {
		return syscall.EINVAL
	}
	for _, n := range []string{oldName, newName} {
		if err := checkName(n); err != nil {
			return err
		}
		if n == "." || n == ".." {
			return syscall.EBUSY
		}
	}
	if err := f.begin(); err != nil {
		return err
	}
	defer f.end()
	if oldDir != newDir {
		f.renameMu.Lock()
		defer f.renameMu.Unlock()
	}
	od, err := f.igetDir(oldDir)
	if err != nil {
		return err
	}
	defer f.iput(od)
	nd := od
	if newDir != oldDir {
		if nd, err = f.igetDir(newDir); err != nil {
			return err
		}
		defer f.iput(nd)
	}

	// Look up both names before locking to learn the children, then
	// re-check under the locks.
	srcIno, err := f.lookupIno(od, oldName)
	if err != nil {
		return err
	}
	dstIno, err := f.lookupIno(nd, newName)
	if err != nil && err != syscall.ENOENT {
		return err
	}
	if srcIno == dstIno {
		return nil // same inode: POSIX says do nothing
	}
	for _, ino := range []uint32{srcIno, dstIno} {
		if ino == oldDir || ino == newDir || (ino != 0 && !f.validIno(ino)) {
			return corrupt("directory entry", 0, oldDir, "rename involves inode %d twice", ino)
		}
	}
	src, err := f.igetLive(srcIno)
	if err != nil {
		return err
	}
	defer f.iput(src)
	var dst *inode
	if dstIno != 0 {
		if dst, err = f.igetLive(dstIno); err != nil {
			return err
		}
		defer f.iput(dst)
	}
	if err := f.checkRename(od, nd, src, dst, flags); err != nil {
		return err
	}

	unlock := f.lockRename(od, nd, src, dst)
	defer unlock()
	// Names may have changed while unlocked (same-directory renames do
	// not hold renameMu); retry from the top in that case.
	if i, err := f.lookupInoLocked(od, oldName); err != nil || i != srcIno {
		return syscall.EAGAIN
	}
	if i, err := f.lookupInoLocked(nd, newName); (err == nil && i != dstIno) ||
		(err == syscall.ENOENT && dstIno != 0) {
		return syscall.EAGAIN
	}
	if flags&renameExchange != 0 {
		return f.exchange(od, nd, oldName, newName, src, dst)
	}
	return f.move(od, nd, oldName, newName, src, dst)
}

func (f *FS) lookupIno(d *inode, name string) (uint32, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return f.lookupInoLocked(d, name)
}

func (f *FS) lookupInoLocked(d *inode, name string) (uint32, error) {
	ino, _, err := f.dirLookup(d, name)
	return ino, err
}

// checkRename applies the POSIX type rules before anything is locked.
func (f *FS) checkRename(od, nd, src, dst *inode, flags uint32) error {
	if dst == nil {
		if flags&renameExchange != 0 {
			return syscall.ENOENT
		}
	} else {
		if flags&renameNoReplace != 0 {
			return syscall.EEXIST
		}
		if flags&renameExchange == 0 {
			switch {
			case src.isDir() && !dst.isDir():
				return syscall.ENOTDIR
			case !src.isDir() && dst.isDir():
				return syscall.EISDIR
			}
		}
	}
	if od == nd {
		return nil
	}
	// A directory may not move below itself.
	if src.isDir() {
		if in, err := f.isAncestor(src.ino, nd.ino); err != nil || in {
			return orErr(err, syscall.EINVAL)
		}
	}
	if dst != nil && dst.isDir() {
		if in, err := f.isAncestor(dst.ino, od.ino); err != nil || in {
			if flags&renameExchange != 0 {
				return orErr(err, syscall.EINVAL)
			}
			return orErr(err, syscall.ENOTEMPTY)
		}
	}
	return nil
}

func orErr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

// isAncestor reports whether directory a is d or one of its ancestors,
// walking ".." up to the root. Preconditions: renameMu held.
func (f *FS) isAncestor(a, d uint32) (bool, error) {
	for n := uint32(0); n <= f.sb.InodesCount; n++ {
		if d == a {
			return true, nil
		}
		if d == RootIno {
			return false, nil
		}
		in, err := f.igetDir(d)
		if err != nil {
			return false, err
		}
		parent, err := f.lookupIno(in, "..")
		f.iput(in)
		if err != nil {
			return false, err
		}
		d = parent
	}
	return false, corrupt("directory tree", 0, d, "loop in parent chain")
}

// lockRename locks the parents (ancestor first) and then the children by
// inode number, and returns the unlock function.
func (f *FS) lockRename(od, nd, src, dst *inode) func() {
	var order []*inode
	if od == nd {
		order = append(order, od)
	} else if anc, _ := f.isAncestor(nd.ino, od.ino); anc {
		order = append(order, nd, od)
	} else {
		order = append(order, od, nd)
	}
	kids := []*inode{src}
	if dst != nil {
		if dst.ino < src.ino {
			kids = []*inode{dst, src}
		} else {
			kids = append(kids, dst)
		}
	}
	order = append(order, kids...)
	for _, in := range order {
		in.mu.Lock()
	}
	return func() {
		for i := len(order) - 1; i >= 0; i-- {
			order[i].mu.Unlock()
		}
	}
}

// move performs a plain rename (replacing dst if present).
func (f *FS) move(od, nd *inode, oldName, newName string, src, dst *inode) error {
	t := now()
	ft := ftOf(src.mode())
	if dst != nil {
		if dst.isDir() {
			if empty, err := f.dirEmpty(dst); err != nil {
				return err
			} else if !empty {
				return syscall.ENOTEMPTY
			}
		}
		if err := f.dirRetarget(nd, newName, src.ino, ft); err != nil {
			return err
		}
	} else {
		if src.isDir() && od != nd && nd.nlink() >= linkMax {
			return syscall.EMLINK
		}
		if err := f.dirAdd(nd, newName, src.ino, ft, f.mayUseReserve(src)); err != nil {
			return err
		}
	}
	if err := f.dirRemove(od, oldName); err != nil {
		return err
	}
	if src.isDir() && od != nd {
		if err := f.dirRetarget(src, "..", nd.ino, ftDir); err != nil {
			return err
		}
		od.setNlink(od.nlink() - 1)
		if dst == nil {
			nd.setNlink(nd.nlink() + 1)
		}
	} else if src.isDir() && dst != nil {
		nd.setNlink(nd.nlink() - 1) // the replaced directory's ".."
	}
	src.setTime(tsCtime, t)
	for _, d := range []*inode{od, nd} {
		d.setTime(tsMtime, t)
		d.setTime(tsCtime, t)
	}
	if err := f.writeInode(src); err != nil {
		return err
	}
	if err := f.writeInode(od); err != nil {
		return err
	}
	if nd != od {
		if err := f.writeInode(nd); err != nil {
			return err
		}
	}
	if dst != nil {
		return f.dropLink(dst, t)
	}
	return nil
}

// exchange swaps two names atomically (RENAME_EXCHANGE).
func (f *FS) exchange(od, nd *inode, oldName, newName string, src, dst *inode) error {
	t := now()
	if err := f.dirRetarget(od, oldName, dst.ino, ftOf(dst.mode())); err != nil {
		return err
	}
	if err := f.dirRetarget(nd, newName, src.ino, ftOf(src.mode())); err != nil {
		return err
	}
	if od != nd {
		if src.isDir() {
			if err := f.dirRetarget(src, "..", nd.ino, ftDir); err != nil {
				return err
			}
			od.setNlink(od.nlink() - 1)
			nd.setNlink(nd.nlink() + 1)
		}
		if dst.isDir() {
			if err := f.dirRetarget(dst, "..", od.ino, ftDir); err != nil {
				return err
			}
			nd.setNlink(nd.nlink() - 1)
			od.setNlink(od.nlink() + 1)
		}
	}
	for _, in := range []*inode{src, dst} {
		in.setTime(tsCtime, t)
		if err := f.writeInode(in); err != nil {
			return err
		}
	}
	for _, d := range []*inode{od, nd} {
		d.setTime(tsMtime, t)
		d.setTime(tsCtime, t)
		if err := f.writeInode(d); err != nil {
			return err
		}
	}
	return nil
}
