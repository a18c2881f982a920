package fusefs

import (
	"bytes"
	"strings"
	"syscall"
)

// Whiteouts and opaque directories in the dialects of COMPAT §4.4.
//
// Reading accepts all of them: a char 0/0 device or a ".wh.<name>" file
// hides <name> in the layers below; a directory is opaque (hides every
// lower directory of the same name) when it has trusted.overlay.opaque=y,
// user.overlay.opaque=y or user.fuseoverlayfs.opaque=y, or contains a
// ".wh..wh..opq" entry. Names starting with ".wh." are never shown.
//
// Writing uses char 0/0 whiteouts (understood by the kernel, fuse-overlayfs
// and Apptainer) and, for opaque directories, trusted.overlay.opaque plus
// user.overlay.opaque when the upper accepts trusted.* xattrs; otherwise
// the fuse-overlayfs dialect: user.overlay.opaque, user.fuseoverlayfs.opaque
// and an empty ".wh..wh..opq" file of mode 0700.

const (
	whPrefix   = ".wh."
	whOpqFile  = ".wh..wh..opq"
	xTrustedOp = "trusted.overlay.opaque"
	xUserOp    = "user.overlay.opaque"
	xFuseOp    = "user.fuseoverlayfs.opaque"
)

// opaqueXattrs are the xattrs that mark a directory opaque.
var opaqueXattrs = []string{xTrustedOp, xUserOp, xFuseOp}

// privateXattr reports whether name is overlay housekeeping that the
// container must neither see nor set.
func privateXattr(name string) bool {
	return strings.HasPrefix(name, "trusted.overlay.") ||
		strings.HasPrefix(name, "user.overlay.") ||
		strings.HasPrefix(name, "user.fuseoverlayfs.")
}

// systemXattr reports whether name is in the system namespace, which
// file systems keep for attributes they give meaning to: ext4 refuses
// names it does not know there (EOPNOTSUPP), and those it knows are POSIX
// ACLs, which the kernel refuses itself for husk's mounts (like
// Apptainer's noacl), and its own inline data (system.data), which a
// user's setxattr once stored in the overlay as an attribute.
func systemXattr(name string) bool { return strings.HasPrefix(name, "system.") }

// hiddenName reports whether a stored name is whiteout machinery.
func hiddenName(name string) bool {
	return strings.HasPrefix(name, whPrefix)
}

// isWhiteout reports whether a is a char 0/0 whiteout.
func isWhiteout(a Attr) bool {
	return a.Mode&syscall.S_IFMT == syscall.S_IFCHR && a.Rdev == 0
}

// isOpaque reports whether directory dir of layer l is marked opaque in
// any dialect.
func (u *Union) isOpaque(l int, dir Node) bool {
	layer := u.layers[l]
	for _, x := range opaqueXattrs {
		if v, err := layer.Getxattr(dir, x); err == nil && bytes.Equal(v, []byte("y")) {
			return true
		}
	}
	_, _, err := layer.Lookup(dir, whOpqFile)
	return err == nil
}

// hasWhiteoutFile reports whether directory dir of layer l holds a
// ".wh.<name>" file hiding name.
func (u *Union) hasWhiteoutFile(l int, dir Node, name string) bool {
	if len(whPrefix)+len(name) > 255 {
		return false
	}
	_, a, err := u.layers[l].Lookup(dir, whPrefix+name)
	return err == nil && a.Mode&syscall.S_IFMT == syscall.S_IFREG
}

// makeWhiteout hides name of the lower layers below upper directory dir.
//
// Preconditions: the union directory of dir locked for writing; name is
// free in dir.
func (u *Union) makeWhiteout(dir Node, name string) error {
	uid, gid := u.markerOwner(dir)
	_, a, err := u.upper.Mknod(dir, name, syscall.S_IFCHR, 0, uid, gid)
	if err == nil {
		u.newUpperInode(a.Ino)
	}
	return err
}

// markerOwner is the owner given to whiteouts and opaque markers in upper
// directory dir: the directory's, which the upper can always store.
func (u *Union) markerOwner(dir Node) (uid, gid uint32) {
	if a, err := u.upper.Getattr(dir); err == nil {
		return a.Uid, a.Gid
	}
	return 0, 0
}

// clearWhiteout removes a whiteout of name from upper directory dir, in
// either dialect, and reports whether there was one.
//
// Preconditions: the union directory of dir locked for writing.
func (u *Union) clearWhiteout(dir Node, name string) (bool, error) {
	found := false
	if _, a, err := u.upper.Lookup(dir, name); err == nil && isWhiteout(a) {
		if err := u.upper.Unlink(dir, name); err != nil {
			return false, err
		}
		found = true
	}
	if len(whPrefix)+len(name) <= 255 {
		if _, _, err := u.upper.Lookup(dir, whPrefix+name); err == nil {
			if err := u.upper.Unlink(dir, whPrefix+name); err != nil {
				return false, err
			}
			found = true
		}
	}
	return found, nil
}

// markOpaque marks upper directory dir opaque and drops the whiteouts it
// holds (dropWhiteouts).
//
// Preconditions: the union directory of dir locked for writing.
func (u *Union) markOpaque(dir Node) error {
	if err := u.setOpaque(dir); err != nil {
		return err
	}
	return u.dropWhiteouts(dir)
}

// setOpaque sets the opaque marker of upper directory dir.
func (u *Union) setOpaque(dir Node) error {
	y := []byte("y")
	u.stMu.Lock()
	trusted := u.opaqueTrusted
	u.stMu.Unlock()
	if trusted >= 0 {
		err := u.upper.Setxattr(dir, xTrustedOp, y, 0)
		if err == nil {
			u.setOpaqueTrusted(1)
			return u.upper.Setxattr(dir, xUserOp, y, 0)
		}
		if e := errnoOf(err); e != syscall.EPERM && e != syscall.ENOTSUP &&
			e != syscall.EACCES {
			return err
		}
		u.setOpaqueTrusted(-1)
	}
	if err := u.upper.Setxattr(dir, xUserOp, y, 0); err != nil {
		return err
	}
	if err := u.upper.Setxattr(dir, xFuseOp, y, 0); err != nil {
		return err
	}
	uid, gid := u.markerOwner(dir)
	_, a, err := u.upper.Create(dir, whOpqFile, 0700, uid, gid)
	if err == nil {
		u.newUpperInode(a.Ino)
	}
	if isErrno(err, syscall.EEXIST) {
		return nil
	}
	return err
}

// cleanUpperDir removes the whiteout machinery (whiteouts, ".wh." files)
// left in upper directory dir so that it can be removed or replaced. It
// fails with ENOTEMPTY if dir holds anything else.
//
// Preconditions: the union directory of dir locked for writing.
func (u *Union) cleanUpperDir(dir Node) error {
	return u.removeMachinery(dir, true)
}

// dropWhiteouts removes the whiteouts (char 0/0 devices and ".wh.<name>"
// files, not the opaque marker) from upper directory dir, which is opaque.
// Nothing below an opaque directory merges, so they hide nothing; and the
// kernel's overlayfs, which reads an opaque directory as it is, would show
// each as a broken entry that keeps the directory from being removed.
//
// Preconditions: the union directory of dir locked for writing.
func (u *Union) dropWhiteouts(dir Node) error {
	return u.removeMachinery(dir, false)
}

// removeMachinery unlinks the whiteouts and ".wh." files in upper
// directory dir, the opaque marker file too if all. With all it fails
// with ENOTEMPTY at the first other entry; without, it keeps the others.
func (u *Union) removeMachinery(dir Node, all bool) error {
	ents, err := u.upper.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Mode&syscall.S_IFMT == syscall.S_IFCHR || hiddenName(e.Name) {
			if !all && e.Name == whOpqFile {
				continue
			}
			_, a, err := u.upper.Lookup(dir, e.Name)
			if err != nil {
				return err
			}
			if isWhiteout(a) || hiddenName(e.Name) && a.Mode&syscall.S_IFMT != syscall.S_IFDIR {
				if err := u.upper.Unlink(dir, e.Name); err != nil {
					return err
				}
				continue
			}
		}
		if all {
			return syscall.ENOTEMPTY
		}
	}
	return nil
}

// setOpaqueTrusted records whether the upper takes trusted.* xattrs.
func (u *Union) setOpaqueTrusted(v int) {
	u.stMu.Lock()
	u.opaqueTrusted = v
	u.stMu.Unlock()
}
