package fusefs

import "golang.org/x/sys/unix"

// lazyUnmount detaches a busy mount (MNT_DETACH); the server stops when
// the kernel drops the last reference to it.
func lazyUnmount(dir string) error {
	return unix.Unmount(dir, unix.MNT_DETACH)
}
