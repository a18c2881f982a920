package main

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// explainFileLimit adds the limit on open files to an error that ran into
// it. "too many open files" alone, from deep in the start (a pipe, a fork,
// the FUSE device), does not tell the user that the limit is their own
// `ulimit -n`, nor how low it is. Errors of the inner stages reach here as
// text, so the message is matched as well as the errno.
//
// TODO: a limit below about 10 still ends husk in a panic before main:
// go-fuse's splice package makes a pipe when it is initialised.
func explainFileLimit(err error) error {
	if err == nil {
		return nil
	}
	if !errors.Is(err, syscall.EMFILE) &&
		!strings.Contains(err.Error(), syscall.EMFILE.Error()) {
		return err
	}
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) != nil {
		return err
	}
	return fmt.Errorf("%w (the limit on open files is %d: raise it with ulimit -n)",
		err, lim.Cur)
}
