package fusefs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// countingUpper counts the bytes written to the upper.
type countingUpper struct {
	*DirLayer
	written atomic.Int64
}

func (c *countingUpper) WriteAt(n Node, p []byte, off int64) (int, error) {
	c.written.Add(int64(len(p)))
	return c.DirLayer.WriteAt(n, p, off)
}

func TestCopyUpKeepsMetadata(t *testing.T) {
	f := newFixture(t, 1)
	p := filepath.Join(f.lowers[0], "f")
	// A sparse file: data, a 1 MiB hole, data, trailing hole.
	data := bytes.Repeat([]byte("x"), 5000)
	fh, err := os.Create(p)
	must(t, err)
	_, err = fh.WriteAt(data, 0)
	must(t, err)
	_, err = fh.WriteAt(data, 1<<20+4096)
	must(t, err)
	must(t, fh.Truncate(3<<20))
	fh.Close()
	must(t, os.Chown(p, 1234, 5678))
	must(t, unix.Chmod(p, 04751))
	must(t, unix.Setxattr(p, "user.test", []byte("value"), 0))
	must(t, unix.Setxattr(p, "trusted.test", []byte("tv"), 0))
	must(t, unix.Setxattr(p, "security.capability",
		[]byte{1, 0, 0, 2, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0))
	ts := []unix.Timespec{{Sec: 1000000000, Nsec: 123456789}, {Sec: 1100000000, Nsec: 987654321}}
	must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, 0))
	before := stat(t, p)

	mnt, _ := f.mount()
	// A metadata-only change on the file's xattrs: copy-up keeps the rest.
	must(t, unix.Setxattr(filepath.Join(mnt, "f"), "user.other", []byte("o"), 0))
	up := filepath.Join(f.upper(), "f")
	after := stat(t, up)
	if after.Mode != before.Mode || after.Uid != 1234 || after.Gid != 5678 {
		t.Errorf("mode/owner %o %d:%d, want %o 1234:5678", after.Mode, after.Uid, after.Gid, before.Mode)
	}
	if after.Mtim != before.Mtim || after.Atim != before.Atim {
		t.Errorf("times %v %v, want %v %v", after.Atim, after.Mtim, before.Atim, before.Mtim)
	}
	if after.Size != before.Size {
		t.Errorf("size %d, want %d", after.Size, before.Size)
	}
	if after.Blocks > before.Blocks {
		t.Errorf("copy not sparse: %d blocks, lower %d", after.Blocks, before.Blocks)
	}
	for x, want := range map[string]string{"user.test": "value", "trusted.test": "tv",
		"user.other": "o"} {
		v := make([]byte, 64)
		n, err := unix.Getxattr(up, x, v)
		if err != nil || string(v[:n]) != want {
			t.Errorf("upper xattr %s = %q, %v; want %q", x, v[:n], err, want)
		}
	}
	v := make([]byte, 64)
	if n, err := unix.Getxattr(up, "security.capability", v); err != nil || n != 20 {
		t.Errorf("security.capability not copied: %d %v", n, err)
	}
	got, err := os.ReadFile(filepath.Join(mnt, "f"))
	must(t, err)
	want, _ := os.ReadFile(p)
	if !bytes.Equal(got, want) {
		t.Error("content differs after copy-up")
	}
}

// chmod, chown, utimes and setxattr on a large lower file copy its data
// once, not once per change.
func TestMetadataCopiesDataOnce(t *testing.T) {
	f := newFixture(t, 1)
	p := filepath.Join(f.lowers[0], "big")
	must(t, os.WriteFile(p, bytes.Repeat([]byte{7}, 8<<20), 0644))
	var c *countingUpper
	mnt, _ := f.mount(func(o *Options) {
		c = &countingUpper{DirLayer: o.Upper.(*DirLayer)}
		o.Upper = c
	})
	q := filepath.Join(mnt, "big")
	must(t, os.Chmod(q, 0600))
	must(t, os.Chown(q, 10, 20))
	must(t, unix.UtimesNanoAt(unix.AT_FDCWD, q, []unix.Timespec{{Sec: 5}, {Sec: 6}}, 0))
	must(t, unix.Setxattr(q, "user.a", []byte("b"), 0))
	if w := c.written.Load(); w != 8<<20 {
		t.Errorf("wrote %d bytes to the upper, want %d", w, 8<<20)
	}
	st := stat(t, filepath.Join(f.upper(), "big"))
	if st.Mode&07777 != 0600 || st.Uid != 10 || st.Gid != 20 || st.Mtim.Sec != 6 {
		t.Errorf("upper big: mode %o owner %d:%d mtime %d", st.Mode, st.Uid, st.Gid, st.Mtim.Sec)
	}
}

func TestHardLinks(t *testing.T) {
	f := newFixture(t, 1)
	tree(t, f.lowers[0], "a=orig", "d/")
	must(t, os.Link(filepath.Join(f.lowers[0], "a"), filepath.Join(f.lowers[0], "d/b")))
	mnt, u := f.mount()
	sa, sb := stat(t, filepath.Join(mnt, "a")), stat(t, filepath.Join(mnt, "d/b"))
	if sa.Nlink != 2 || sb.Nlink != 2 || sa.Ino != sb.Ino {
		t.Fatalf("links: nlink %d %d ino %x %x", sa.Nlink, sb.Nlink, sa.Ino, sb.Ino)
	}
	must(t, os.WriteFile(filepath.Join(mnt, "a"), []byte("new"), 0644))
	if b, _ := os.ReadFile(filepath.Join(mnt, "d/b")); string(b) != "new" {
		t.Errorf("d/b reads %q after writing a", b)
	}
	ua, ub := stat(t, filepath.Join(f.upper(), "a")), stat(t, filepath.Join(f.upper(), "d/b"))
	if ua.Ino != ub.Ino {
		t.Errorf("upper a and d/b are not one inode")
	}
	if s := stat(t, filepath.Join(mnt, "a")); s.Ino != sa.Ino {
		t.Errorf("ino changed on copy-up: %x -> %x", sa.Ino, s.Ino)
	}
	// A link made through the union is a real link in the upper.
	must(t, os.Link(filepath.Join(mnt, "a"), filepath.Join(mnt, "c")))
	if s := stat(t, filepath.Join(f.upper(), "c")); s.Ino != ua.Ino || s.Nlink != 3 {
		t.Errorf("upper c: ino %d nlink %d, want %d 3", s.Ino, s.Nlink, ua.Ino)
	}
	must(t, u.Unmount())
	mnt2, _ := f.mount()
	wantListing(t, mnt2, "a=new", "c=new", "d/", "d/b=new")
}

// getdents reads directory p with a small buffer, returning names and
// inode numbers in order and each entry's offset.
func getdents(t *testing.T, fd int) (names []string, inos []uint64, offs []int64) {
	t.Helper()
	buf := make([]byte, 512)
	for {
		n, err := unix.Getdents(fd, buf)
		must(t, err)
		if n == 0 {
			return
		}
		b := buf[:n]
		for len(b) > 0 {
			reclen := int(b[16]) | int(b[17])<<8
			name := b[19:reclen]
			name = name[:bytes.IndexByte(name, 0)]
			names = append(names, string(name))
			inos = append(inos, le64(b))
			offs = append(offs, int64(le64(b[8:])))
			b = b[reclen:]
		}
	}
}

func TestInodesAndReaddir(t *testing.T) {
	f := newFixture(t, 2)
	var spec []string
	for i := 0; i < 300; i++ {
		spec = append(spec, "big/l"+itoa(i)+"=x")
	}
	tree(t, f.lowers[1], spec...)
	tree(t, f.lowers[0], "big/m=1", "big/sub/", "f=1")
	tree(t, f.upper(), "big/u=1")
	mnt, _ := f.mount()
	// Copy some up, so that both kinds are present.
	must(t, os.WriteFile(filepath.Join(mnt, "big/l7"), []byte("y"), 0644))
	must(t, os.Chmod(filepath.Join(mnt, "big/sub"), 0700))

	dir, err := os.Open(filepath.Join(mnt, "big"))
	must(t, err)
	defer dir.Close()
	fd := int(dir.Fd())
	names, inos, offs := getdents(t, fd)
	if len(names) != 300+3+2 {
		t.Fatalf("%d entries, want 305", len(names))
	}
	seen := map[uint64]string{}
	for i, name := range names {
		st := stat(t, filepath.Join(mnt, "big", name))
		if st.Ino != inos[i] {
			t.Errorf("%s: d_ino %x, st_ino %x", name, inos[i], st.Ino)
		}
		if name != "." && name != ".." {
			if o, dup := seen[st.Ino]; dup {
				t.Errorf("%s and %s share ino %x", o, name, st.Ino)
			}
			seen[st.Ino] = name
		}
	}
	// Resume from the middle (seekdir/telldir).
	for _, k := range []int{1, 100, 250} {
		if _, err := unix.Seek(fd, offs[k-1], 0); err != nil {
			t.Fatalf("seek to %d (entry %d): %v", offs[k-1], k, err)
		}
		rest, _, _ := getdents(t, fd)
		if len(rest) != len(names)-k || rest[0] != names[k] {
			t.Errorf("resume at %d: %d entries from %q, want %d from %q",
				k, len(rest), rest[0], len(names)-k, names[k])
		}
	}
}

func itoa(i int) string { return string(appendInt(nil, i)) }

func appendInt(b []byte, i int) []byte {
	if i >= 10 {
		b = appendInt(b, i/10)
	}
	return append(b, byte('0'+i%10))
}

func TestFallocateModes(t *testing.T) {
	f := newFixture(t, 1)
	tree(t, f.lowers[0], "f="+string(bytes.Repeat([]byte("a"), 16384)))
	mnt, _ := f.mount()
	fh, err := os.OpenFile(filepath.Join(mnt, "f"), os.O_RDWR, 0)
	must(t, err)
	defer fh.Close()
	fd := int(fh.Fd())
	must(t, unix.Fallocate(fd, unix.FALLOC_FL_KEEP_SIZE, 16384, 8192))
	must(t, unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 4096))
	must(t, unix.Fallocate(fd, unix.FALLOC_FL_ZERO_RANGE, 8192, 4096))
	must(t, unix.Fallocate(fd, 0, 0, 32768))
	b, err := os.ReadFile(filepath.Join(f.upper(), "f"))
	must(t, err)
	want := bytes.Repeat([]byte("a"), 16384)
	copy(want[0:4096], make([]byte, 4096))
	copy(want[8192:12288], make([]byte, 4096))
	want = append(want, make([]byte, 16384)...)
	if !bytes.Equal(b, want) {
		t.Errorf("upper content after fallocate differs (len %d)", len(b))
	}
}

func TestMmapWrite(t *testing.T) {
	f := newFixture(t, 1)
	tree(t, f.lowers[0], "f=hello world")
	mnt, _ := f.mount()
	// Another process does the mapping: a page fault on the union in the
	// process that serves it can deadlock with the Go garbage collector
	// (the faulting thread cannot stop for it while the server waits).
	py := "import mmap,sys\nf=open(sys.argv[1],'r+b')\nm=mmap.mmap(f.fileno(),11)\n" +
		"m[0:5]=b'HELLO'\nm.flush()\nm.close()\nf.close()\n"
	cmd := exec.Command("python3", "-c", py, filepath.Join(mnt, "f"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("python3 mmap: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(f.upper(), "f")); string(b) != "HELLO world" {
		t.Errorf("upper f = %q", b)
	}
}

// Locks are the kernel's: another process sees them.
func TestLocks(t *testing.T) {
	f := newFixture(t, 1)
	tree(t, f.lowers[0], "f=1")
	mnt, _ := f.mount()
	p := filepath.Join(mnt, "f")
	fh, err := os.OpenFile(p, os.O_RDWR, 0)
	must(t, err)
	defer fh.Close()
	must(t, unix.Flock(int(fh.Fd()), unix.LOCK_EX|unix.LOCK_NB))
	if err := exec.Command("flock", "-n", p, "true").Run(); err == nil {
		t.Error("flock in another process succeeded while held")
	}
	must(t, unix.Flock(int(fh.Fd()), unix.LOCK_UN))
	lk := syscall.Flock_t{Type: syscall.F_WRLCK}
	must(t, syscall.FcntlFlock(fh.Fd(), syscall.F_SETLK, &lk))
	py := "import fcntl,sys\nf=open(sys.argv[1],'r+')\n" +
		"try:\n fcntl.lockf(f, fcntl.LOCK_EX|fcntl.LOCK_NB)\nexcept OSError:\n sys.exit(3)\n"
	err = exec.Command("python3", "-c", py, p).Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Errorf("POSIX lock in another process: %v, want refusal (exit 3)", err)
	}
}

// TestCopyUpKeepsParentTimes: the entries a copy-up adds (a file, a
// directory, a second name of a hard-linked file) leave the times of the
// upper directories they land in as they were, as overlayfs does: the
// parent's copy-up time showed once the parent itself was changed.
func TestCopyUpKeepsParentTimes(t *testing.T) {
	f := newFixture(t, 1)
	tree(t, f.lowers[0], "d/e/f=1", "d/g=1", "d/h=1")
	must(t, os.Link(filepath.Join(f.lowers[0], "d/g"), filepath.Join(f.lowers[0], "d/e/g2")))
	old := []unix.Timespec{{Sec: 1000000000}, {Sec: 1100000000}}
	for _, p := range []string{"d/e", "d"} {
		must(t, unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(f.lowers[0], p), old, 0))
	}
	mnt, _ := f.mount()
	must(t, os.Chmod(filepath.Join(mnt, "d/e/f"), 0600)) // copies d, d/e, d/e/f
	must(t, os.Chmod(filepath.Join(mnt, "d/g"), 0600))   // and d/e/g2, a link
	must(t, os.Chmod(filepath.Join(mnt, "d/h"), 0600))   // into d, copied already
	for _, p := range []string{"d", "d/e"} {
		if s := stat(t, filepath.Join(f.upper(), p)); s.Mtim.Sec != old[1].Sec {
			t.Errorf("upper %s: mtime %d after copy-ups, want %d", p, s.Mtim.Sec, old[1].Sec)
		}
		if s := stat(t, filepath.Join(mnt, p)); s.Mtim.Sec != old[1].Sec {
			t.Errorf("%s: mtime %d after copy-ups, want %d", p, s.Mtim.Sec, old[1].Sec)
		}
	}
	// A change of its own still sets the time.
	must(t, os.WriteFile(filepath.Join(mnt, "d/new"), nil, 0o644))
	if s := stat(t, filepath.Join(f.upper(), "d")); s.Mtim.Sec == old[1].Sec {
		t.Error("upper d: a create left the mtime")
	}
}
