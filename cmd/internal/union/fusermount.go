// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package union

import (
	"fmt"
	"os"

	"github.com/husk-project/husk/fusefs"
	"github.com/husk-project/husk/sandbox"
)

// In sandbox's fusermount3 mode (sandbox.Spec.Fusermount) the Mounter
// runs in a server process in the host's namespaces, as the user, and
// go-fuse mounts through the setuid fusermount3.

// fusermountOptions adapts the FUSE options to fusermount3 mode: no
// mount(2) of its own, and allow_other only for root (fusermount3 refuses
// it to users without user_allow_other in /etc/fuse.conf). Without it the
// kernel lets in only the user's own uid and gid, which is what the
// container's processes have (sandbox maps --fakeroot's root only then).
func fusermountOptions(spec *sandbox.Spec, opts *fusefs.Options) {
	if !spec.Fusermount {
		return
	}
	opts.DirectMount = false
	opts.AllowOther = os.Geteuid() == 0
}

// serverIDs are the ids that the FUSE server sees for the container's
// user (or --fakeroot's root): root of stage 1's namespace normally, the
// user's own host ids when the server runs on the host.
func serverIDs(spec *sandbox.Spec) (uid, gid uint32) {
	if spec.Fusermount {
		return spec.UID, spec.GID
	}
	return 0, 0
}

// fullFakeroot says the server's namespace maps the ids of --fakeroot's
// range as the container sees them (sandbox.MappedIDs then says how
// many): stage 1's namespace, or the host's for root itself. A user's
// server on the host sees the range's host ids, and sandbox maps root
// only in that mode.
func fullFakeroot(spec *sandbox.Spec) bool {
	return spec.Fakeroot && (!spec.Fusermount || spec.UID == 0)
}

// shmUpper is --writable-tmpfs in fusermount3 mode, where the server
// cannot mount a tmpfs: a directory in /dev/shm (memory too), removed
// after the union is closed.
//
// TODO: the size limit of --writable-tmpfs is not applied here (only
// /dev/shm's own); a size-capped upper needs fusefs support.
func (b *builder) shmUpper() (fusefs.Writable, fusefs.Node, error) {
	dir, err := os.MkdirTemp("/dev/shm", "husk-writable-tmpfs-")
	if err != nil {
		dir, err = os.MkdirTemp("", "husk-writable-tmpfs-")
	}
	if err != nil {
		return nil, 0, fmt.Errorf("union: --writable-tmpfs: %w", err)
	}
	up, work, err := b.dirUpper(dir)
	b.m.closers = append(b.m.closers, removeAll(dir))
	return up, work, err
}

// removeAll is an io.Closer that removes a directory tree.
type removeAll string

func (d removeAll) Close() error { return os.RemoveAll(string(d)) }
