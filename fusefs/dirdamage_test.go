package fusefs

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/husk-project/husk/ext3"
)

// A directory that links back to itself or to one above it (a damaged or
// hostile image) fails its lookup, and the node tree stays a tree: a
// trial saw the union's readahead walk such a cycle of parents without
// end (22 GB) once a file of 1 MiB or more in the looping directory was
// read through.
func TestDirectoryLoop(t *testing.T) {
	requireFuse(t)
	dir := t.TempDir()
	ov := filepath.Join(dir, "ov")
	d1 := filepath.Join(ov, "upper", "d1")
	must(t, os.MkdirAll(filepath.Join(d1, "sub"), 0o755))
	must(t, os.MkdirAll(filepath.Join(ov, "work"), 0o755))
	big := bytes.Repeat([]byte("0123456789abcdef"), 256<<10) // 4 MiB
	must(t, os.WriteFile(filepath.Join(d1, "big"), big, 0o644))
	img := filepath.Join(dir, "ov.img")
	tool(t, "mkfs.ext3", "-q", "-F", "-d", ov, img, "32M")
	// Hard links of directories: d1 into itself, and into its child.
	tool(t, "debugfs", "-w", "-R", "ln /upper/d1 /upper/d1/self", img)
	tool(t, "debugfs", "-w", "-R", "ln /upper/d1 /upper/d1/sub/up", img)

	var named sync.Map // images the errors named
	u, err := New(Options{Lowers: []Layer{readOnlyExt3(t, img).Named(img)},
		OnLayerError: func(le *LayerError) bool {
			named.Store(le.Image, true)
			return false
		}})
	must(t, err)
	mnt := t.TempDir()
	must(t, u.Mount(mnt))
	defer u.Unmount()

	for _, p := range []string{"d1/self", "d1/sub/up", "d1/self/big"} {
		if _, err := os.Stat(filepath.Join(mnt, p)); !errors.Is(err, syscall.EIO) {
			t.Errorf("stat %s: %v, want EIO", p, err)
		}
	}
	if _, ok := named.Load(img); !ok {
		t.Error("the lookup errors do not name the image") // the warning's image=
	}
	// The readahead of a large file walks up the tree to name it. It
	// follows other processes' readers only (ownThread).
	done := make(chan error, 1)
	go func() {
		got, err := exec.Command("cat", filepath.Join(mnt, "d1", "big")).Output()
		if err == nil && !bytes.Equal(got, big) {
			err = errors.New("wrong content")
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("read d1/big: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("reading d1/big did not finish in 20 s")
	}
	// The union is still whole: its readahead ends, and it unmounts.
	if err := u.Unmount(); err != nil {
		t.Fatalf("unmount: %v", err)
	}
}

// A directory listing that meets an entry naming a free inode, with no
// file type to go by (debugfs's ln writes none), lists it with no type,
// and its lookup fails with EIO: the listing failed with ENOENT, which ls
// and rm -rf take for a directory removed while read, so the directory
// looked empty and was silently skipped (and then with EIO, which hid
// its good entries).
func TestListingEntryToFreeInode(t *testing.T) {
	dir := t.TempDir()
	ov := filepath.Join(dir, "ov")
	must(t, os.MkdirAll(filepath.Join(ov, "upper", "d"), 0o755))
	must(t, os.MkdirAll(filepath.Join(ov, "work"), 0o755))
	must(t, os.WriteFile(filepath.Join(ov, "upper", "d", "f"), []byte("x"), 0o644))
	img := filepath.Join(dir, "ov.img")
	tool(t, "mkfs.ext3", "-q", "-F", "-d", ov, img, "32M")
	tool(t, "debugfs", "-w", "-R", "ln <7000> /upper/d/ghost", img) // 7000 is free

	l := readOnlyExt3(t, img)
	d, _, err := l.Lookup(l.Root(), "d")
	must(t, err)
	ents, err := l.ReadDir(d)
	if err != nil || len(ents) != 2 {
		t.Fatalf("ReadDir: %v %v, want f and ghost", ents, err)
	}
	for _, e := range ents {
		_, _, err := l.Lookup(d, e.Name)
		if want := e.Name == "ghost"; errors.Is(err, syscall.EIO) != want {
			t.Errorf("lookup %s: %v (EIO wanted: %v)", e.Name, err, want)
		}
	}
}

// readOnlyExt3 opens overlay image img as a read-only layer, closed at
// the end of the test.
func readOnlyExt3(t *testing.T, img string) *Ext3Layer {
	t.Helper()
	f, err := os.Open(img)
	must(t, err)
	t.Cleanup(func() { f.Close() })
	fi, _ := f.Stat()
	efs, err := ext3.Open(ext3.NewSection(f, 0, fi.Size()), fi.Size(),
		ext3.Options{ReadOnly: true})
	must(t, err)
	t.Cleanup(func() { efs.Close() })
	l, _, err := NewExt3Layer(efs, false)
	must(t, err)
	return l
}
