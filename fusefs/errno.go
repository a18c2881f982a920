package fusefs

import (
	"errors"
	"log/slog"
	"syscall"
)

// toErrno converts a layer error to the errno the kernel gets. It is the one
// place where errors cross the FUSE boundary: POSIX conditions pass through,
// anything else becomes EIO and is logged (once per distinct error),
// because the kernel cannot carry the message.
func (u *Union) toErrno(op string, err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	if !u.firstWarning(err.Error()) {
		return syscall.EIO // told already
	}
	var le *LayerError
	named := errors.As(err, &le)
	if named && u.opts.OnLayerError != nil && u.opts.OnLayerError(le) {
		return syscall.EIO
	}
	if u.log != nil {
		if named {
			u.log.Warn("fusefs: layer error", slog.String("op", op), slog.Any("err", le.Err),
				slog.String("image", le.Image))
		} else {
			u.log.Warn("fusefs: layer error", slog.String("op", op), slog.Any("err", err))
		}
	}
	return syscall.EIO
}

// nodeErrno is toErrno for a request on node n itself, not on a name in
// it. ENOENT there means n's file went (unlinked, or renamed over) after
// the kernel resolved a path to it. ESTALE has the kernel walk that path
// once more, asking for each name again (open, stat, chmod, readlink and
// getxattr by path all retry on it), so a caller racing a rename-over
// gets the file renamed in, as on a local file system, where ENOENT would
// fail it (a reader looping on a file replaced by rename failed 4% of
// its opens with the ext3 upper, 47% with a directory upper). A directory
// keeps ENOENT: a removed working directory is how one is met, and a
// second walk finds nothing either.
func (n *node) nodeErrno(op string, err error) syscall.Errno {
	e := n.u.toErrno(op, err)
	if e == syscall.ENOENT && n.StableAttr().Mode != syscall.S_IFDIR {
		return syscall.ESTALE
	}
	return e
}

// gone is the answer for a request on n when n is stale (its file freed
// and its number handed to another file): as for a file gone.
func (n *node) gone() syscall.Errno { return n.nodeErrno("", syscall.ENOENT) }

// firstWarning reports whether msg was not warned about recently. The
// kernel retries a failed read (readahead, then the read itself) and a
// program may read a damaged file again: one line per distinct fault is
// enough, not one per request.
func (u *Union) firstWarning(msg string) bool {
	u.warnMu.Lock()
	defer u.warnMu.Unlock()
	if u.warned == nil || len(u.warned) >= maxWarned {
		u.warned = make(map[string]bool) // forget, rather than grow without bound
	}
	if u.warned[msg] {
		return false
	}
	u.warned[msg] = true
	return true
}

// maxWarned bounds the faults remembered by firstWarning.
const maxWarned = 1024

// isErrno reports whether err is (or wraps) the errno e.
func isErrno(err error, e syscall.Errno) bool {
	return errors.Is(err, e)
}

// LayerError is a layer failure that is not a POSIX condition (a corrupt
// block, a read error of the image file), naming the image the layer
// reads, so that the one warning toErrno prints says which image failed.
type LayerError struct {
	Image string // the image file, and partition, as the user named it
	Err   error
}

// Error implements error as "<image>: <err>".
func (e *LayerError) Error() string { return e.Image + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *LayerError) Unwrap() error { return e.Err }

// nameErr wraps err in a *LayerError naming image, unless err is nil, a
// POSIX condition (the hot path: ENOENT of lookups costs nothing), already
// named, or image is "".
func nameErr(image string, err error) error {
	if err == nil || image == "" {
		return err
	}
	var e syscall.Errno
	var le *LayerError
	if errors.As(err, &e) || errors.As(err, &le) {
		return err
	}
	return &LayerError{Image: image, Err: err}
}
