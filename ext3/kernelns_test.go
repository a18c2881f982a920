package ext3

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/husk-project/husk/internal/testns"
)

// Kernel mounts of test images, made where no other process can copy
// them (as fusefs/kernelns_test.go does for its own).
//
// A process that creates a mount namespace (every container start: the
// sandbox and e2e tests of the other packages running at the same time)
// copies all mounts of the namespace it leaves and makes them private,
// so our later umount does not reach the copy: the kernel keeps the
// image's superblock and its loop device until that container exits.
// The next "mount -o loop" of the same image then reuses the still
// attached loop device and fails ("/dev/loop0 already mounted"), and the
// kernel may still write to an image that husk has opened since. Mounts
// made in a private namespace of our own cannot be copied.

// mountNS is a thread of the test process in a mount namespace of its
// own whose mounts propagate nowhere. The processes started from it (by
// run) run there too; the test reaches its mounts through path.
type mountNS struct {
	tid   int
	calls chan func()
	ended chan error
}

// newMountNS starts the thread. The thread is never unlocked, so Go ends
// it with its goroutine; but the main thread it parks instead, so close
// first takes the thread back to the process's namespace and working
// directory (which also ends the private namespace and drops anything
// left mounted in it).
func newMountNS() (*mountNS, error) {
	ns := &mountNS{calls: make(chan func()), ended: make(chan error, 1)}
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

// thread enters the new namespace, reports on started, runs the calls
// until close and goes back.
func (ns *mountNS) thread(started chan<- error) (err error) {
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
	testns.DetachForeign()
	ns.tid = unix.Gettid()
	up = true
	started <- nil
	for fn := range ns.calls {
		fn()
	}
	return nil
}

// run runs fn on the thread, in the namespace.
func (ns *mountNS) run(fn func() error) error {
	errc := make(chan error, 1)
	ns.calls <- func() { errc <- fn() }
	return <-errc
}

// close ends the namespace; see newMountNS.
func (ns *mountNS) close() error {
	close(ns.calls)
	return <-ns.ended
}

// path is p in the namespace, as this process's other threads reach it.
func (ns *mountNS) path(p string) string {
	return fmt.Sprintf("/proc/%d/task/%d/root%s", os.Getpid(), ns.tid, p)
}

// kernelMount mounts img with the kernel (mount -t fstype -o loop[,opts]) in
// a mount namespace of its own and returns the mount point as the test
// reaches it, and unmount, which unmounts it and waits for the loop
// device to go. Cleanup unmounts it if the test has not.
func kernelMount(t *testing.T, img, fstype, opts string) (mnt string, unmount func()) {
	t.Helper()
	dir := t.TempDir()
	ns, err := newMountNS()
	if err != nil {
		t.Fatal(err)
	}
	if opts != "" {
		opts = "loop," + opts
	} else {
		opts = "loop"
	}
	err = ns.run(func() error {
		out, err := exec.Command("mount", "-t", fstype, "-o", opts, img, dir).CombinedOutput()
		if err != nil {
			return fmt.Errorf("mount -t %s -o %s %s (tests run as root): %v\n%s",
				fstype, opts, img, err, out)
		}
		return nil
	})
	if err != nil {
		if cerr := ns.close(); cerr != nil {
			t.Error(cerr)
		}
		t.Fatal(err)
	}
	mounted := true
	unmount = func() {
		t.Helper()
		if !mounted {
			return
		}
		mounted = false
		err := ns.run(func() error {
			if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
				return fmt.Errorf("umount %s: %v\n%s", dir, err, out)
			}
			return nil
		})
		if cerr := ns.close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Error(err)
		}
		waitLoopGone(t, img)
	}
	t.Cleanup(unmount)
	return ns.path(dir), unmount
}
