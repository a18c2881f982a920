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

// CheckFUSE reports whether this process can open /dev/fuse, with a
// one-line error that says what is wrong and what to ask for when it
// cannot; the error wraps the open's *os.PathError. Opening it as root of
// a user namespace gives the same answer as here: the device belongs to
// host root, whom the namespace does not map.
func CheckFUSE() error {
	f, err := os.OpenFile(fuseDevice, os.O_RDWR, 0)
	if err == nil {
		return f.Close()
	}
	switch {
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("%s is not accessible (%w): ask your administrator to make it "+
			"mode 0666, the distribution default (chmod 0666 %s)", fuseDevice,
			errors.Unwrap(err), fuseDevice)
	case errors.Is(err, syscall.ENOENT):
		return fmt.Errorf("%s does not exist (%w): ask your administrator to load the "+
			"fuse kernel module (modprobe fuse)", fuseDevice, errors.Unwrap(err))
	case errors.Is(err, syscall.ENODEV), errors.Is(err, syscall.ENXIO):
		return fmt.Errorf("%s: %w: this kernel has no FUSE support; ask your "+
			"administrator to load the fuse kernel module (modprobe fuse)", fuseDevice,
			errors.Unwrap(err))
	}
	return err
}

// fuseUserNSKernel is the first kernel release (4.18) that lets root of
// a user namespace mount FUSE.
var fuseUserNSKernel = [2]int{4, 18}

// explainMountError words an error of the Mounter for the user when the
// host is at fault: /dev/fuse not usable (the error then says only that,
// in one line), or a kernel that refuses FUSE mounts in user namespaces.
// In the latter case (see mountRefused) Run falls back to mounting
// through fusermount3 where it can (fusermount_linux.go), and adds to
// this error how to make that possible where it cannot.
func explainMountError(err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err // not the kernel's refusal
	}
	if ferr := CheckFUSE(); ferr != nil {
		return ferr
	}
	if !errors.Is(err, syscall.EPERM) {
		return err
	}
	if rel, ok := kernelOlderThan(fuseUserNSKernel); ok {
		return fmt.Errorf("kernel %s is too old to mount FUSE in a user namespace: "+
			"Linux %d.%d or newer is needed (%w)", rel, fuseUserNSKernel[0],
			fuseUserNSKernel[1], err)
	}
	// /dev/fuse opens and the kernel is recent: something forbids mounts.
	return fmt.Errorf("the kernel refused the mount in husk's user namespace (%w): a "+
		"security policy (SELinux, AppArmor, seccomp or a container runtime) forbids it; "+
		"ask your administrator", syscall.EPERM)
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
