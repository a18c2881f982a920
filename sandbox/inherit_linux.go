// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"fmt"
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
// the command line that started it.
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
	inherited = inheritedFiles(noteInherited())
}

// inherited holds the descriptors PassInheritedFDs noted until a run
// takes them (a File that is collected closes its descriptor).
var (
	inheritedMu sync.Mutex
	inherited   []*os.File
)

// takeInherited returns the caller's descriptors for a run, and none
// to the runs after it.
func takeInherited() []*os.File {
	inheritedMu.Lock()
	defer inheritedMu.Unlock()
	files := inherited
	inherited = nil
	return files
}

// noteInherited returns the descriptors above stderr that are open and not
// close-on-exec, in increasing order, and makes them close-on-exec. A
// stage process's are its parent's doing: none.
func noteInherited() []int {
	if os.Getenv(stageEnv) != "" {
		return nil
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil // no /proc: nothing is passed on
	}
	var fds []int
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
		unix.CloseOnExec(fd)
		fds = append(fds, fd)
	}
	slices.Sort(fds)
	return fds
}

// inheritedFiles returns files for the descriptors fds of this process.
func inheritedFiles(fds []int) []*os.File {
	files := make([]*os.File, len(fds))
	for i, fd := range fds {
		files[i] = os.NewFile(uintptr(fd), fmt.Sprintf("inherited-%d", fd))
	}
	return files
}

// fdsOf returns the descriptor numbers of files.
func fdsOf(files []*os.File) []int {
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
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
