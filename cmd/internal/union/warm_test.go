package union

import (
	"debug/elf"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/husk-project/husk/squash"
)

// warmImage builds a squashfs with the host's true(1), its ELF interpreter
// and its libraries at the paths the host has them, a relative symlink
// mytrue to it, a symlink loop and a file of junk named like a program,
// and returns it opened with the paths of the files true needs.
func warmImage(t *testing.T) (*squash.FS, []string) {
	t.Helper()
	prog, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	if prog, err = filepath.EvalSymlinks(prog); err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(prog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	need := []string{prog}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b, err := io.ReadAll(p.Open())
			if err != nil {
				t.Fatal(err)
			}
			need = append(need, strings.TrimRight(string(b), "\x00"))
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil || len(libs) == 0 {
		t.Fatalf("%s names no libraries (%v): the test needs a dynamic true(1)", prog, err)
	}
	for _, lib := range libs {
		for _, dir := range libDirs() {
			if _, err := os.Stat(filepath.Join(dir, lib)); err == nil {
				need = append(need, filepath.Join(dir, lib))
				break
			}
		}
	}

	src := t.TempDir()
	for _, p := range need {
		b, err := os.ReadFile(p) // follows the host's symlinks
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(src, p)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	local := filepath.Join(src, "usr/local/bin")
	if err := os.MkdirAll(local, 0o755); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel("/usr/local/bin", prog)
	if err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"mytrue": rel, "loop1": "loop2",
		"loop2": "loop1"} {
		if err := os.Symlink(target, filepath.Join(local, name)); err != nil {
			t.Fatal(err)
		}
	}
	junk := append([]byte("\x7fELF\x02\x01\x01"), make([]byte, 200)...)
	if err := os.WriteFile(filepath.Join(local, "junk"), junk, 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "warm.sqfs")
	run(t, "mksquashfs", src, img, "-noappend", "-quiet")
	file, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { file.Close() })
	st, err := file.Stat()
	if err != nil {
		t.Fatal(err)
	}
	fs, err := squash.Open(file, st.Size(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return fs, need
}

// TestWarmPrograms decodes a program found through the search path and a
// relative symlink: the program, its interpreter and its libraries are
// decoded, each once, and junk or a symlink loop is passed over.
func TestWarmPrograms(t *testing.T) {
	fs, need := warmImage(t)
	w := &warmer{fs: fs, log: slog.New(slog.DiscardHandler), stop: make(chan struct{}),
		seen: map[uint32]bool{}}
	var want []uint32
	for _, p := range need {
		n, err := w.resolve(p)
		if err != nil {
			t.Fatalf("resolve %s: %v", p, err)
		}
		want = append(want, n.Ino)
	}

	w = startWarm(fs, []string{"mytrue", "junk", "loop1", "/usr/local/bin/mytrue",
		"missing"}, slog.New(slog.DiscardHandler))
	w.done.Wait()
	w.Stop()
	got := slices.Clone(w.decoded)
	slices.Sort(got)
	slices.Sort(want)
	junk, err := w.resolve("/usr/local/bin/junk")
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, junk.Ino)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("decoded inodes %v, want %v (%s and junk)", got, want, strings.Join(need, ", "))
	}
}

// TestWarmResolve walks paths the way the kernel would.
func TestWarmResolve(t *testing.T) {
	fs, need := warmImage(t)
	w := &warmer{fs: fs, log: slog.New(slog.DiscardHandler)}
	prog, err := w.resolve(need[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		err  error // nil: resolves to the program
	}{
		{"/usr/local/bin/mytrue", nil},
		{"/usr/local/bin/../../local/bin/./mytrue", nil},
		{"//usr/local/bin/mytrue/", nil},
		{"/usr/local/bin/loop1", syscall.ELOOP},
		{"/usr/local/bin/mytrue/x", syscall.ENOTDIR},
		{"/usr/local/bin", errNotRegular},
		{"/usr/local/bin/missing", syscall.ENOENT},
	} {
		n, err := w.resolve(tc.path)
		switch {
		case tc.err == nil && err != nil:
			t.Errorf("%s: %v", tc.path, err)
		case tc.err == nil && n.Ino != prog.Ino:
			t.Errorf("%s: inode %d, want %d", tc.path, n.Ino, prog.Ino)
		case tc.err != nil && !errors.Is(err, tc.err):
			t.Errorf("%s: error %v, want %v", tc.path, err, tc.err)
		}
	}
}
