// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// fuseDevice is the FUSE device; tests point it at another file.
var fuseDevice = "/dev/fuse"

// CheckFUSE reports whether this process can open /dev/fuse, with an
// error that tells the user what to ask for when it cannot. Opening it as
// root of a user namespace gives the same answer as here: the device
// belongs to host root, whom the namespace does not map.
func CheckFUSE() error {
	f, err := os.OpenFile(fuseDevice, os.O_RDWR, 0)
	if err == nil {
		return f.Close()
	}
	switch {
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("open %s: permission denied: ask your administrator to make "+
			"%s mode 0666 (the distribution default)", fuseDevice, fuseDevice)
	case errors.Is(err, syscall.ENOENT):
		return fmt.Errorf("open %s: no such file or directory: ask your administrator to "+
			"load the fuse kernel module (modprobe fuse)", fuseDevice)
	case errors.Is(err, syscall.ENODEV), errors.Is(err, syscall.ENXIO):
		return fmt.Errorf("open %s: %v: this kernel has no FUSE support "+
			"(the fuse module is not loaded)", fuseDevice, err)
	}
	return err
}

// fuseUserNSKernel is the first kernel release (4.18) that lets root of
// a user namespace mount FUSE.
var fuseUserNSKernel = [2]int{4, 18}

// explainMountError adds the cause to an error of the Mounter when it is
// one of the host's limits: /dev/fuse not usable, or a kernel that
// refuses FUSE mounts in user namespaces.
func explainMountError(err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err // not the kernel's refusal
	}
	if ferr := CheckFUSE(); ferr != nil {
		return fmt.Errorf("%w (%v)", err, ferr)
	}
	if errors.Is(err, syscall.EPERM) {
		if rel, ok := kernelOlderThan(fuseUserNSKernel); ok {
			return fmt.Errorf("%w (kernel %s is too old to mount FUSE in a user "+
				"namespace: Linux %d.%d or newer is needed)", err, rel,
				fuseUserNSKernel[0], fuseUserNSKernel[1])
		}
	}
	return err
}

// kernelOlderThan reports whether the running kernel's release is older
// than want, and the release string.
func kernelOlderThan(want [2]int) (string, bool) {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "", false
	}
	rel := unix.ByteSliceToString(u.Release[:])
	return rel, releaseOlder(rel, want)
}

// releaseOlder compares a kernel release such as "4.15.0-20-generic"
// with a major.minor version; unparsable releases are not older.
func releaseOlder(rel string, want [2]int) bool {
	f := strings.FieldsFunc(rel, func(r rune) bool { return r < '0' || r > '9' })
	if len(f) < 2 {
		return false
	}
	major, _ := strconv.Atoi(f[0])
	minor, _ := strconv.Atoi(f[1])
	return major < want[0] || major == want[0] && minor < want[1]
}
