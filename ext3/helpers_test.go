package ext3

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// need fails the test when a host tool is missing.
func needTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install e2fsprogs (mkfs.ext3, e2fsck, debugfs)", tool)
		}
	}
}

// mkext3 runs mkfs.ext3 on a new sparse file of size bytes.
func mkext3(t testing.TB, size int64, args ...string) string {
	t.Helper()
	needTools(t, "mkfs.ext3")
	img := filepath.Join(t.TempDir(), "fs.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("mkfs.ext3", append(append([]string{"-q", "-F"}, args...), img)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext3 %v: %v\n%s", args, err, out)
	}
	return img
}

// fsck runs e2fsck -fn and fails on any problem.
func fsck(t testing.TB, img string) {
	t.Helper()
	needTools(t, "e2fsck")
	out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck -fn %s: %v\n%s", img, err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "?") || strings.Contains(strings.ToLower(l), "wrong") {
			t.Fatalf("e2fsck -fn reports a problem: %q\n%s", l, out)
		}
	}
}

func debugfs(t testing.TB, img, req string) string {
	t.Helper()
	needTools(t, "debugfs")
	out, err := exec.Command("debugfs", "-R", req, img).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v\n%s", req, err, out)
	}
	return string(out)
}

// imageDevice opens an image file read-write (or read-only) as a whole-file
// Device and returns it with its size; the file is closed when t ends.
func imageDevice(t testing.TB, img string, ro bool) (Device, int64) {
	t.Helper()
	flag := os.O_RDWR
	if ro {
		flag = os.O_RDONLY
	}
	fh, err := os.OpenFile(img, flag, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fh.Close() })
	st, err := fh.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return NewSection(fh, 0, st.Size()), st.Size()
}

// openImage opens an image file read-write (or read-only).
func openImage(t testing.TB, img string, ro bool) *FS {
	t.Helper()
	dev, size := imageDevice(t, img, ro)
	f, err := Open(dev, size, Options{ReadOnly: ro})
	if err != nil {
		t.Fatalf("Open %s: %v", img, err)
	}
	return f
}

func newImageFile(t testing.TB, size int64) (*os.File, string) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "fs.img")
	fh, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := fh.Truncate(size); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fh.Close() })
	return fh, img
}

var (
	errnoENOENT = syscall.ENOENT
	errnoENOSPC = syscall.ENOSPC
)

func runOut(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}
