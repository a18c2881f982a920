// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// procSys is where the sysctls are read; tests point it at a fake tree.
var procSys = "/proc/sys"

// usernsError explains why stage 1 could not be started in a new user
// namespace: clone(2) fails with EPERM, ENOSPC, EUSERS or EINVAL, and
// writing the id maps fails with EPERM. The message says what the host
// forbids and how an administrator can allow it (COMPAT 10.1 lists
// Apptainer's wording; this is more specific where the sysctls say more).
func usernsError(err error) error {
	return fmt.Errorf("cannot create a user namespace: %s", usernsReason(err))
}

func usernsReason(err error) string {
	// Sysctls first: they name the cause whatever the errno.
	if v, ok := readSysctl("user/max_user_namespaces"); ok && v == "0" {
		return "user namespaces are disabled (/proc/sys/user/max_user_namespaces is 0); " +
			"ask your administrator to run sysctl -w user.max_user_namespaces=15000"
	}
	if v, ok := readSysctl("kernel/unprivileged_userns_clone"); ok && v == "0" {
		return "unprivileged user namespaces are disabled " +
			"(/proc/sys/kernel/unprivileged_userns_clone is 0); " +
			"ask your administrator to run sysctl -w kernel.unprivileged_userns_clone=1"
	}
	denied := errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES)
	if v, ok := readSysctl("kernel/apparmor_restrict_unprivileged_userns"); ok && v == "1" &&
		denied {
		exe, _ := os.Executable()
		return "AppArmor restricts unprivileged user namespaces " +
			"(kernel.apparmor_restrict_unprivileged_userns is 1); ask your administrator " +
			"to install an AppArmor profile allowing userns for " + exe +
			", or to run sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"
	}
	if _, err := os.Stat("/proc/self/ns/user"); errors.Is(err, os.ErrNotExist) {
		return "this kernel has no user namespaces (CONFIG_USER_NS is not set)"
	}

	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err.Error()
	}
	switch errno {
	case syscall.ENOSPC:
		return "maximum number of user namespaces exceeded, " +
			"check /proc/sys/user/max_user_namespaces"
	case syscall.EUSERS:
		return "limit on the nesting depth of user namespaces was exceeded"
	case syscall.EINVAL:
		return "unprivileged user namespaces may not be enabled on this kernel"
	case syscall.EPERM, syscall.EACCES:
		return "not allowed to create a user namespace (" + errno.Error() + "): " +
			"a security policy (seccomp, SELinux, a container runtime) forbids it, " +
			"or husk runs in a chroot"
	}
	return err.Error()
}

// isUsernsErrno reports whether err is one of the errors clone(2) and the
// id map writes give when user namespaces are not available.
func isUsernsErrno(err error) bool {
	for _, e := range []syscall.Errno{syscall.EPERM, syscall.EACCES, syscall.ENOSPC,
		syscall.EUSERS, syscall.EINVAL} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// readSysctl returns the trimmed value of a sysctl, ok false when the
// kernel has no such knob.
func readSysctl(name string) (string, bool) {
	b, err := os.ReadFile(filepath.Join(procSys, name))
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}
