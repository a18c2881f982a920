package fusefs

import (
	"errors"
	"log/slog"
	"syscall"
)

// toErrno converts a layer error to the errno the kernel gets. It is the one
// place where errors cross the FUSE boundary: POSIX conditions pass through,
// anything else becomes EIO and is logged, because the kernel cannot carry
// the message.
func (u *Union) toErrno(op string, err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	if u.log != nil {
		u.log.Warn("fusefs: layer error", slog.String("op", op), slog.Any("err", err))
	}
	return syscall.EIO
}

// isErrno reports whether err is (or wraps) the errno e.
func isErrno(err error, e syscall.Errno) bool {
	return errors.Is(err, e)
}
