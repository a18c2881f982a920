package fusefs

import (
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// rawFS is go-fuse's node file system with what its node API does not
// hand on: the write flags. The kernel sets FUSE_WRITE_KILL_SUIDGID on a
// write through a direct-I/O handle (see createOpenFlags) when the
// writer may not keep set-id bits (no CAP_FSETID), and then leaves
// clearing them to the server, where a page-cache write clears them in
// the kernel (file_remove_privs) with a SETATTR.
type rawFS struct {
	fuse.RawFileSystem
}

// Writev implements fuse.RawFileSystem (go-fuse calls it for WRITE, and
// Write only when it says ENOSYS): set-id bits are cleared before the
// data is written, as the kernel's own write path does, through a SETATTR
// of just FATTR_KILL_SUIDGID (node.Setattr, killedMode).
func (r rawFS) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32,
	fuse.Status) {
	if in.WriteFlags&fuse.WRITE_KILL_SUIDGID != 0 {
		sa := fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: in.InHeader,
			Valid: fuse.FATTR_KILL_SUIDGID | fuse.FATTR_FH, Fh: in.Fh}}
		var out fuse.AttrOut
		if st := r.RawFileSystem.SetAttr(cancel, &sa, &out); !st.Ok() {
			return 0, st
		}
	}
	return r.RawFileSystem.Writev(cancel, in, data)
}

// killedMode returns the permission bits of n without the set-id bits a
// write, truncate or chown by an unprivileged caller clears (S_ISUID;
// S_ISGID only with group execute, else it marks mandatory locking), and
// whether that changes anything. Directories keep theirs.
func (n *node) killedMode() (uint32, bool) {
	a, err := n.attr()
	if err != nil || a.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		return 0, false
	}
	m := a.Mode & 07777
	k := m &^ syscall.S_ISUID
	if m&(syscall.S_ISGID|syscall.S_IXGRP) == syscall.S_ISGID|syscall.S_IXGRP {
		k &^= syscall.S_ISGID
	}
	return k, k != m
}

// Read implements fuse.RawFileSystem. A read without a handle through an
// O_DIRECT descriptor (openless.go) is served as one of no process (pid
// 0), which the union's readahead does not follow: go-fuse hands the
// node only the caller, not the descriptor's flags.
func (r rawFS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult,
	fuse.Status) {
	if in.Fh == 0 && in.Flags&syscall.O_DIRECT != 0 {
		req := *in
		req.Pid = 0
		return r.RawFileSystem.Read(cancel, &req, buf)
	}
	return r.RawFileSystem.Read(cancel, in, buf)
}
