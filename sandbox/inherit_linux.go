// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// Descriptors above stderr that husk's caller left open for it reach the
// command at the same numbers, as in Apptainer: a shell's `3<file`,
// bash's `<(cmd)` (/dev/fd/63), the PMI_FD socket Slurm hands each task
// of `srun --mpi=pmi2`. Stage 0 passes them to stage 1 after the image
// files, stage 1 to stage 2 as its only files, and stage 2 puts them back
// at their numbers in the payload; stages 1 and 2 close their copies once
// the next process has them, and stage 0 once the payload runs, so that
// a pipe's reader sees its end when the command closes it. Only the first
// run of a process gets them, and not an instance's command: it outlives
// the command line that started it. A [Join] sends them to the instance
// with stdio, in one SCM_RIGHTS message (instance_linux.go).
//
// The files are made with os.NewFile, which leaves a descriptor's
// O_NONBLOCK as it is when it is passed on: the flag belongs to the open
// file, which the caller shares.

// PassInheritedFDs hands the descriptors above stderr that this process
// inherited open (not close-on-exec) to the command of its first [Run],
// at the same numbers, and closes them here once the command runs. Call
// it first thing in main, before the process opens any file of its own;
// it makes them close-on-exec at once, so that the programs the process
// runs on the host (newuidmap, mksquashfs, e2fsck) do not get them. A
// process that uses such descriptors itself must not call it.
func PassInheritedFDs() {
	inheritedMu.Lock()
	defer inheritedMu.Unlock()
	inherited = noteInherited()
}

// An inheritedFD is a descriptor of the caller: its number, and this
// process's copy of it.
type inheritedFD struct {
	num int
	f   *os.File
}

// inherited holds the descriptors PassInheritedFDs noted until a run
// takes them (a File that is collected closes its descriptor).
var (
	inheritedMu sync.Mutex
	inherited   []inheritedFD
)

// fdSlack is what starting the command takes above the highest number it
// gets a descriptor at: Go's fork and exec moves its error pipe and the
// descriptors it places above that number first, and the seccomp shim's
// files come after it.
const fdSlack = 64

// takeInherited returns the caller's descriptors for a run, and none to
// the runs after it. Those that could not be placed under the hard limit
// on open files (see fdSlack) are left out, with a warning: the command's
// start would fail on them.
func takeInherited(log *slog.Logger) []inheritedFD {
	inheritedMu.Lock()
	defer inheritedMu.Unlock()
	fds := inherited
	inherited = nil
	var lim unix.Rlimit
	if len(fds) == 0 || unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) != nil {
		return fds
	}
	kept := fds[:0]
	for _, fd := range fds {
		if placeable(fd.num, len(fds), lim.Max) {
			kept = append(kept, fd)
			continue
		}
		log.Warn(tooHigh(fd.num, lim.Max))
		fd.f.Close()
	}
	return kept
}

// placeable tells whether a command started with n inherited descriptors
// can get one at number num under a hard limit of max open files.
func placeable(num, n int, max uint64) bool {
	return uint64(num+n+fdSlack) < max
}

// tooHigh is the warning about a descriptor left out for the limit max.
func tooHigh(num int, max uint64) string {
	return fmt.Sprintf("descriptor %d is not passed to the container: it is too close "+
		"to the limit on open files (%d)", num, max)
}

// noteInherited returns the descriptors above stderr that are open and not
// close-on-exec, in increasing order. Each copy is moved to the lowest
// free number, close-on-exec: starting a process, Go moves its own error
// pipe above the highest descriptor it passes, which near the limit on
// open files fails. A stage process's descriptors are its parent's doing:
// none.
func noteInherited() []inheritedFD {
	if os.Getenv(stageEnv) != "" {
		return nil
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil // no /proc: nothing is passed on
	}
	var nums []int
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		// The directory's own descriptor is close-on-exec, as is every
		// descriptor the Go runtime opened.
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC != 0 {
			continue
		}
		nums = append(nums, fd)
	}
	slices.Sort(nums)
	fds := make([]inheritedFD, 0, len(nums))
	for _, n := range nums {
		c, err := unix.FcntlInt(uintptr(n), unix.F_DUPFD_CLOEXEC, 3)
		if err != nil {
			unix.CloseOnExec(n) // out of descriptors: keep it where it is
			c = n
		} else {
			unix.Close(n)
		}
		fds = append(fds, inheritedFD{num: n, f: os.NewFile(uintptr(c),
			fmt.Sprintf("inherited-%d", n))})
	}
	return fds
}

// closeFiles closes files (a stage's copies of the inherited descriptors,
// once the next process has them).
func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// payloadFiles returns the payload's descriptors as os.ProcAttr wants
// them: stdin, stdout and stderr, then each of inherit (the files of this
// stage holding them) at its number in fds, nil (closed) in the gaps.
func payloadFiles(fds []int, inherit []*os.File) []*os.File {
	files := []*os.File{os.Stdin, os.Stdout, os.Stderr}
	for i, fd := range fds {
		if i >= len(inherit) || fd <= 2 {
			continue
		}
		for len(files) <= fd {
			files = append(files, nil)
		}
		files[fd] = inherit[i]
	}
	return files
}
