// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The feature tree is built once per test binary in a temporary directory
// and shared by every test; images built from it are cached by their
// mksquashfs options.
var (
	treeOnce sync.Once
	treeDir  string
	treeErr  error
	workDir  string

	imagesMu sync.Mutex
	images   = map[string]string{}
)

const bigDirEntries = 20000

func TestMain(m *testing.M) {
	// A block read after its buffer went back to the pool shows as
	// damaged content in every test that compares what it read.
	poisonRecycled = true
	code := m.Run()
	if workDir != "" {
		os.RemoveAll(workDir)
	}
	os.Exit(code)
}

// requireTool fails the test when a host tool is missing: CI must have it.
func requireTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s not found in PATH; install squashfs-tools (apt-get install "+
			"squashfs-tools): %v", name, err)
	}
}

// featureTree returns the path of the shared feature tree.
func featureTree(t testing.TB) string {
	t.Helper()
	treeOnce.Do(func() {
		workDir, treeErr = os.MkdirTemp("", "squash-test-")
		if treeErr != nil {
			return
		}
		treeDir = filepath.Join(workDir, "tree")
		treeErr = buildTree(treeDir)
	})
	if treeErr != nil {
		t.Fatalf("building feature tree: %v", treeErr)
	}
	return treeDir
}

// image returns a squashfs image of the feature tree built with the given
// mksquashfs options, building it on first use.
func image(t testing.TB, opts ...string) string {
	t.Helper()
	requireTool(t, "mksquashfs")
	src := featureTree(t)
	key := strings.Join(opts, " ")
	imagesMu.Lock()
	defer imagesMu.Unlock()
	if p, ok := images[key]; ok {
		return p
	}
	p := filepath.Join(workDir, fmt.Sprintf("img%d.sqfs", len(images)))
	args := append([]string{src, p, "-noappend", "-quiet", "-no-progress",
		"-processors", "2"}, opts...)
	out, err := exec.Command("mksquashfs", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("mksquashfs %s: %v\n%s", key, err, out)
	}
	images[key] = p
	return p
}

// openImage opens an image file with this package.
func openImage(t testing.TB, path string, opts *Options) *FS {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { file.Close() })
	st, err := file.Stat()
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(file, st.Size(), opts)
	if err != nil {
		t.Fatalf("Open %s: %v", path, err)
	}
	return f
}

// randBytes returns deterministic incompressible bytes.
func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// textBytes returns compressible but not trivially repetitive bytes.
func textBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	words := []string{"squash", "fs ", "block ", "inode\n", "fragment ", "zstd ",
		"lorem ", "ipsum ", "0123456789 "}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
	}
	return b.Bytes()[:n]
}

// buildTree creates every feature the reader must handle.
func buildTree(root string) error {
	steps := []func(string) error{buildFiles, buildSpecial, buildOwners, buildXattrs,
		buildBigDir, buildDeep}
	for _, s := range steps {
		if err := s(root); err != nil {
			return err
		}
	}
	// Fixed, distinct mtimes; directories last since creating entries
	// changes them.
	return filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		mt := time.Unix(1_600_000_000+int64(len(p))*1000+int64(fi.Size()%977), 0)
		return unix.Lutimes(p, []unix.Timeval{unix.NsecToTimeval(mt.UnixNano()),
			unix.NsecToTimeval(mt.UnixNano())})
	})
}

func buildFiles(root string) error {
	files := map[string][]byte{
		"empty":          nil,
		"small.txt":      textBytes(1, 100),
		"block4k":        textBytes(2, 4096),
		"block128k":      textBytes(3, 128<<10),
		"blocks256k":     textBytes(4, 256<<10),
		"multi-tail":     textBytes(5, 300_000),
		"random":         randBytes(6, 200_000),
		"random-1m":      randBytes(7, 1<<20+123),
		"text-3m":        textBytes(8, 3<<20+5),
		"dup-a":          textBytes(9, 50_000),
		"dup-b":          textBytes(9, 50_000),
		"sub/inner.txt":  textBytes(10, 5000),
		"sub/hardlink-1": textBytes(11, 7000),
	}
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	if err := os.Link(filepath.Join(root, "sub/hardlink-1"),
		filepath.Join(root, "hardlink-2")); err != nil {
		return err
	}
	if err := os.Link(filepath.Join(root, "sub/hardlink-1"),
		filepath.Join(root, "sub/hardlink-3")); err != nil {
		return err
	}

	// A 20 MiB sparse file with data in the middle and at the end.
	sp, err := os.Create(filepath.Join(root, "sparse"))
	if err != nil {
		return err
	}
	defer sp.Close()
	if _, err := sp.WriteAt(textBytes(12, 10_000), 5<<20+17); err != nil {
		return err
	}
	if _, err := sp.WriteAt([]byte("end"), 20<<20-3); err != nil {
		return err
	}
	return sp.Close()
}

func buildSpecial(root string) error {
	long := strings.Repeat("long-target-component/", 190)[:4000]
	links := map[string]string{"link-short": "small.txt", "link-long": long,
		"sub/link-up": "../random", "link-255": strings.Repeat("x", 255),
		"link-dangling": "/nonexistent/path"}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			return err
		}
	}
	devs := []struct {
		name  string
		mode  uint32
		major uint32
		minor uint32
	}{
		{"dev-null", unix.S_IFCHR | 0o666, 1, 3},
		{"dev-blk", unix.S_IFBLK | 0o660, 7, 200},
		{"dev-bigminor", unix.S_IFCHR | 0o600, 300, 70000},
		{"whiteout", unix.S_IFCHR | 0o000, 0, 0},
		{"fifo", unix.S_IFIFO | 0o644, 0, 0},
	}
	for _, d := range devs {
		err := unix.Mknod(filepath.Join(root, d.name), d.mode,
			int(unix.Mkdev(d.major, d.minor)))
		if err != nil {
			return fmt.Errorf("mknod %s: %w", d.name, err)
		}
	}
	// A socket file stays behind when the listener is closed without unlink.
	l, err := net.Listen("unix", filepath.Join(root, "socket"))
	if err != nil {
		return err
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()

	modes := []struct {
		name string
		dir  bool
		mode os.FileMode
	}{
		{"setuid", false, 0o4755},
		{"setgid", false, 0o2711},
		{"setgid-dir", true, 0o2775},
		{"sticky-dir", true, 0o1777},
		{"all-bits", false, 0o7777},
		{"no-perms", false, 0},
	}
	for _, m := range modes {
		p := filepath.Join(root, m.name)
		var err error
		if m.dir {
			err = os.Mkdir(p, 0o755)
		} else {
			err = os.WriteFile(p, []byte(m.name), 0o644)
		}
		if err != nil {
			return err
		}
		// chmod, not the create mode, so the umask does not strip bits.
		if err := unix.Chmod(p, uint32(m.mode.Perm())|modeBits(m.mode)); err != nil {
			return err
		}
	}
	return nil
}

// modeBits converts Go's setuid/setgid/sticky flags to st_mode bits.
func modeBits(m os.FileMode) uint32 {
	var b uint32
	if m&os.ModeSetuid != 0 {
		b |= unix.S_ISUID
	}
	if m&os.ModeSetgid != 0 {
		b |= unix.S_ISGID
	}
	if m&os.ModeSticky != 0 {
		b |= unix.S_ISVTX
	}
	return b
}

func buildOwners(root string) error {
	owners := []struct {
		name     string
		uid, gid int
	}{
		{"owned-1000", 1000, 1000},
		{"owned-nobody", 65534, 100},
		{"owned-big", 123456, 654321},
		{"owned-mixed", 0, 42},
	}
	dir := filepath.Join(root, "owners")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	for _, o := range owners {
		p := filepath.Join(dir, o.name)
		if err := os.WriteFile(p, []byte(o.name), 0o640); err != nil {
			return err
		}
		if err := os.Lchown(p, o.uid, o.gid); err != nil {
			return err
		}
	}
	return os.Lchown(dir, 4242, 4343)
}

func buildXattrs(root string) error {
	dir := filepath.Join(root, "xattrs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	// security.capability v2: cap_net_bind_service+ep.
	capV2 := []byte{0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	big := textBytes(13, 3000)
	attrs := []struct {
		file, name string
		value      []byte
	}{
		{"plain", "user.comment", []byte("hello")},
		{"plain", "user.empty", nil},
		{"plain", "trusted.overlay.opaque", []byte("y")},
		{"cap", "security.capability", capV2},
		{"shared-1", "user.big", big},
		{"shared-2", "user.big", big},
		{"shared-2", "trusted.other", []byte("t")},
		{"", "user.on-dir", []byte("dir value")},
	}
	for _, a := range attrs {
		p := filepath.Join(dir, a.file)
		if a.file != "" {
			if _, err := os.Stat(p); err != nil {
				if err := os.WriteFile(p, []byte(a.file), 0o644); err != nil {
					return err
				}
			}
		}
		if err := unix.Lsetxattr(p, a.name, a.value, 0); err != nil {
			return fmt.Errorf("setxattr %s %s: %w", p, a.name, err)
		}
	}
	return nil
}

func buildBigDir(root string) error {
	dir := filepath.Join(root, "big")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	for i := range bigDirEntries {
		var data []byte
		if i%1000 == 0 {
			data = fmt.Appendf(nil, "entry %d\n", i)
		}
		name := fmt.Sprintf("entry-%05d-%s", i, strings.Repeat("n", i%7))
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return os.Mkdir(filepath.Join(dir, "zz-subdir"), 0o700)
}

func buildDeep(root string) error {
	p := root
	for i := range 40 {
		p = filepath.Join(p, fmt.Sprintf("d%02d", i))
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(p, "bottom"), []byte("deep"), 0o644)
}
