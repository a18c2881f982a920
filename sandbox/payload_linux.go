// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// preparePayload applies what the payload gets beyond its namespaces, on
// stage 2's thread that is about to start it (runtime.LockOSThread held):
// the loopback interface of a new network namespace, and the payload's
// capabilities. With the zero Caps and no network namespace it does
// nothing.
func preparePayload(spec *Spec, attr *syscall.SysProcAttr) error {
	if spec.Net {
		if err := loopbackUp(); err != nil {
			return err
		}
	}
	if spec.Caps.zero() {
		return nil
	}
	keep := spec.Caps.keep(spec.Fakeroot)
	// The bounding set is per thread and inherited by the child: root's
	// capabilities after exec are limited to it, and ambient ones must be
	// in it.
	for c := 0; c <= lastCap(); c++ {
		if keep&(1<<c) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return &os.SyscallError{Syscall: fmt.Sprintf("prctl(PR_CAPBSET_DROP, %d)", c),
				Err: err}
		}
	}
	if !spec.Fakeroot {
		// The payload's own user namespace gives it every capability
		// until exec; Go raises these as ambient ones in between.
		for c := range capNames {
			if keep&(1<<c) != 0 && c <= lastCap() {
				attr.AmbientCaps = append(attr.AmbientCaps, uintptr(c))
			}
		}
	}
	return nil
}

// lastCap is the kernel's highest capability number, at most the last one
// husk knows.
func lastCap() int {
	last := len(capNames) - 1
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return last
	}
	if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n < last {
		return n
	}
	return last
}

// loopbackUp brings "lo" up in this (new) network namespace, which the
// kernel creates with it down.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return &os.SyscallError{Syscall: "socket", Err: err}
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return &os.SyscallError{Syscall: "ioctl(SIOCGIFFLAGS, lo)", Err: err}
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return &os.SyscallError{Syscall: "ioctl(SIOCSIFFLAGS, lo)", Err: err}
	}
	return nil
}
