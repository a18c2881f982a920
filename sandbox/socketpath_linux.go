// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// maxSocketPath is the longest path a unix socket address holds
// (sun_path, less its NUL).
const maxSocketPath = 107

// SocketPath returns a name for the unix socket at path that fits a
// socket address, and a function to call once the socket is bound or
// connected. A longer path (a deep home directory, a long host or
// instance name: instances of 29 characters failed on a host named "vm")
// is reached through an open descriptor of its directory.
func SocketPath(path string) (string, func(), error) {
	if len(path) <= maxSocketPath {
		return path, func() {}, nil
	}
	dir, base := filepath.Split(path)
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	short := fmt.Sprintf("/proc/self/fd/%d/%s", fd, base)
	if len(short) > maxSocketPath {
		unix.Close(fd)
		return "", nil, fmt.Errorf("socket %s: the name %q is too long", path, base)
	}
	return short, func() { unix.Close(fd) }, nil
}
