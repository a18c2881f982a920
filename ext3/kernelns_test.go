package ext3

import (
	"fmt"
	"os/exec"
	"testing"

	"github.com/husk-project/husk/internal/testns"
)

// Kernel mounts of test images, made where no other process can copy
// them (testns.NS; fusefs/kernelns_test.go does the same for its own).
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

// kernelMount mounts img with the kernel (mount -t fstype -o loop[,opts]) in
// a mount namespace of its own and returns the mount point as the test
// reaches it, and unmount, which unmounts it and waits for the loop
// device to go. Cleanup unmounts it if the test has not.
func kernelMount(t *testing.T, img, fstype, opts string) (mnt string, unmount func()) {
	t.Helper()
	dir := t.TempDir()
	ns, err := testns.New()
	if err != nil {
		t.Fatal(err)
	}
	if opts != "" {
		opts = "loop," + opts
	} else {
		opts = "loop"
	}
	err = ns.Run(func() error {
		out, err := exec.Command("mount", "-t", fstype, "-o", opts, img, dir).CombinedOutput()
		if err != nil {
			return fmt.Errorf("mount -t %s -o %s %s (tests run as root): %v\n%s",
				fstype, opts, img, err, out)
		}
		return nil
	})
	if err != nil {
		if cerr := ns.Close(); cerr != nil {
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
		err := ns.Run(func() error {
			if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
				return fmt.Errorf("umount %s: %v\n%s", dir, err, out)
			}
			return nil
		})
		if cerr := ns.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Error(err)
		}
		waitLoopGone(t, img)
	}
	t.Cleanup(unmount)
	return ns.Path(dir), unmount
}
