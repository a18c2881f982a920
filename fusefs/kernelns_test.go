package fusefs

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Kernel mounts of a fixture's images, made where no other process can
// copy them.
//
// A process that creates a mount namespace (every container start: the
// sandbox and e2e tests of the other packages running at the same time)
// copies all mounts of the namespace it leaves, and the host's root is
// private here, so our later umount does not reach the copy: the kernel
// keeps the ext3 superblock and its loop device until that container
// exits. TestInteropOpaqueRename then failed two ways: husk read the
// image before the kernel's rm -rf was written back (the removed
// directory was still there), and the next "mount -o loop" reused the
// still attached read-only loop device of noWhiteoutsInOpaque, so the
// ext3 came up read-only and the overlay mount failed with EINVAL.
// Mounts made in a private namespace of our own cannot be copied.

// mountStack is what one function mounted, unmounted last first.
type mountStack struct {
	targets []string
	images  []string
}

// loop mounts image at dir with a loop device; opts are "ro" or "rw"
// (said explicitly: mount would otherwise fall back to read-only on a
// read-only loop device it reuses).
func (s *mountStack) loop(image, dir, opts string) error {
	out, err := exec.Command("mount", "-o", "loop,"+opts, image, dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mount -o loop,%s %s: %v\n%s", opts, image, err, out)
	}
	s.targets = append(s.targets, dir)
	s.images = append(s.images, image)
	return nil
}

// overlay mounts the kernel's overlayfs at dir.
func (s *mountStack) overlay(dir string, flags uintptr, opts string) error {
	if err := unix.Mount("overlay", dir, "overlay", flags, opts); err != nil {
		return fmt.Errorf("mount overlay (%s): %w", opts, err)
	}
	s.targets = append(s.targets, dir)
	return nil
}

// unmount unmounts everything, retrying a busy mount for 5 s, then waits
// as long for the loop devices to be released (the kernel is done with
// the images once they are). It returns err, or else the first failure.
func (s *mountStack) unmount(err error) error {
	for i := len(s.targets) - 1; i >= 0; i-- {
		uerr := unix.Unmount(s.targets[i], 0)
		for try := 0; errors.Is(uerr, unix.EBUSY) && try < 50; try++ {
			time.Sleep(100 * time.Millisecond)
			uerr = unix.Unmount(s.targets[i], 0)
		}
		if uerr != nil && err == nil {
			err = fmt.Errorf("unmount %s: %w", s.targets[i], uerr)
		}
	}
	s.targets = nil
	for _, img := range s.images {
		if werr := waitLoopReleased(img, 5*time.Second); werr != nil && err == nil {
			err = werr
		}
	}
	s.images = nil
	return err
}

// waitLoopReleased waits until no loop device is backed by image.
func waitLoopReleased(image string, limit time.Duration) error {
	for end := time.Now().Add(limit); ; {
		out, err := exec.Command("losetup", "-j", image).CombinedOutput()
		if err != nil {
			return fmt.Errorf("losetup -j %s: %v\n%s", image, err, out)
		}
		if len(strings.TrimSpace(string(out))) == 0 {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("%s still on a loop device after unmount: %s", image, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
