// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// An instance run with Spec.Net has its network namespace from its
// stage 2. Joined commands enter that one rather than getting a new,
// empty one, so that they reach what the instance serves on its
// loopback interface.

// enterNetns moves the calling thread into network namespace ns for
// good: it cannot come back, as stage 1 has no capability over the host's
// network namespace. The thread therefore stays locked to the calling
// goroutine (one more runtime.LockOSThread than the caller's), and Go ends
// it when the goroutine ends; the stage 2 started from it keeps its
// parent-death signal thread until then.
func enterNetns(ns *os.File) error {
	runtime.LockOSThread()
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		return &os.SyscallError{Syscall: "setns(instance network namespace)", Err: err}
	}
	return nil
}
