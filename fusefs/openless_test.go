package fusefs

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// requestLog keeps the FUSE requests go-fuse traces (Options.Debug).
type requestLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *requestLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *requestLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *requestLog) WithGroup(string) slog.Handler            { return l }
func (l *requestLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.lines = append(l.lines, r.Message)
	l.mu.Unlock()
	return nil
}

// count returns how many requests of opcode op were received for the
// union's nodes. go-fuse opens and releases a file of its own at mount
// (node 2^64-1, its poll workaround), which the union never sees.
func (l *requestLog) count(op string) int {
	re := regexp.MustCompile(`rx \d+: ` + op + ` n(\d+) `)
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if m := re.FindStringSubmatch(s); m != nil && m[1] != "18446744073709551615" {
			n++
		}
	}
	return n
}

// TestOpenlessReads mounts a read-only union of a squashfs image: after
// the first open, which the union answers ENOSYS, files open without an
// OPEN or RELEASE request, and reads, seeks (holes included), fsync and
// mappings of them work as through a handle. Readers of a large file get
// readahead and hold places of their own, the union's own threads none;
// small files keep nothing, and O_DIRECT readers get no readahead.
func TestOpenlessReads(t *testing.T) {
	requireFuse(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	must(t, os.MkdirAll(src, 0755))
	random := make([]byte, 12<<20+777) // stored uncompressed: spliced
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	text := bytes.Repeat([]byte("compressible, decoded by the union\n"), 300000)
	must(t, os.WriteFile(filepath.Join(src, "random"), random, 0644))
	must(t, os.WriteFile(filepath.Join(src, "text"), text, 0644))
	for i := range 20 {
		tree(t, src, "small/f"+strings.Repeat("x", i)+"="+strings.Repeat("y", i))
	}
	// 4 MiB with 128 KiB of data at 1 MiB, the rest holes in the source,
	// which mksquashfs stores as sparse blocks and counts in the inode.
	sw, err := os.Create(filepath.Join(src, "sparse"))
	must(t, err)
	must(t, sw.Truncate(4<<20))
	_, err = sw.WriteAt(bytes.Repeat([]byte("data"), 32<<10), 1<<20)
	must(t, err)
	must(t, sw.Close())
	lower := squashLayer(t, src, dir)
	reqs := &requestLog{}
	mnt, u := mountUnion(t, Options{Lowers: []Layer{lower},
		Debug: true, Logger: slog.New(reqs)})
	if !u.openless.Load() {
		t.Fatal("the kernel offers FUSE_NO_OPEN_SUPPORT, yet files are opened with OPEN")
	}

	for i := range 20 {
		name := "f" + strings.Repeat("x", i)
		got, err := os.ReadFile(filepath.Join(mnt, "small", name))
		must(t, err)
		if string(got) != strings.Repeat("y", i) {
			t.Fatalf("small/%s: read %q", name, got)
		}
	}
	if n := reqs.count("OPEN"); n > 1 {
		t.Errorf("%d OPEN requests for 20 files; want at most the first", n)
	}
	if n := reqs.count("RELEASE"); n != 0 {
		t.Errorf("%d RELEASE requests for files opened without OPEN", n)
	}

	// Through a descriptor: fsync, SEEK_DATA and SEEK_HOLE (the image's
	// sparse blocks are holes), and a mapping.
	fd, err := unix.Open(filepath.Join(mnt, "text"), unix.O_RDONLY, 0)
	must(t, err)
	defer unix.Close(fd)
	if err := unix.Fsync(fd); err != nil {
		t.Errorf("fsync of a read-only file: %v", err)
	}
	if off, err := unix.Seek(fd, 0, unix.SEEK_DATA); err != nil || off != 0 {
		t.Errorf("SEEK_DATA at 0: %d, %v", off, err)
	}
	if off, err := unix.Seek(fd, 0, unix.SEEK_HOLE); err != nil || off != int64(len(text)) {
		t.Errorf("SEEK_HOLE at 0: %d, %v; want %d", off, err, len(text))
	}
	sfd, err := unix.Open(filepath.Join(mnt, "sparse"), unix.O_RDONLY, 0)
	must(t, err)
	defer unix.Close(sfd)
	var sst unix.Stat_t
	must(t, unix.Fstat(sfd, &sst))
	if sst.Blocks != 128<<10/512 { // what cp and tar --sparse look at first
		t.Errorf("sparse: %d blocks of 512 bytes, want %d (one 128 KiB block of data)",
			sst.Blocks, 128<<10/512)
	}
	if off, err := unix.Seek(sfd, 0, unix.SEEK_DATA); err != nil || off != 1<<20 {
		t.Errorf("sparse: SEEK_DATA at 0: %d, %v; want %d", off, err, 1<<20)
	}
	if off, err := unix.Seek(sfd, 1<<20, unix.SEEK_HOLE); err != nil || off != 1<<20+128<<10 {
		t.Errorf("sparse: SEEK_HOLE at 1 MiB: %d, %v; want %d", off, err, 1<<20+128<<10)
	}

	// A fault on the mount in the serving process could wait for the
	// collector, which waits for the faulting thread: map it elsewhere.
	seen := filepath.Join(dir, "seen")
	cmd := exec.Command(os.Args[0], "-test.run=^TestMappedReader$")
	cmd.Env = append(os.Environ(), "HUSK_TEST_MAPPED="+filepath.Join(mnt, "text"),
		"HUSK_TEST_MAPPED_OUT="+seen)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mapped reader: %v\n%s", err, out)
	}
	if got, err := os.ReadFile(seen); err != nil || !bytes.Equal(got, text) {
		t.Errorf("text: mapped content differs (%v)", err)
	}

	// Two readers of one file, in processes of their own (the union does
	// not follow its own reads), each followed on its own.
	before := u.ra.advised.Load()
	var wg sync.WaitGroup
	outs := make([][]byte, 2)
	errs := make([]error, 2)
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command("dd", "if="+filepath.Join(mnt, "random"), "bs=256k",
				"status=none")
			outs[i], errs[i] = cmd.Output()
		}()
	}
	wg.Wait()
	for i := range outs {
		if errs[i] != nil {
			t.Fatalf("reader %d: %v", i, errs[i])
		}
		if !bytes.Equal(outs[i], random) {
			t.Fatalf("reader %d: content read through the mount differs", i)
		}
	}
	if u.ra.advised.Load() == before {
		t.Error("no readahead for two sequential readers of a file opened without OPEN")
	}
	child := func(name string) *node {
		t.Helper()
		c := u.root.GetChild(name)
		if c == nil {
			t.Fatalf("no node for %s", name)
		}
		return c.Operations().(*node)
	}
	// Only the readers hold places: not the union's own readahead, whose
	// requests come from its threads.
	kept := 0
	if r := child("random").extra().reads.Load(); r != nil {
		for _, h := range r.hs {
			if h == nil {
				continue
			}
			kept++
			if ownThread(h.caller) {
				t.Errorf("thread %d of the union holds a reader's place", h.caller)
			}
		}
	}
	if kept == 0 {
		t.Error("no reader of random followed")
	}
	// Small files keep nothing.
	small := child("small").GetChild("fxxx")
	if small == nil {
		t.Fatal("no node for small/fxxx")
	}
	if small.Operations().(*node).extra().reads.Load() != nil {
		t.Error("a small file read without a handle keeps readers' handles")
	}

	// A reader through O_DIRECT bypasses the page cache: no readahead.
	before = u.ra.advised.Load()
	cmd = exec.Command("dd", "if="+filepath.Join(mnt, "random"), "bs=1M", "iflag=direct",
		"status=none")
	if out, err := cmd.Output(); err != nil || !bytes.Equal(out, random) {
		t.Fatalf("O_DIRECT reader: %v, or content differs", err)
	}
	if d := u.ra.advised.Load() - before; d != 0 {
		t.Errorf("%d bytes read ahead for an O_DIRECT reader", d)
	}
	if n := reqs.count("OPEN"); n > 1 {
		t.Errorf("%d OPEN requests in all; want at most the first", n)
	}
}

// TestOpensWithHandles: a union with an upper layer keeps OPEN, which
// copies files up and keeps unlinked upper files alive, and so does one
// with a directory layer, which keeps a descriptor per open file.
func TestOpensWithHandles(t *testing.T) {
	requireFuse(t)
	dir := t.TempDir()
	lower := filepath.Join(dir, "lower")
	tree(t, lower, "a=lower")
	ovl := filepath.Join(dir, "ovl")
	must(t, os.MkdirAll(filepath.Join(ovl, "upper"), 0755))
	must(t, os.MkdirAll(filepath.Join(ovl, "work"), 0755))
	up, work, err := OpenOverlayDir(ovl, nil)
	must(t, err)
	t.Cleanup(func() { up.Close() })
	for _, c := range []struct {
		name string
		opts func(low Layer) Options
	}{
		{"upper", func(low Layer) Options {
			return Options{Lowers: []Layer{low}, Upper: up, WorkDir: work}
		}},
		{"directory layer", func(low Layer) Options { return Options{Lowers: []Layer{low}} }},
	} {
		low, err := OpenDirLayer(lower, nil)
		must(t, err)
		t.Cleanup(func() { low.Close() })
		mnt, u := mountUnion(t, c.opts(low))
		if got, err := os.ReadFile(filepath.Join(mnt, "a")); err != nil || string(got) != "lower" {
			t.Fatalf("%s: a: %q, %v", c.name, got, err)
		}
		if u.openless.Load() {
			t.Errorf("a union with a %s opens files without OPEN", c.name)
		}
	}
}

// TestMappedReader is the reader of TestOpenlessReads that maps a file
// and copies what it sees to another, run in a process of its own.
func TestMappedReader(t *testing.T) {
	name := os.Getenv("HUSK_TEST_MAPPED")
	if name == "" {
		return // only as TestOpenlessReads's child
	}
	f, err := os.Open(name)
	must(t, err)
	defer f.Close()
	st, err := f.Stat()
	must(t, err)
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	must(t, err)
	defer unix.Munmap(m)
	must(t, os.WriteFile(os.Getenv("HUSK_TEST_MAPPED_OUT"), m, 0644))
}
