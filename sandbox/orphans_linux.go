// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"bytes"
	"errors"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Without --pid the container's processes live in the host's PID
// namespace, and stage 2, the subreaper that kills what the payload leaves
// behind, is their only bond to the container. Should stage 2 be killed,
// they would pass to init and run on: in a container whose union stage 1
// can then not unmount (it waits for them), or, should stage 1 be killed
// too, whose file system is gone. So stage 1 and husk itself are
// subreapers as well: the orphans of a killed stage pass to the stage
// above it, which kills them.

// becomeSubreaper makes the orphans of this process's descendants its
// children.
func becomeSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return &os.SyscallError{Syscall: "prctl(PR_SET_CHILD_SUBREAPER)", Err: err}
	}
	return nil
}

// maxKillRounds bounds killChildren against processes that fork faster
// than they are killed.
const maxKillRounds = 100

// killChildren kills (SIGKILL) and reaps every child of this process but
// keep, then the children those leave to it, until none is left, and
// returns how many it killed. Call it only once every child this process
// waits for itself has been reaped (or is in keep).
func killChildren(keep int) int {
	killed := 0
	for range maxKillRounds {
		kids := childrenOf(os.Getpid(), keep)
		if len(kids) == 0 {
			break
		}
		for _, pid := range kids {
			if unix.Kill(pid, unix.SIGKILL) == nil {
				killed++
			}
		}
		for _, pid := range kids {
			for {
				_, err := unix.Wait4(pid, nil, 0, nil)
				if !errors.Is(err, unix.EINTR) {
					break
				}
			}
		}
	}
	return killed
}

// watchParent ends the payload of reaper once husk, this process's parent
// ppid, is gone. husk's death reaches stage 1 as SIGTERM (its parent-death
// signal), which is forwarded to the payload like any other; a payload
// that ignores it would run on with nobody left to end it. So when the
// parent has changed, the payload gets joinGrace to end, then SIGKILL;
// stage 2 then ends what it left, as after any exit. The returned function
// stops the watch.
func watchParent(ppid, reaper int) (stop func()) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		defer signal.Stop(c)
		for os.Getppid() == ppid {
			select {
			case <-c:
			case <-done:
				return
			}
		}
		select {
		case <-time.After(joinGrace):
			killChildrenOf(reaper)
		case <-done:
		}
	}()
	return func() { close(done) }
}

// killChildrenOf kills (SIGKILL) the children of process ppid, which
// reaps them: a reaper's payload that ignores SIGTERM when nobody is left
// to end it otherwise.
func killChildrenOf(ppid int) {
	for _, pid := range childrenOf(ppid, 0) {
		_ = unix.Kill(pid, unix.SIGKILL)
	}
}

// childrenOf lists the children of process ppid but keep, from the ppid
// field of every /proc/PID/stat (the kernel here may lack
// /proc/PID/task/TID/children).
func childrenOf(ppid, keep int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var kids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == keep {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone already
		}
		if parent, _, ok := parseStat(b); ok && parent == ppid {
			kids = append(kids, pid)
		}
	}
	return kids
}

// parseStat reads the state and parent pid of a /proc/PID/stat line:
// "pid (comm) state ppid ...", where comm may hold spaces and parentheses,
// hence the last ')'.
func parseStat(line []byte) (ppid int, state byte, ok bool) {
	i := bytes.LastIndexByte(line, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := bytes.Fields(line[i+1:])
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, false
	}
	ppid, err := strconv.Atoi(string(f[1]))
	if err != nil {
		return 0, 0, false
	}
	return ppid, f[0][0], true
}
