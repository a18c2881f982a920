package fusefs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// rootlessUID is the unprivileged host uid the rootless test runs as.
const rootlessUID = 1500

// TestRootless serves a union from inside a user namespace, as husk does
// without privileges: the test binary re-executes itself as root of a new
// user and mount namespace mapped to an unprivileged host uid, mounts with
// mount(2) (no fusermount), and works on a directory upper that refuses
// trusted.* xattrs. The host then checks what was written.
func TestRootless(t *testing.T) {
	requireFuse(t)
	// Distributions ship /dev/fuse 0666; some machines have 0600.
	must(t, os.Chmod("/dev/fuse", 0666))
	base := t.TempDir()
	must(t, os.Chmod(filepath.Dir(base), 0755))
	must(t, os.Chmod(base, 0755))
	lower, ovl, mnt := filepath.Join(base, "lower"), filepath.Join(base, "ovl"),
		filepath.Join(base, "mnt")
	tree(t, lower, "gone=1", "d/x=1", "rootfile=r")
	must(t, os.MkdirAll(filepath.Join(ovl, "upper"), 0755))
	must(t, os.MkdirAll(filepath.Join(ovl, "work"), 0755))
	must(t, os.Mkdir(mnt, 0755))
	for _, p := range []string{ovl, filepath.Join(ovl, "upper"), filepath.Join(ovl, "work"), mnt} {
		must(t, os.Chown(p, rootlessUID, rootlessUID))
	}

	// The go build directory is private to root: run a copy of the binary.
	bin := filepath.Join(base, "fusefs.test")
	self, err := os.ReadFile(os.Args[0])
	must(t, err)
	must(t, os.WriteFile(bin, self, 0755))
	cmd := exec.Command(bin, "-test.run=^TestRootlessChild$", "-test.v")
	cmd.Dir = base
	cmd.Env = append(os.Environ(), "HUSK_ROOTLESS_CHILD="+strings.Join([]string{lower, ovl, mnt}, ":"))
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: rootlessUID, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: rootlessUID, Size: 1}},
		// Become the namespace's root (host uid rootlessUID); the test
		// itself runs as host root, which the namespace does not map.
		Credential: &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: true},
	}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("child in user namespace: %v\n%s", err, out)
	}

	up := filepath.Join(ovl, "upper")
	if st := stat(t, filepath.Join(up, "gone")); st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("upper gone: mode %o, want a char 0/0 whiteout", st.Mode)
	}
	d := filepath.Join(up, "d")
	for _, x := range []string{"user.overlay.opaque", "user.fuseoverlayfs.opaque"} {
		v := make([]byte, 4)
		if n, err := unix.Getxattr(d, x, v); err != nil || string(v[:n]) != "y" {
			t.Errorf("upper d %s = %q, %v", x, v[:n], err)
		}
	}
	if _, err := unix.Getxattr(d, "trusted.overlay.opaque", nil); err == nil {
		t.Error("trusted.overlay.opaque written from a user namespace")
	}
	if !exists(filepath.Join(d, ".wh..wh..opq")) {
		t.Error("upper d has no .wh..wh..opq")
	}
	// The image's root file, copied up, is stored as the user's.
	if st := stat(t, filepath.Join(up, "rootfile")); st.Uid != rootlessUID || st.Mode&0777 != 0600 {
		t.Errorf("upper rootfile: uid %d mode %o, want %d 0600", st.Uid, st.Mode, rootlessUID)
	}
}

// TestRootlessChild is TestRootless's half inside the user namespace. It
// returns at once unless TestRootless started it.
func TestRootlessChild(t *testing.T) {
	env := os.Getenv("HUSK_ROOTLESS_CHILD")
	if env == "" {
		return // only run by TestRootless
	}
	p := strings.Split(env, ":")
	lower, ovl, mnt := p[0], p[1], p[2]
	// Host root is unmapped here: the image's files read as 65534, and
	// the user (host 1500) is 0 in this namespace and in the container.
	l, err := OpenDirLayer(lower, nil)
	must(t, err)
	up, work, err := OpenOverlayDir(ovl, nil)
	must(t, err)
	// Squash: the image's files show as the user's, so that the kernel can
	// represent their owner and let them be removed (else EOVERFLOW).
	ids := IDMap{UIDs: []IDRange{{0, 0, 1}}, GIDs: []IDRange{{0, 0, 1}}, Squash: true}
	u, err := New(Options{Upper: up, WorkDir: work, Lowers: []Layer{l}, DirectMount: true,
		IDMap: ids})
	must(t, err)
	must(t, u.Mount(mnt))
	defer func() { must(t, u.Unmount()) }()

	must(t, os.Remove(filepath.Join(mnt, "gone")))
	must(t, os.RemoveAll(filepath.Join(mnt, "d")))
	must(t, os.Mkdir(filepath.Join(mnt, "d"), 0755))
	must(t, os.WriteFile(filepath.Join(mnt, "d/new"), []byte("n"), 0644))
	if st := stat(t, filepath.Join(mnt, "rootfile")); st.Uid != 0 {
		t.Errorf("rootfile uid %d in the namespace, want 0 (squashed)", st.Uid)
	}
	must(t, os.Chmod(filepath.Join(mnt, "rootfile"), 0600))
	wantListing(t, mnt, "d/", "d/new=n", fmt.Sprintf("rootfile=%s", "r"))
}
