package fusefs

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/husk-project/husk/internal/testns"
)

// Interoperability with the kernel's overlayfs and fuse-overlayfs: an
// upper written by one is read by the others with the same result.

// interopLower is the lower tree of the interop tests.
var interopLower = []string{"f1=one", "f2=two", "keep=k", "D/a/b/c=deep", "D/x=1",
	"R/r1=r", "R/sub/r2=rr", "M/m1=m", "L->f1", "E/"}

// interopWork changes the union at mnt the same way whatever serves it.
// Directory renames are skipped where the server refuses them (EXDEV from
// the kernel without redirect_dir, and fuse-overlayfs); renameDirs says
// whether to try.
func interopWork(t *testing.T, mnt string, renameDirs bool) {
	t.Helper()
	p := func(s string) string { return filepath.Join(mnt, s) }
	must(t, os.WriteFile(p("new"), []byte("n"), 0640))
	fh, err := os.OpenFile(p("f1"), os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = fh.WriteString("+more")
	must(t, err)
	fh.Close()
	must(t, os.Remove(p("f2")))
	must(t, os.RemoveAll(p("D")))
	must(t, os.MkdirAll(p("D/a"), 0755))
	must(t, os.WriteFile(p("D/a/fresh"), []byte("f"), 0644))
	must(t, os.Remove(p("M/m1")))
	must(t, os.WriteFile(p("M/m2"), []byte("m2"), 0644))
	must(t, os.Chmod(p("keep"), 0600))
	must(t, os.Symlink("new", p("sl")))
	must(t, os.Link(p("new"), p("hl")))
	must(t, unix.Setxattr(p("keep"), "user.tag", []byte("v"), 0))
	must(t, os.Rename(p("f1"), p("f1moved")))
	must(t, os.Remove(p("E")))
	if renameDirs {
		must(t, os.Rename(p("R"), p("R2")))
	}
}

// snapshot describes the tree under root: every path with its type,
// permissions, content or target, and user.* xattrs.
func snapshot(t *testing.T, root string) []string {
	t.Helper()
	out, err := readTree(root)
	must(t, err)
	return out
}

// readTree is snapshot for code that may not end the test (it runs on a
// thread of its own in testns.InPrivate).
func readTree(root string) ([]string, error) {
	var out []string
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		s := fmt.Sprintf("%s %v", rel, fi.Mode())
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			s += " -> " + target
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if len(b) > 64 {
				s += fmt.Sprintf(" = %d bytes sha256 %x", len(b), sha256.Sum256(b))
			} else {
				s += " = " + string(b)
			}
		}
		buf := make([]byte, 1024)
		if n, err := unix.Llistxattr(p, buf); err == nil {
			var xs []string
			for _, x := range strings.Split(string(buf[:n]), "\x00") {
				// Overlay markers show through the kernel mounted without
				// userxattr (COMPAT §4.2); they are not content.
				if strings.HasPrefix(x, "user.") && !privateXattr(x) {
					v := make([]byte, 256)
					k, _ := unix.Lgetxattr(p, x, v)
					xs = append(xs, x+"="+string(v[:max(k, 0)]))
				}
			}
			sort.Strings(xs)
			if len(xs) > 0 {
				s += " " + strings.Join(xs, ",")
			}
		}
		out = append(out, s)
		return nil
	})
	sort.Strings(out)
	return out, err
}

func sameSnapshot(t *testing.T, what string, got, want []string) {
	t.Helper()
	g, w := map[string]bool{}, map[string]bool{}
	for _, s := range got {
		g[s] = true
	}
	for _, s := range want {
		w[s] = true
	}
	for _, s := range got {
		if !w[s] {
			t.Errorf("%s: unexpected %q", what, s)
		}
	}
	for _, s := range want {
		if !g[s] {
			t.Errorf("%s: missing %q", what, s)
		}
	}
}

// kernelOverlay mounts the kernel's overlayfs as Apptainer does (COMPAT
// §4.3) and returns the mount point; it is unmounted at the end.
func kernelOverlay(t *testing.T, f *fixture) string {
	t.Helper()
	mnt := t.TempDir()
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(f.lowers, ":"),
		f.upper(), filepath.Join(f.ovl, "work"))
	if err := unix.Mount("overlay", mnt, "overlay", unix.MS_NODEV, opts); err != nil {
		t.Fatalf("mount overlay (%s): %v", opts, err)
	}
	t.Cleanup(func() { unmountRetry(t, mnt, unix.Unmount) })
	return mnt
}

// fuseOverlayfs mounts fuse-overlayfs over the fixture.
func fuseOverlayfs(t *testing.T, f *fixture) string {
	t.Helper()
	if _, err := exec.LookPath("fuse-overlayfs"); err != nil {
		t.Fatal("fuse-overlayfs not found: install the fuse-overlayfs package")
	}
	mnt := t.TempDir()
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(f.lowers, ":"),
		f.upper(), filepath.Join(f.ovl, "work"))
	out, err := exec.Command("fuse-overlayfs", "-o", opts, mnt).CombinedOutput()
	if err != nil {
		t.Fatalf("fuse-overlayfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		unmountRetry(t, mnt, func(p string, _ int) error {
			return exec.Command("fusermount3", "-u", p).Run()
		})
	})
	return mnt
}

// isMounted reports whether p is a mount point.
func isMounted(t *testing.T, p string) bool {
	b, err := os.ReadFile("/proc/thread-self/mountinfo")
	must(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == p {
			return true
		}
	}
	return false
}

// unmountRetry unmounts p, retrying while it is busy, at most once.
func unmountRetry(t *testing.T, p string, um func(string, int) error) {
	for i := 0; isMounted(t, p); i++ {
		err := um(p, 0)
		if err == nil || errors.Is(err, syscall.EINVAL) {
			return
		}
		if i == 50 {
			t.Errorf("unmount %s: %v", p, err)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func interopFixture(t *testing.T) *fixture {
	f := newFixture(t, 2)
	tree(t, f.lowers[1], interopLower...)
	tree(t, f.lowers[0], "f2=two-top", "top=t")
	return f
}

// An upper written by husk reads the same through the kernel and
// fuse-overlayfs.
func TestInteropHuskWrites(t *testing.T) {
	f := interopFixture(t)
	mnt, u := f.mount()
	interopWork(t, mnt, true)
	want := snapshot(t, mnt)
	must(t, u.Unmount())

	k := kernelOverlay(t, f)
	sameSnapshot(t, "kernel overlayfs over husk's upper", snapshot(t, k), want)
	unmountRetry(t, k, unix.Unmount)

	fo := fuseOverlayfs(t, f)
	sameSnapshot(t, "fuse-overlayfs over husk's upper", snapshot(t, fo), want)
}

// Uppers written by the kernel and by fuse-overlayfs read the same
// through husk.
func TestInteropOthersWrite(t *testing.T) {
	for _, who := range []string{"kernel", "fuse-overlayfs"} {
		t.Run(who, func(t *testing.T) {
			f := interopFixture(t)
			var mnt string
			if who == "kernel" {
				mnt = kernelOverlay(t, f)
			} else {
				mnt = fuseOverlayfs(t, f)
			}
			// Both refuse to rename lower directories (EXDEV).
			interopWork(t, mnt, false)
			want := snapshot(t, mnt)
			if who == "kernel" {
				unmountRetry(t, mnt, unix.Unmount)
			} else {
				unmountRetry(t, mnt, func(p string, _ int) error {
					return exec.Command("fusermount3", "-u", p).Run()
				})
			}
			h, _ := f.mount()
			sameSnapshot(t, "husk over "+who+"'s upper", snapshot(t, h), want)
		})
	}
}

// renameLower is the lower of the opaque-rename tests, shaped like
// /usr/share/doc of a Debian image.
var renameLower = []string{"doc/apt/changelog.gz=c", "doc/apt/copyright=x",
	"doc/apt/ex/a=1", "doc/apt/ex/b=2", "doc/apt/ex/deep/d1=d", "doc/apt/ex/deep/d2=e",
	"doc/other/o=o", "doc/other/sub/s=s", "doc/other/sub/t=t", "keep=k"}

// A directory that husk makes opaque in the upper (by renaming a lower
// directory) holds no whiteouts: the kernel's overlayfs does not merge
// an opaque directory and would show them as broken entries that can
// never be removed. Each case changes the union through husk, then the
// kernel's overlayfs must show the same tree and remove the renamed
// directory with rm -rf, and husk must see the kernel's result.
func TestInteropOpaqueRename(t *testing.T) {
	cases := []struct {
		name string
		work func(t *testing.T, p func(string) string)
		rmrf string // removed through the kernel
	}{{
		// The new-user trial: delete in a lower directory, rename it.
		name: "delete then rename",
		work: func(t *testing.T, p func(string) string) {
			must(t, os.Remove(p("doc/apt/changelog.gz")))
			must(t, os.Rename(p("doc/apt"), p("doc/apt2")))
		},
		rmrf: "doc/apt2",
	}, {
		name: "nested deletes and renames",
		work: func(t *testing.T, p func(string) string) {
			must(t, os.Remove(p("doc/apt/copyright")))
			must(t, os.Remove(p("doc/apt/ex/a")))
			must(t, os.Remove(p("doc/apt/ex/deep/d1")))
			must(t, os.Rename(p("doc/apt/ex/deep"), p("doc/apt/ex/deep2")))
			must(t, os.Remove(p("doc/apt/ex/deep2/d2")))
			must(t, os.Rename(p("doc/apt"), p("doc/apt2")))
			// The old name made again over its whiteout.
			must(t, os.MkdirAll(p("doc/apt/ex"), 0755))
			must(t, os.WriteFile(p("doc/apt/ex/new"), []byte("n"), 0644))
		},
		rmrf: "doc/apt2",
	}, {
		name: "delete after rename",
		work: func(t *testing.T, p func(string) string) {
			must(t, os.Rename(p("doc/apt"), p("doc/apt2")))
			must(t, os.Remove(p("doc/apt2/changelog.gz")))
			must(t, os.Remove(p("doc/apt2/ex/deep/d1")))
			must(t, os.RemoveAll(p("doc/apt2/ex/deep")))
			must(t, os.WriteFile(p("doc/apt2/ex/a"), []byte("new a"), 0644))
		},
		rmrf: "doc/apt2/ex",
	}, {
		// A renamed (opaque) directory receives a renamed directory
		// that had whiteouts at two depths.
		name: "rename into renamed",
		work: func(t *testing.T, p func(string) string) {
			must(t, os.Rename(p("doc/apt"), p("doc/apt2")))
			must(t, os.Remove(p("doc/other/o")))
			must(t, os.Remove(p("doc/other/sub/s")))
			must(t, os.Rename(p("doc/other"), p("doc/apt2/other")))
			must(t, os.Remove(p("doc/apt2/other/sub/t")))
		},
		rmrf: "doc/apt2",
	}}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			f := newImageFixture(t, renameLower...)
			mnt, stop := f.mount()
			c.work(t, func(s string) string { return filepath.Join(mnt, s) })
			want := snapshot(t, mnt)
			stop()
			f.fsck()
			f.noWhiteoutsInOpaque()

			var kernel, after []string
			err := f.kernelRW(func(k string) error {
				var err error
				if kernel, err = readTree(k); err != nil {
					return err
				}
				rm := filepath.Join(k, c.rmrf)
				if out, err := exec.Command("rm", "-rf", rm).CombinedOutput(); err != nil {
					return fmt.Errorf("rm -rf %s under the kernel: %v\n%s", c.rmrf, err, out)
				}
				if exists(rm) {
					return fmt.Errorf("%s still there after rm -rf under the kernel", c.rmrf)
				}
				after, err = readTree(k)
				return err
			})
			must(t, err)
			sameSnapshot(t, "kernel overlayfs over husk's upper", kernel, want)
			want = after
			f.fsck()

			mnt2, stop2 := f.mount()
			sameSnapshot(t, "husk after the kernel's rm -rf", snapshot(t, mnt2), want)
			stop2()
			f.fsck()
		})
	}
}

// kernelRW mounts the fixture's images with the kernel (loop) and the
// kernel's overlayfs over them, writable, as Apptainer does with an
// overlay image, runs fn on the overlay, and unmounts all three. All of
// it happens in a private mount namespace (see testns.InPrivate): once
// kernelRW returns, the kernel has written the image back and let go.
func (f *imageFixture) kernelRW(fn func(mnt string) error) error {
	dir := f.t.TempDir()
	lo, ov, mnt := filepath.Join(dir, "lo"), filepath.Join(dir, "ov"), filepath.Join(dir, "m")
	for _, d := range []string{lo, ov, mnt} {
		if err := os.Mkdir(d, 0755); err != nil {
			return err
		}
	}
	return testns.InPrivate(func() (err error) {
		var s mountStack
		defer func() { err = s.unmount(err) }()
		if err := s.loop(f.sqfs, lo, "ro"); err != nil {
			return err
		}
		if err := s.loop(f.ext3, ov, "rw"); err != nil {
			return err
		}
		opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lo,
			filepath.Join(ov, "upper"), filepath.Join(ov, "work"))
		if err := s.overlay(mnt, unix.MS_NODEV, opts); err != nil {
			return err
		}
		return fn(mnt)
	})
}

// noWhiteoutsInOpaque fails the test if debugfs lists a character device
// (a whiteout) in an opaque directory of the ext3 upper, or if the upper
// has no opaque directory at all (the check would prove nothing).
func (f *imageFixture) noWhiteoutsInOpaque() {
	t := f.t
	t.Helper()
	ov := t.TempDir()
	var opaque []string
	err := testns.InPrivate(func() (err error) {
		var s mountStack
		defer func() { err = s.unmount(err) }()
		if err := s.loop(f.ext3, ov, "ro"); err != nil {
			return err
		}
		return filepath.Walk(filepath.Join(ov, "upper"), func(p string, fi os.FileInfo,
			err error) error {
			if err != nil || !fi.IsDir() {
				return err
			}
			for _, x := range opaqueXattrs {
				v := make([]byte, 8)
				if n, err := unix.Lgetxattr(p, x, v); err == nil && string(v[:n]) == "y" {
					rel, _ := filepath.Rel(ov, p)
					opaque = append(opaque, "/"+rel)
					break
				}
			}
			return nil
		})
	})
	must(t, err)
	if len(opaque) == 0 {
		t.Fatal("no opaque directory in the upper")
	}
	for _, d := range opaque {
		out, err := exec.Command("debugfs", "-R", "ls -l "+d, f.ext3).CombinedOutput()
		if err != nil {
			t.Fatalf("debugfs ls -l %s: %v\n%s", d, err, out)
		}
		found := false
		for _, line := range strings.Split(string(out), "\n") {
			fs := strings.Fields(line)
			if len(fs) < 3 {
				continue
			}
			mode, err := strconv.ParseUint(fs[1], 8, 32)
			if err != nil {
				continue
			}
			name := fs[len(fs)-1]
			if name == "." {
				found = true
			}
			if mode&syscall.S_IFMT == syscall.S_IFCHR {
				t.Errorf("opaque %s holds whiteout %s: %s", d, name, line)
			}
		}
		if !found {
			t.Fatalf("debugfs ls -l %s: no listing\n%s", d, out)
		}
	}
}
