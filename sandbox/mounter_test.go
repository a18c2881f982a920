// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// testUnion is what tests put in Spec.Union for testMounter.
type testUnion struct {
	// Tree is the template tree (testTree: package variables of the test
	// process are not set in the stage processes).
	Tree string
	// Fail makes Mount fail with EPERM (the error a FUSE mount gives).
	Fail bool
	// Panic makes Mount panic.
	Panic bool
	// FuseDevice replaces /dev/fuse for the explanation of the failure.
	FuseDevice string
	// NoMountpoints makes Mountpoint fail, as a read-only union would.
	NoMountpoints bool
	// Log is a host file where Unmount records that it ran.
	Log string
	// Links are symbolic links (path: target) to make in the tree, over
	// what is there.
	Links map[string]string
	// FUSE serves the tree through a go-fuse loopback file system mounted
	// from stage 1 (DirectMountStrict), as husk's union is.
	FUSE bool
	// OldKernel makes mount_setattr(2) fail with ENOSYS in stage 1.
	OldKernel bool
	// Bind, when set, is a root file system to bind read-only instead of
	// copying Tree; Mountpoint then fails as on a read-only image.
	Bind string
	// Stall, with FUSE, names an entry of the root whose lookup the
	// server never answers, after writing "stalled" to the host file
	// StallLog: a thread of stage 1 that looks it up (a bind there) waits
	// in its own mount for good (guard_test.go).
	Stall, StallLog string
	// Refuse makes the mount in stage 1 fail with EPERM as a kernel or
	// policy that forbids FUSE in a user namespace does; through
	// fusermount3 (Spec.Fusermount) the tree is served by a go-fuse
	// loopback, as with FUSE (fusermount_test.go).
	Refuse bool
}

// testMounter stands in for husk's FUSE union in stage 1: a tmpfs holding
// a copy of the template tree (host binaries and their libraries). The
// image files given to Run appear as /husk-file-N.
type testMounter struct{}

type testMounted struct {
	root  string
	layer string // where entries are created; empty: none can be
	u     testUnion
	srv   *fuse.Server // with FUSE
	// hosted: mounted through fusermount3 by stage 3 (fusermount_test.go).
	hosted bool
}

func (testMounter) Mount(spec *Spec, files []*os.File, target string) (Mounted, error) {
	var u testUnion
	if err := json.Unmarshal(spec.Union, &u); err != nil {
		return nil, err
	}
	if u.Panic {
		panic("test mounter panics")
	}
	if spec.Fusermount || u.Refuse {
		return fusermountTestMount(spec, u, target)
	}
	if u.OldKernel {
		mountSetattr = func(int, string, uint, *unix.MountAttr) error { return unix.ENOSYS }
	}
	if u.Fail {
		if u.FuseDevice != "" {
			fuseDevice = u.FuseDevice
		}
		return nil, &os.PathError{Op: "mount", Path: target, Err: syscall.EPERM}
	}
	if u.Bind != "" {
		u.NoMountpoints = true
		if err := bindMount(u.Bind, target, unix.MOUNT_ATTR_RDONLY); err != nil {
			return nil, err
		}
		return &testMounted{root: target, u: u}, nil
	}
	// Like the real union's upper layer, the tmpfs stays reachable at a
	// path of its own (layer) where Mountpoint creates entries: through
	// target, they would land in whatever is bound there.
	layer := target + ".layer"
	if err := os.Mkdir(layer, 0o755); err != nil {
		return nil, err
	}
	if err := unix.Mount("tmpfs", layer, "tmpfs", 0, "size=64m,mode=0755"); err != nil {
		return nil, err
	}
	if err := copyTree(u.Tree, layer); err != nil {
		return nil, err
	}
	for name, link := range u.Links {
		p := filepath.Join(layer, name)
		if err := os.RemoveAll(p); err != nil {
			return nil, err
		}
		if err := os.Symlink(link, p); err != nil {
			return nil, err
		}
	}
	for i, f := range files {
		b, err := io.ReadAll(f)
		if err != nil {
			return nil, err
		}
		name := filepath.Join(layer, fmt.Sprintf("husk-file-%d", i))
		if err := os.WriteFile(name, b, 0o644); err != nil {
			return nil, err
		}
	}
	if u.FUSE {
		root, err := stallingRoot(layer, u)
		if err != nil {
			return nil, err
		}
		srv, err := fusefs.Mount(target, root, &fusefs.Options{MountOptions: fuse.MountOptions{
			DirectMount: true, DirectMountStrict: true, FsName: "husk-test"}})
		if err != nil {
			return nil, err
		}
		return &testMounted{root: target, layer: layer, u: u, srv: srv}, nil
	}
	if err := unix.Mount(layer, target, "", unix.MS_BIND, ""); err != nil {
		return nil, err
	}
	return &testMounted{root: target, layer: layer, u: u}, nil
}

func (m *testMounted) Mountpoint(path string, dir bool) error {
	if m.u.NoMountpoints || m.layer == "" {
		return syscall.EROFS
	}
	p := filepath.Join(m.layer, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if dir {
		return os.Mkdir(p, 0o755)
	}
	return os.WriteFile(p, nil, 0o644)
}

func (m *testMounted) Unmount() error {
	if m.hosted {
		return m.unmountHosted()
	}
	var err error
	if m.srv != nil {
		err = m.srv.Unmount()
		m.srv.Wait()
	} else {
		err = unix.Unmount(m.root, 0)
	}
	if errors.Is(err, unix.EBUSY) {
		err = unix.Unmount(m.root, unix.MNT_DETACH)
	}
	if m.layer != "" {
		err = errors.Join(err, unix.Unmount(m.layer, 0), os.Remove(m.layer))
	}
	if m.u.Log != "" {
		msg := "unmounted\n"
		if err != nil {
			msg = err.Error() + "\n"
		}
		_ = os.WriteFile(m.u.Log, []byte(msg), 0o644)
	}
	return err
}

// copyTree copies directories, regular files and symbolic links.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if rel == "." {
				return nil
			}
			return os.Mkdir(to, info.Mode().Perm()|fs.ModeSticky&info.Mode())
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, to)
		default:
			return copyFile(p, to, info.Mode().Perm())
		}
	})
}

// treeBinaries are the host programs copied into the test tree.
var treeBinaries = []string{
	"/usr/bin/dash", "/usr/bin/id", "/usr/bin/cat", "/usr/bin/sleep", "/usr/bin/touch",
	"/usr/bin/ls", "/usr/bin/readlink", "/usr/bin/stat", "/usr/bin/env", "/usr/bin/true",
}

// buildTree makes a merged-/usr root with treeBinaries, their libraries
// (from ldd) and a two-line /etc/passwd and /etc/group.
func buildTree(root string) error {
	for _, d := range []string{"usr/bin", "usr/lib", "usr/lib64", "etc", "proc", "sys",
		"dev", "tmp", "var/tmp", "root", "home"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	for _, d := range []string{"tmp", "var/tmp"} {
		if err := os.Chmod(filepath.Join(root, d), 0o777|os.ModeSticky); err != nil {
			return err
		}
	}
	for _, l := range []string{"bin", "lib", "lib64"} {
		if err := os.Symlink("usr/"+l, filepath.Join(root, l)); err != nil {
			return err
		}
	}
	libs := map[string]bool{}
	for _, b := range treeBinaries {
		if err := copyFile(b, filepath.Join(root, b), 0o755); err != nil {
			return fmt.Errorf("%w (install coreutils and dash)", err)
		}
		out, err := exec.Command("ldd", b).Output()
		if err != nil {
			return fmt.Errorf("ldd %s: %w (install libc-bin)", b, err)
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			for _, f := range strings.Fields(sc.Text()) {
				if strings.HasPrefix(f, "/") {
					libs[f] = true
				}
			}
		}
	}
	for lib := range libs {
		real, err := filepath.EvalSymlinks(lib)
		if err != nil {
			return err
		}
		// /lib and /lib64 are links to usr/ in the tree.
		dst := filepath.Join(root, "usr", strings.TrimPrefix(lib, "/usr"))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := copyFile(real, dst, 0o755); err != nil && !os.IsExist(err) {
			return err
		}
	}
	if err := os.Symlink("dash", filepath.Join(root, "usr/bin/sh")); err != nil {
		return err
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/sh\n",
		"etc/group":  "root:x:0:\ndaemon:x:1:\n",
		"etc/hosts":  "",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// stallingNode is a loopback node whose lookup of stall never returns.
type stallingNode struct {
	fusefs.LoopbackNode
	stall, log string
}

func (n *stallingNode) Lookup(ctx context.Context, name string,
	out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	if n.stall != "" && name == n.stall {
		_ = os.WriteFile(n.log, []byte("stalled\n"), 0o644)
		select {} // the request stays unanswered
	}
	return n.LoopbackNode.Lookup(ctx, name, out)
}

// stallingRoot is go-fuse's loopback root of dir, with u.Stall stalling.
func stallingRoot(dir string, u testUnion) (fusefs.InodeEmbedder, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return nil, err
	}
	r := &fusefs.LoopbackRoot{Path: dir, Dev: uint64(st.Dev)}
	r.NewNode = func(rd *fusefs.LoopbackRoot, _ *fusefs.Inode, _ string,
		_ *syscall.Stat_t) fusefs.InodeEmbedder {
		return &stallingNode{LoopbackNode: fusefs.LoopbackNode{RootData: rd}}
	}
	root := &stallingNode{LoopbackNode: fusefs.LoopbackNode{RootData: r}, stall: u.Stall,
		log: u.StallLog}
	r.RootNode = root
	return root, nil
}
