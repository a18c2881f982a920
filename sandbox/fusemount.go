// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"fmt"
	"path/filepath"
	"strings"
)

// FuseMount is one `--fusemount "host:CMD ARGS MOUNTPOINT"` (or
// "container:"): stage 1 opens /dev/fuse, mounts it at Mountpoint in the
// container and starts the FUSE program with /dev/fd/N in place of the
// mount point (libfuse 3.3 and later take that as an already mounted
// FUSE file descriptor). See fusemount_linux.go.
type FuseMount struct {
	// InContainer runs the program in the container's file system (from
	// stage 1, chrooted into the container root); otherwise it runs on the
	// host side, in stage 1's namespaces, with husk's environment.
	InContainer bool
	// Daemon says the program puts itself in the background (Apptainer's
	// host-daemon: and container-daemon:). Stage 1 treats both kinds
	// alike: a zero exit before serving is taken as going to the
	// background, and a program still in the foreground is stopped at
	// the end.
	Daemon bool
	// Args are the program and its arguments, without the mount point.
	Args []string
	// Mountpoint is the absolute path in the container.
	Mountpoint string
}

// ParseFuseMount reads Apptainer's --fusemount value: "TYPE:CMD ARGS
// MOUNTPOINT" with TYPE host, container, host-daemon or container-daemon;
// the words are split on white space and the last one is the mount point.
func ParseFuseMount(s string) (FuseMount, error) {
	kind, rest, ok := strings.Cut(s, ":")
	var fm FuseMount
	switch kind {
	case "host":
	case "host-daemon":
		fm.Daemon = true
	case "container":
		fm.InContainer = true
	case "container-daemon":
		fm.InContainer, fm.Daemon = true, true
	default:
		ok = false
	}
	if !ok {
		return fm, fmt.Errorf("--fusemount %q: want host:, container:, host-daemon: or "+
			"container-daemon: then the command and the mount point", s)
	}
	words := strings.Fields(rest)
	if len(words) < 2 {
		return fm, fmt.Errorf("--fusemount %q: want a FUSE command and a mount point", s)
	}
	fm.Args, fm.Mountpoint = words[:len(words)-1], words[len(words)-1]
	if !filepath.IsAbs(fm.Mountpoint) || filepath.Clean(fm.Mountpoint) == "/" {
		return fm, fmt.Errorf("--fusemount %q: mount point %q is not an absolute path "+
			"below /", s, fm.Mountpoint)
	}
	fm.Mountpoint = filepath.Clean(fm.Mountpoint)
	return fm, nil
}
