package fusefs

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/husk-project/husk/internal/detach"
)

// fuseFDs counts the FUSE device descriptors in the fd directory dir.
func fuseFDs(dir string) int { return len(detach.FUSEDevices(dir)) }

// A thread given its own descriptor table by detach.Run holds no FUSE
// device while the process serves one, and still reaches the mount: a
// server killed while such a thread waits on its own mount can then end
// (see package detach).
func TestDetachRun(t *testing.T) {
	f := newFixture(t, 1)
	tree(t, f.lowers[0], "d/f=image")
	// Mounted by the process itself, as stage 1 mounts (fusermount3
	// would hold the device in its own process).
	mnt, _ := f.mount(func(o *Options) { o.DirectMount = true })
	// The process's table, as this thread shares it (/proc/self is the
	// main thread's, which may have been detached itself).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if fuseFDs("/proc/thread-self/fd") == 0 {
		t.Fatal("the serving process holds no FUSE device")
	}
	type seen struct {
		devices int
		content string
		err     error
	}
	c := make(chan seen, 1)
	go detach.Run(func() {
		var s seen
		s.devices = fuseFDs("/proc/thread-self/fd")
		var b []byte
		b, s.err = os.ReadFile(filepath.Join(mnt, "d", "f"))
		s.content = string(b)
		c <- s
	})
	s := <-c
	if s.err != nil || s.devices != 0 || s.content != "image" {
		t.Errorf("detached thread: %d FUSE devices, read %q, %v", s.devices, s.content, s.err)
	}
	if fuseFDs("/proc/thread-self/fd") == 0 {
		t.Error("the process lost its FUSE device")
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "d", "f")); err != nil || string(b) != "image" {
		t.Errorf("read after: %q, %v", b, err)
	}
}
