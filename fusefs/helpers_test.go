package fusefs

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/husk-project/husk/squash"
)

// fixture is a set of host directories used as layers: lowers (top
// first) and an Apptainer-style overlay directory (upper/, work/).
type fixture struct {
	t      *testing.T
	lowers []string
	ovl    string
}

// newFixture makes n empty lower directories and an overlay directory.
func newFixture(t *testing.T, n int) *fixture {
	t.Helper()
	requireFuse(t)
	base := t.TempDir()
	f := &fixture{t: t, ovl: filepath.Join(base, "ovl")}
	for i := 0; i < n; i++ {
		d := filepath.Join(base, "lower"+string(rune('0'+i)))
		must(t, os.MkdirAll(d, 0755))
		f.lowers = append(f.lowers, d)
	}
	must(t, os.MkdirAll(filepath.Join(f.ovl, "upper"), 0755))
	must(t, os.MkdirAll(filepath.Join(f.ovl, "work"), 0755))
	return f
}

func (f *fixture) upper() string { return filepath.Join(f.ovl, "upper") }

// requireFuse fails the test when FUSE cannot be used.
func requireFuse(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Fatal("fusefs tests mount FUSE, kernel overlayfs and loop devices: run them as root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Fatalf("/dev/fuse missing (install fuse3, load the fuse module): %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// mount serves the fixture's union at a new directory and unmounts it at
// the end of the test.
func (f *fixture) mount(opts ...func(*Options)) (string, *Union) {
	t := f.t
	t.Helper()
	var o Options
	for _, d := range f.lowers {
		l, err := OpenDirLayer(d, nil)
		must(t, err)
		t.Cleanup(func() { l.Close() })
		o.Lowers = append(o.Lowers, l)
	}
	up, work, err := OpenOverlayDir(f.ovl, nil)
	must(t, err)
	t.Cleanup(func() { up.Close() })
	o.Upper, o.WorkDir = up, work
	for _, fn := range opts {
		fn(&o)
	}
	return mountUnion(t, o)
}

// mountUnion mounts a union built from o at a temporary directory.
func mountUnion(t *testing.T, o Options) (string, *Union) {
	t.Helper()
	u, err := New(o)
	must(t, err)
	mnt := t.TempDir()
	must(t, u.Mount(mnt))
	t.Cleanup(func() {
		if err := u.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	return mnt, u
}

// tree builds files under root from a compact spec: "d/" a directory,
// "f=content" a file, "l->target" a symlink, "w" a char 0/0 whiteout.
func tree(t *testing.T, root string, spec ...string) {
	t.Helper()
	for _, s := range spec {
		switch {
		case strings.HasSuffix(s, "/"):
			must(t, os.MkdirAll(filepath.Join(root, s), 0755))
		case strings.Contains(s, "->"):
			p := strings.SplitN(s, "->", 2)
			must(t, os.MkdirAll(filepath.Dir(filepath.Join(root, p[0])), 0755))
			must(t, os.Symlink(p[1], filepath.Join(root, p[0])))
		case strings.Contains(s, "="):
			p := strings.SplitN(s, "=", 2)
			must(t, os.MkdirAll(filepath.Dir(filepath.Join(root, p[0])), 0755))
			must(t, os.WriteFile(filepath.Join(root, p[0]), []byte(p[1]), 0644))
		case strings.HasPrefix(s, "wh:"):
			p := filepath.Join(root, s[3:])
			must(t, os.MkdirAll(filepath.Dir(p), 0755))
			must(t, unix.Mknod(p, unix.S_IFCHR, 0))
		default:
			t.Fatalf("bad tree spec %q", s)
		}
	}
}

// listing returns the sorted names under root (recursive, relative),
// directories with a trailing slash, files with "=content", symlinks
// with "->target".
func listing(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		switch {
		case fi.IsDir():
			out = append(out, rel+"/")
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out = append(out, rel+"->"+target)
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out = append(out, rel+"="+string(b))
		default:
			out = append(out, rel+"?")
		}
		return nil
	})
	must(t, err)
	sort.Strings(out)
	return out
}

// wantListing compares a listing with the expected one.
func wantListing(t *testing.T, root string, want ...string) {
	t.Helper()
	got := listing(t, root)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("tree %s:\n got %q\nwant %q", root, got, want)
	}
}

func stat(t *testing.T, p string) *syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	must(t, syscall.Lstat(p, &st))
	return &st
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// squashLayer packs src with mksquashfs (gzip) into dir/img.sqfs and
// returns it as a layer whose uncompressed blocks are spliced.
func squashLayer(t *testing.T, src, dir string) Layer {
	t.Helper()
	sqfs := filepath.Join(dir, "img.sqfs")
	tool(t, "mksquashfs", src, sqfs, "-noappend", "-quiet", "-comp", "gzip")
	f, err := os.Open(sqfs)
	must(t, err)
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	must(t, err)
	sq, err := squash.Open(f, st.Size(), nil)
	must(t, err)
	return NewSquashLayer(sq).Backed(f, 0)
}
