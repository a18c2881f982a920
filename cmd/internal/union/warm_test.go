package union

import (
	"debug/elf"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// warmTree builds a root filesystem with the host's true(1), its ELF
// interpreter and its libraries at the paths the host has them; in
// /usr/local/bin a relative symlink mytrue to it, an absolute one to
// that, a symlink loop and a file of junk named like a program. It
// returns the tree and the paths of the files true needs.
func warmTree(t *testing.T) (string, []string) {
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

	root := t.TempDir()
	for _, p := range need {
		b, err := os.ReadFile(p) // follows the host's symlinks
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	local := filepath.Join(root, "usr/local/bin")
	if err := os.MkdirAll(local, 0o755); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel("/usr/local/bin", prog)
	if err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"mytrue": rel,
		"abstrue": "/usr/local/bin/mytrue", "loop1": "loop2", "loop2": "loop1"} {
		if err := os.Symlink(target, filepath.Join(local, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(local, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	junk := append([]byte("\x7fELF\x02\x01\x01"), make([]byte, 200)...)
	if err := os.WriteFile(filepath.Join(local, "junk"), junk, 0o755); err != nil {
		t.Fatal(err)
	}
	return root, need
}

// TestWarmPrograms reads programs found through the search path and
// symlinks, absolute ones resolved in the tree: each program, its
// interpreter and its libraries are asked for once, and junk, a symlink
// loop, a FIFO (without blocking) and a missing program are passed over.
func TestWarmPrograms(t *testing.T) {
	root, need := warmTree(t)
	before := openFDs(t)
	w := startWarm(root, []string{"mytrue", "junk", "loop1", "fifo", "/usr/local/bin/abstrue",
		"missing"}, slog.New(slog.DiscardHandler))
	if w == nil {
		t.Fatal("startWarm: nil")
	}
	w.done.Wait()
	w.Stop()
	want := append([]string{"/usr/local/bin/mytrue"}, need[1:]...)
	want = append(want, "/usr/local/bin/junk")
	if !slices.Equal(w.read, want) {
		t.Errorf("read %q,\nwant %q", w.read, want)
	}
	if after := openFDs(t); after != before {
		t.Errorf("%d descriptors open after, %d before", after, before)
	}

	// One level only: the libraries opened for the next are closed too
	// (stage 1 held one open, and the union could not be unmounted).
	defer func(d int) { warmDepth = d }(warmDepth)
	warmDepth = 1
	w = startWarm(root, []string{"mytrue"}, slog.New(slog.DiscardHandler))
	w.done.Wait()
	w.Stop()
	if !slices.Equal(w.read, want[:1]) {
		t.Errorf("one level: read %q, want %q", w.read, want[:1])
	}
	if after := openFDs(t); after != before {
		t.Errorf("one level: %d descriptors open after, %d before", after, before)
	}
}

// TestWarmStop: a warmer looks at its stop before each file, so one
// stopped before it starts reads nothing; Stop at whatever moment it
// lands returns with the reading over, what was read in order, and every
// descriptor closed.
func TestWarmStop(t *testing.T) {
	root, need := warmTree(t)
	before := openFDs(t)
	w := newWarm(root, slog.New(slog.DiscardHandler))
	if w == nil {
		t.Fatal("newWarm: nil")
	}
	close(w.stop)
	w.start([]string{"mytrue"})
	w.done.Wait()
	unix.Close(w.root)
	if len(w.read) > 0 {
		t.Errorf("read %q after the stop", w.read)
	}

	// Stopped at some moment of its reading (the moment is not the
	// test's to choose): what it read is a prefix of the whole.
	want := append([]string{"/usr/local/bin/mytrue"}, need[1:]...)
	for range 20 {
		w = startWarm(root, []string{"mytrue"}, slog.New(slog.DiscardHandler))
		w.Stop()
		if len(w.read) > len(want) || !slices.Equal(w.read, want[:len(w.read)]) {
			t.Fatalf("stopped while reading: read %q, want a prefix of %q", w.read, want)
		}
	}
	if after := openFDs(t); after != before {
		t.Errorf("%d descriptors open after, %d before", after, before)
	}
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
