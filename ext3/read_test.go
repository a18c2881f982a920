package ext3

import (
	"bytes"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// makeTree fills dir with every kind of file mkfs.ext3 -d copies.
func makeTree(t testing.TB, dir string) {
	t.Helper()
	rng := rand.New(rand.NewSource(1))
	data := func(n int) []byte {
		b := make([]byte, n)
		rng.Read(b)
		return b
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []int{0, 1, 59, 1023, 1024, 4097, 12 * 1024, 13*1024 + 5, 300 << 10, 2 << 20} {
		must(os.WriteFile(filepath.Join(dir, "f"+itoa(n)), data(n), 0o644))
	}
	// Sparse file reaching the triple indirect range with 1 KiB blocks.
	sp, err := os.Create(filepath.Join(dir, "sparse"))
	must(err)
	sp.WriteAt([]byte("head"), 0)
	sp.WriteAt([]byte("middle"), 5<<20)
	sp.WriteAt([]byte("tail"), 80<<20)
	sp.Close()
	must(os.Symlink("short-target", filepath.Join(dir, "fastlink")))
	long := string(bytes.Repeat([]byte("x/"), 60))
	must(os.Symlink(long, filepath.Join(dir, "slowlink")))
	must(unix.Mkfifo(filepath.Join(dir, "fifo"), 0o600))
	must(unix.Mknod(filepath.Join(dir, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(unix.Mknod(filepath.Join(dir, "bigdev"), unix.S_IFBLK|0o600, int(unix.Mkdev(259, 70000))))
	must(os.Link(filepath.Join(dir, "f1"), filepath.Join(dir, "hardlink")))
	must(os.MkdirAll(filepath.Join(dir, "d1/d2/d3"), 0o750))
	must(os.WriteFile(filepath.Join(dir, "d1/d2/d3/deep"), []byte("deep"), 0o600))
	must(os.Chown(filepath.Join(dir, "d1/d2"), 1234, 5678))
	big := filepath.Join(dir, "bigdir")
	must(os.Mkdir(big, 0o755))
	for i := 0; i < 600; i++ {
		must(os.WriteFile(filepath.Join(big, "entry-with-a-longish-name-"+itoa(i)), nil, 0o644))
	}
	must(unix.Setxattr(filepath.Join(dir, "f1"), "user.small", []byte("v"), 0))
	must(unix.Setxattr(filepath.Join(dir, "f1024"), "user.big", data(700), 0))
	must(unix.Setxattr(filepath.Join(dir, "d1"), "trusted.overlay.opaque", []byte("y"), 0))
	must(os.Chmod(filepath.Join(dir, "f59"), 0o755|os.ModeSetuid))
}

func itoa(n int) string { return string(appendInt(nil, n)) }

func appendInt(b []byte, n int) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

// compareTree walks src and checks every entry against the image.
func compareTree(t *testing.T, f *FS, src string, dir uint32) {
	t.Helper()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.ReadDir(dir)
	if err != nil {
		t.Fatalf("ReadDir %s: %v", src, err)
	}
	names := map[string]DirEntry{}
	for _, e := range got {
		names[e.Name] = e
	}
	for _, e := range ents {
		p := filepath.Join(src, e.Name())
		de, ok := names[e.Name()]
		if !ok {
			t.Errorf("%s missing from image", p)
			continue
		}
		delete(names, e.Name())
		a, err := f.Lookup(dir, e.Name())
		if err != nil {
			t.Errorf("Lookup %s: %v", p, err)
			continue
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		if a.Mode != st.Mode || a.Uid != st.Uid || a.Gid != st.Gid || de.Type != st.Mode&unix.S_IFMT {
			t.Errorf("%s: mode %o uid %d gid %d type %o, want %o %d %d", p, a.Mode, a.Uid, a.Gid,
				de.Type, st.Mode, st.Uid, st.Gid)
		}
		if a.Nlink != uint32(st.Nlink) {
			t.Errorf("%s: nlink %d, want %d", p, a.Nlink, st.Nlink)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			if a.Size != uint64(st.Size) {
				t.Errorf("%s: size %d, want %d", p, a.Size, st.Size)
			}
			compareContent(t, f, p, a.Ino)
		case unix.S_IFLNK:
			want, _ := os.Readlink(p)
			if got, err := f.Readlink(a.Ino); err != nil || got != want {
				t.Errorf("%s: readlink %q %v, want %q", p, got, err, want)
			}
		case unix.S_IFCHR, unix.S_IFBLK:
			if a.Rdev != uint32(st.Rdev) {
				t.Errorf("%s: rdev %#x, want %#x", p, a.Rdev, st.Rdev)
			}
		case unix.S_IFDIR:
			compareTree(t, f, p, a.Ino)
		}
		compareXattrs(t, f, p, a.Ino)
	}
	for n := range names {
		if n != "lost+found" {
			t.Errorf("%s/%s: extra entry in image", src, n)
		}
	}
}

// compareContent compares a file with inode ino: data segments (found
// with SEEK_DATA/SEEK_HOLE, so multi-GiB sparse files stay cheap) in
// 1 MiB chunks, and the edges of each hole.
func compareContent(t *testing.T, f *FS, p string, ino uint32) {
	t.Helper()
	fh, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	st, _ := fh.Stat()
	size := st.Size()
	cmp := func(off, n int64) bool {
		want := make([]byte, n)
		got := make([]byte, n)
		k1, _ := fh.ReadAt(want, off)
		k2, err := f.ReadAt(ino, got, off)
		if k1 != k2 || !bytes.Equal(want[:k1], got[:k2]) {
			t.Errorf("%s: content differs in [%d,+%d) (%d/%d bytes, %v)", p, off, n, k1, k2, err)
			return false
		}
		return true
	}
	for off := int64(0); off < size; {
		data, err := unix.Seek(int(fh.Fd()), off, unix.SEEK_DATA)
		if err != nil {
			data = size // ENXIO: only a hole remains
		}
		if data > off { // hole [off, data): check both edges
			if !cmp(off, min(4096, data-off)) || !cmp(max(off, data-4096), min(4096, data-off)) {
				return
			}
		}
		if data >= size {
			break
		}
		hole, err := unix.Seek(int(fh.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			hole = size
		}
		for o := data; o < hole; o += 1 << 20 {
			if !cmp(o, min(1<<20, hole-o)) {
				return
			}
		}
		off = hole
	}
	got := make([]byte, 10)
	if n, err := f.ReadAt(ino, got, size); n != 0 || err != io.EOF {
		t.Errorf("%s: ReadAt at end: %d %v, want 0 io.EOF", p, n, err)
	}
}

func compareXattrs(t *testing.T, f *FS, p string, ino uint32) {
	t.Helper()
	sz, _ := unix.Llistxattr(p, nil)
	buf := make([]byte, sz)
	unix.Llistxattr(p, buf)
	var want []string
	for _, n := range bytes.Split(buf, []byte{0}) {
		if len(n) > 0 {
			want = append(want, string(n))
		}
	}
	got, err := f.Listxattr(ino)
	if err != nil {
		t.Errorf("%s: Listxattr: %v", p, err)
	}
	sort.Strings(got)
	sort.Strings(want)
	if len(got) != len(want) {
		t.Errorf("%s: xattrs %q, want %q", p, got, want)
		return
	}
	for i, n := range want {
		if got[i] != n {
			t.Errorf("%s: xattrs %q, want %q", p, got, want)
		}
		v := make([]byte, 70000)
		k, _ := unix.Lgetxattr(p, n, v)
		gv, err := f.Getxattr(ino, n)
		if err != nil || !bytes.Equal(gv, v[:k]) {
			t.Errorf("%s: xattr %s = %q %v, want %q", p, n, gv, err, v[:k])
		}
	}
}

func TestReadMkfsImages(t *testing.T) {
	src := t.TempDir()
	makeTree(t, src)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"ext3-1k-256", []string{"-b", "1024", "-I", "256"}},
		{"ext3-4k-256", []string{"-b", "4096", "-I", "256"}},
		{"ext3-1k-128", []string{"-b", "1024", "-I", "128"}},
		{"ext3-4k-128-nodirindex", []string{"-b", "4096", "-I", "128", "-O", "^dir_index"}},
		{"ext2", []string{"-b", "1024", "-O", "^has_journal"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := mkext3(t, 128<<20, append(tc.args, "-d", src)...)
			f := openImage(t, img, true)
			defer f.Close()
			compareTree(t, f, src, RootIno)
		})
	}
}

func TestRefuseExt4(t *testing.T) {
	needTools(t, "mkfs.ext4")
	img := filepath.Join(t.TempDir(), "ext4.img")
	os.WriteFile(img, nil, 0o600)
	os.Truncate(img, 32<<20)
	if out, err := exec.Command("mkfs.ext4", "-q", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	fh, _ := os.Open(img)
	defer fh.Close()
	_, err := Open(NewSection(fh, 0, 32<<20), 32<<20, Options{ReadOnly: true})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("uses ext4 feature")) {
		t.Fatalf("Open ext4 image: %v, want a refusal naming the feature", err)
	}
	t.Log(err)
}

var _ = syscall.ENOENT
