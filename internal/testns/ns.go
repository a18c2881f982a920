// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package testns

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// NS is a thread of the test process in a mount namespace of its own
// whose mounts propagate nowhere. The processes started from it (by Run)
// run there too; the test reaches its mounts through Path.
type NS struct {
	tid   int
	calls chan func()
	ended chan error
}

// New starts the thread. The thread is never unlocked, so Go ends it with
// its goroutine; but the main thread it parks instead, and /proc/self
// shows the main thread's namespace, so Close first takes the thread back
// to the process's namespace and working directory (which also ends the
// private namespace and drops anything left mounted in it).
func New() (*NS, error) {
	ns := &NS{calls: make(chan func()), ended: make(chan error, 1)}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ns.ended <- ns.thread(started)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return ns, nil
}

// thread enters the new namespace, drops its copies of other tests'
// mounts, reports on started, runs the calls until Close and goes back.
func (ns *NS) thread(started chan<- error) (err error) {
	up := false
	defer func() {
		if !up {
			started <- err
		}
	}()
	host, err := os.Open("/proc/thread-self/ns/mnt")
	if err != nil {
		return err
	}
	defer host.Close()
	cwd, err := os.Open(".")
	if err != nil {
		return err
	}
	defer cwd.Close()
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("unshare mount namespace: %w", err)
	}
	defer func() {
		if serr := unix.Setns(int(host.Fd()), unix.CLONE_NEWNS); serr != nil {
			err = fmt.Errorf("back to the process's mount namespace: %w", serr)
		} else if cerr := unix.Fchdir(int(cwd.Fd())); cerr != nil {
			err = fmt.Errorf("back to the working directory: %w", cerr)
		}
	}()
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	DetachForeign()
	ns.tid = unix.Gettid()
	up = true
	started <- nil
	for fn := range ns.calls {
		fn()
	}
	return nil
}

// Run runs fn on the thread, in the namespace.
func (ns *NS) Run(fn func() error) error {
	errc := make(chan error, 1)
	ns.calls <- func() { errc <- fn() }
	return <-errc
}

// Close ends the namespace; see New.
func (ns *NS) Close() error {
	close(ns.calls)
	return <-ns.ended
}

// Path is p in the namespace, as this process's other threads reach it.
func (ns *NS) Path(p string) string {
	return fmt.Sprintf("/proc/%d/task/%d/root%s", os.Getpid(), ns.tid, p)
}

// InPrivate runs fn in a namespace of its own (New, Run, Close) and
// returns fn's error, else Close's.
func InPrivate(fn func() error) error {
	ns, err := New()
	if err != nil {
		return err
	}
	err = ns.Run(fn)
	if cerr := ns.Close(); err == nil {
		err = cerr
	}
	return err
}
