// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// leftoverGrace is how long leftover processes get between SIGTERM and
// SIGKILL once the payload has exited.
var leftoverGrace = 2 * time.Second

// supervisor is stage 2 as the payload's parent and reaper: with
// PR_SET_CHILD_SUBREAPER (or as PID 1 with --pid) every orphan of the
// payload becomes its child.
type supervisor struct {
	log *slog.Logger
	// procfd is a /proc of this PID namespace, to find descendants. It is
	// -1 in a PID namespace of our own, where all processes but us are
	// leftovers.
	procfd int
	chld   chan os.Signal
	// loader starts the seccomp shim from the host's files (nil: none).
	loader *hostLoader
}

// start starts the payload.
func (s *supervisor) start(p *plan, cwd string) (*os.Process, error) {
	// Catch SIGCHLD before the first child exists.
	s.chld = make(chan os.Signal, 1)
	signal.Notify(s.chld, syscall.SIGCHLD)
	proc, err := startPayload(p, cwd, s.loader)
	s.loader.Close()
	closeFiles(p.inherit) // the payload has them
	p.inherit = nil
	if err != nil {
		return nil, err
	}
	s.log.Debug("payload started", "pid", proc.Pid, "args", p.Spec.Args)
	return proc, nil
}

// wait reaps children until pid exits and returns its status (128+N for
// death by signal N) and the signal that killed it, if one did. One loop
// reaps everything (wait4(-1)); os.Process.Wait would race with it.
func (s *supervisor) wait(pid int) (int, syscall.Signal) {
	for {
		for {
			var ws unix.WaitStatus
			got, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil || got <= 0 {
				break
			}
			if got == pid {
				var sig syscall.Signal
				if ws.Signaled() {
					sig = syscall.Signal(ws.Signal())
				}
				return waitStatus(syscall.WaitStatus(ws)), sig
			}
		}
		<-s.chld
	}
}

// killLeftovers ends what the payload left running (daemons, background
// jobs): SIGTERM, a short grace period, then SIGKILL, until no
// descendant is left. Stage 1 syncs the union only after this, so nothing
// can write to it any more.
func (s *supervisor) killLeftovers() {
	if s.procfd < 0 {
		s.killNamespace()
		return
	}
	// As a subreaper we inherit every orphan below us: with no child at
	// all there is no descendant either, and the common case skips
	// reading the stat file of every process on the host.
	if s.reap() {
		return
	}
	pids := s.descendants()
	if len(pids) == 0 {
		return
	}
	s.log.Debug("terminating leftover processes", "pids", pids)
	s.signalAll(pids, unix.SIGTERM)
	deadline := time.Now().Add(leftoverGrace)
	for time.Now().Before(deadline) {
		s.reap()
		if len(s.descendants()) == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := 0; i < 500; i++ {
		pids := s.descendants()
		if len(pids) == 0 {
			return
		}
		s.log.Debug("killing leftover processes", "pids", pids)
		s.signalAll(pids, unix.SIGKILL)
		time.Sleep(10 * time.Millisecond)
		s.reap()
	}
	s.log.Warn("sandbox: leftover processes would not die", "pids", s.descendants())
}

// killNamespace is killLeftovers as init of a PID namespace: kill(-1)
// reaches every other process of the namespace, and every orphan is our
// child, so "no child left" means "no process left". Outside a PID
// namespace of our own kill(-1) would hit all the user's processes on the
// host: only call this as its PID 1.
func (s *supervisor) killNamespace() {
	if os.Getpid() != 1 {
		panic("sandbox: killNamespace outside a PID namespace")
	}
	if s.reap() {
		return
	}
	s.log.Debug("terminating leftover processes in the PID namespace")
	_ = unix.Kill(-1, unix.SIGTERM)
	deadline := time.Now().Add(leftoverGrace)
	for time.Now().Before(deadline) {
		if s.reap() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := 0; i < 500; i++ {
		s.log.Debug("killing leftover processes in the PID namespace")
		_ = unix.Kill(-1, unix.SIGKILL)
		time.Sleep(10 * time.Millisecond)
		if s.reap() {
			return
		}
	}
	s.log.Warn("sandbox: leftover processes would not die")
}

func (s *supervisor) signalAll(pids []int, sig unix.Signal) {
	for _, pid := range pids {
		_ = unix.Kill(pid, sig)
	}
}

// reap collects every exited child without blocking and reports whether
// no child is left at all.
func (s *supervisor) reap() (none bool) {
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || got <= 0 {
			return err == unix.ECHILD
		}
	}
}

// descendants lists the live (not zombie) descendants of this process
// from /proc/<pid>/stat.
func (s *supervisor) descendants() []int {
	// A new fd each time: reading a directory fd moves its offset.
	fd, err := unix.Openat(s.procfd, ".", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	d := os.NewFile(uintptr(fd), "/proc")
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil
	}

	children := map[int][]int{}
	zombie := map[int]bool{}
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		ppid, state, ok := s.stat(n)
		if !ok {
			continue
		}
		children[ppid] = append(children[ppid], pid)
		zombie[pid] = state == 'Z'
	}

	var out []int
	queue := []int{os.Getpid()}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			if !zombie[c] {
				out = append(out, c)
			}
			queue = append(queue, c)
		}
	}
	return out
}

// stat returns the parent pid and state of a process from its
// /proc/<pid>/stat (parseStat).
func (s *supervisor) stat(pid string) (ppid int, state byte, ok bool) {
	fd, err := unix.Openat(s.procfd, pid+"/stat", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, 0, false
	}
	defer unix.Close(fd)
	buf := make([]byte, 512)
	n, err := unix.Read(fd, buf)
	if err != nil || n <= 0 {
		return 0, 0, false
	}
	return parseStat(buf[:n])
}
