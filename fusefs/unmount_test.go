package fusefs

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestUnmountStackedMount: with a mount stacked on the union's mount
// point (a container's bind onto /), go-fuse's unmount takes that one off
// and then waits for a server that still serves; Unmount must give up
// with an error naming the mount point rather than hang its caller (stage
// 1's teardown hung so, and husk with it).
func TestUnmountStackedMount(t *testing.T) {
	f := newFixture(t, 1)
	tree(t, f.lowers[0], "a=1")
	mnt, u := f.mount()
	old := unmountWait
	unmountWait = 2 * time.Second
	defer func() { unmountWait = old }()
	must(t, unix.Mount(t.TempDir(), mnt, "", unix.MS_BIND, ""))
	// Without the bound Unmount never returns: fail in seconds, not at
	// go test's timeout.
	errc := make(chan error, 1)
	go func() { errc <- u.Unmount() }()
	var err error
	select {
	case err = <-errc:
	case <-time.After(20 * time.Second):
		unix.Unmount(mnt, unix.MNT_DETACH)
		t.Fatal("Unmount with a mount stacked on the union did not return")
	}
	if err == nil || !strings.Contains(err.Error(), "did not stop") ||
		!strings.Contains(err.Error(), mnt) {
		t.Fatalf("Unmount with a mount stacked on the union: %v", err)
	}
	// The bind is gone; the union is still mounted until detached.
	must(t, unix.Unmount(mnt, unix.MNT_DETACH))
	done := make(chan struct{})
	go func() { u.server.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not stop after the union was detached")
	}
}
