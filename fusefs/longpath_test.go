package fusefs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// walkDirs opens the chain of directories names below dir, one openat at
// a time (the whole path is longer than PATH_MAX), making each with mkdir
// first when mk is set, and returns the deepest one's descriptor.
func walkDirs(t *testing.T, dir string, names []string, mk bool) int {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(t, err)
	for i, name := range names {
		if mk {
			if err := unix.Mkdirat(fd, name, 0755); err != nil {
				unix.Close(fd)
				t.Fatalf("mkdir at depth %d: %v", i, err)
			}
		}
		nfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatalf("open at depth %d: %v", i, err)
		}
		fd = nfd
	}
	return fd
}

// A directory upper serves paths longer than PATH_MAX (every name within
// NAME_MAX), as pjdfstest's */03.t make them, warm and cold.
func TestDirLayerPathBeyondPathMax(t *testing.T) {
	f := newFixture(t, 1)
	mnt, _ := f.mount()
	var names []string
	for i := 0; i < 20; i++ { // 20 * 256 > 4096
		names = append(names, strings.Repeat(string(rune('a'+i)), 255))
	}
	fd := walkDirs(t, mnt, names, true)
	ffd, err := unix.Openat(fd, "f", unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY, 0644)
	if err != nil {
		unix.Close(fd)
		t.Fatalf("create at the bottom: %v", err)
	}
	_, err = unix.Write(ffd, []byte("deep"))
	unix.Close(ffd)
	must(t, err)
	must(t, unix.Fchownat(fd, "f", 12, 34, unix.AT_SYMLINK_NOFOLLOW))
	must(t, unix.Symlinkat("f", fd, "s"))
	unix.Close(fd)

	// A fresh union over the same directory walks it with a cold cache.
	l, err := OpenDirLayer(f.upper(), nil)
	must(t, err)
	t.Cleanup(func() { l.Close() })
	mnt2, _ := mountUnion(t, Options{Lowers: []Layer{l}})
	for _, root := range []string{mnt, mnt2, f.upper()} {
		fd := walkDirs(t, root, names, false)
		var st unix.Stat_t
		must(t, unix.Fstatat(fd, "f", &st, unix.AT_SYMLINK_NOFOLLOW))
		buf := make([]byte, 16)
		ffd, err := unix.Openat(fd, "f", unix.O_RDONLY, 0)
		must(t, err)
		n, _ := unix.Read(ffd, buf)
		unix.Close(ffd)
		lbuf := make([]byte, 16)
		ln, lerr := unix.Readlinkat(fd, "s", lbuf)
		unix.Close(fd)
		if string(buf[:n]) != "deep" || st.Uid != 12 || st.Gid != 34 || st.Size != 4 {
			t.Errorf("%s: f reads %q, owner %d:%d size %d", root, buf[:n], st.Uid, st.Gid,
				st.Size)
		}
		if lerr != nil || string(lbuf[:ln]) != "f" {
			t.Errorf("%s: readlink s: %q, %v", root, lbuf[:ln], lerr)
		}
	}
	// And removes it all again, bottom up.
	for i := len(names); i >= 0; i-- {
		fd := walkDirs(t, mnt, names[:i], false)
		if i == len(names) {
			must(t, unix.Unlinkat(fd, "f", 0))
			must(t, unix.Unlinkat(fd, "s", 0))
		} else {
			must(t, unix.Unlinkat(fd, names[i], unix.AT_REMOVEDIR))
		}
		unix.Close(fd)
	}
	wantListing(t, f.upper())
}

// failOpen is an upper whose files cannot be opened.
type failOpen struct{ *DirLayer }

func (failOpen) Open(Node) error { return unix.EIO }

// A create that fails after the upper made the file leaves nothing: not
// the file, and not a lower file whose whiteout it had removed.
func TestFailedCreateLeavesNothing(t *testing.T) {
	f := newFixture(t, 1)
	tree(t, f.lowers[0], "gone=1")
	mnt, _ := f.mount(func(o *Options) { o.Upper = failOpen{o.Upper.(*DirLayer)} })
	must(t, os.Remove(filepath.Join(mnt, "gone")))
	for _, name := range []string{"gone", "new"} {
		_, err := os.OpenFile(filepath.Join(mnt, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0644)
		if !errors.Is(err, syscall.EIO) {
			t.Errorf("create %s: %v, want EIO", name, err)
		}
		if exists(filepath.Join(mnt, name)) {
			t.Errorf("%s visible after the failed create", name)
		}
	}
	if _, err := os.Lstat(filepath.Join(f.upper(), "new")); !os.IsNotExist(err) {
		t.Errorf("upper/new left behind: %v", err)
	}
	if st := stat(t, filepath.Join(f.upper(), "gone")); st.Mode&unix.S_IFMT != unix.S_IFCHR ||
		st.Rdev != 0 {
		t.Errorf("upper/gone mode %o rdev %d, want the whiteout back", st.Mode, st.Rdev)
	}
}
