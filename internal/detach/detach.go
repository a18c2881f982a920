// Package detach runs calls into a process's own FUSE mount on threads
// that do not hold the FUSE device.
package detach

import (
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// A FUSE server that calls into its own mount (husk's stage 1: the binds
// it mounts there, the readahead's opens, go-fuse's poll probe, the
// warmer reading programs ahead) must not do it
// from a thread that shares the process's descriptor table. Should the
// process be killed while its server threads hold such a request, the
// thread that made it waits for the answer in the kernel without end;
// its descriptor table holds the FUSE device, so the kernel never ends
// the connection, and the process can never be reaped (a trial: a
// SIGKILL of every husk process at once, in the first milliseconds).
// A thread with a table of its own, without the device, does not hold
// the connection up: the server's death ends it, and the request fails.
//
// Stage 1's binds into the union and their unmounts run here too (a
// trial's kill-everything loop hung 3 in 30 while they were made on its
// main thread). Calls into a server's own code, not through the kernel,
// must not run here: its descriptors are those of the process's table,
// which this thread does not see opened after it began (fusefs's
// Union.Mountpoint hands its work to an ordinary thread).

// Run runs fn on a thread with a descriptor table of its own, without
// any FUSE device in it, for calls into the union's own mount, and returns
// when fn does. Descriptors fn opens are in that table only: fn must close
// them itself and hand none out. The thread ends with fn. The main thread
// is never the one: /proc/self shows its table, which other code reads
// (the kernel, where unshare(CLONE_FILES) fails, leaves fn on a thread
// as it was).
func Run(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// Locked here, the main thread cannot take the next goroutine.
			Run(fn)
			runtime.UnlockOSThread()
			return
		}
		// Never unlocked: the thread is not like the others any more,
		// and Go ends it with this goroutine.
		if unix.Unshare(unix.CLONE_FILES) == nil {
			closeFUSEDevices()
		}
		fn()
	}()
	<-done
}

// closeFUSEDevices closes the FUSE devices in the calling thread's table.
func closeFUSEDevices() {
	for _, fd := range FUSEDevices("/proc/thread-self/fd") {
		unix.Close(fd)
	}
}

// FUSEDevices returns the descriptors in fd directory dir (a /proc fd
// directory) that are FUSE devices.
func FUSEDevices(dir string) []int {
	ents, _ := os.ReadDir(dir)
	var fds []int
	for _, e := range ents {
		if l, _ := os.Readlink(dir + "/" + e.Name()); l == "/dev/fuse" {
			if fd, err := strconv.Atoi(e.Name()); err == nil {
				fds = append(fds, fd)
			}
		}
	}
	return fds
}
