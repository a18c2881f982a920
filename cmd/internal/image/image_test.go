package image

import (
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/sylabs/sif/v2/pkg/sif"
	"golang.org/x/sys/unix"
)

var quiet = slog.New(slog.DiscardHandler)

// need fails the test when a host tool is missing.
func need(t testing.TB, tool, pkg string) string {
	t.Helper()
	for _, p := range []string{"", "/usr/sbin/", "/sbin/"} {
		if path, err := exec.LookPath(p + tool); err == nil {
			return path
		}
	}
	t.Fatalf("%s not found: apt-get install %s", tool, pkg)
	return ""
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// mkSquash builds a small squashfs with mksquashfs.
func mkSquash(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "bin"), 0o755)
	os.WriteFile(filepath.Join(src, "bin", "hello"), []byte("hi\n"), 0o755)
	out := filepath.Join(dir, "root.sqfs")
	run(t, need(t, "mksquashfs", "squashfs-tools"), src, out, "-noappend", "-quiet")
	return out
}

// mkExt3 builds an Apptainer-layout overlay with mkfs.ext3 -d; extra
// mkfs arguments (e.g. "-t", "ext4") go first.
func mkExt3(t *testing.T, extra ...string) string {
	t.Helper()
	return mkFs(t, "mkfs.ext3", extra...)
}

// mkExt3TB is mkExt3 for fuzz seeds: a small image.
func mkExt3TB(t testing.TB) string {
	t.Helper()
	return mkFs(t, "mkfs.ext3")
}

// mkFs is mkExt3 with another mkfs tool.
func mkFs(t testing.TB, tool string, extra ...string) string {
	t.Helper()
	dir := t.TempDir()
	stage := filepath.Join(dir, "stage")
	os.MkdirAll(filepath.Join(stage, "upper"), 0o755)
	os.MkdirAll(filepath.Join(stage, "work"), 0o755)
	out := filepath.Join(dir, "o.img")
	args := append(extra, "-q", "-F", "-d", stage, out, "8M")
	run(t, need(t, tool, "e2fsprogs"), args...)
	return out
}

// mkSIF builds a SIF from a squashfs root and optional extra partitions.
func mkSIF(t testing.TB, root string, parts ...sif.DescriptorInput) string {
	t.Helper()
	return mkSIFArch(t, root, "amd64", parts...)
}

// mkSIFArch is mkSIF with the primary partition's arch.
func mkSIFArch(t testing.TB, root, arch string, parts ...sif.DescriptorInput) string {
	t.Helper()
	f, err := os.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	di, err := sif.NewDescriptorInput(sif.DataPartition, f,
		sif.OptPartitionMetadata(sif.FsSquash, sif.PartPrimSys, arch))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "img.sif")
	fi, err := sif.CreateContainerAtPath(out, sif.OptCreateWithDescriptors(
		append([]sif.DescriptorInput{di}, parts...)...),
		sif.OptCreateWithLaunchScript("#!/usr/bin/env run-singularity\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := fi.UnloadContainer(); err != nil {
		t.Fatal(err)
	}
	return out
}

// ext3Part is an Ext3/Overlay partition input read from path.
func ext3Part(t *testing.T, path string, opts ...sif.DescriptorInputOpt) sif.DescriptorInput {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]sif.DescriptorInputOpt{
		sif.OptPartitionMetadata(sif.FsExt3, sif.PartOverlay, "amd64")}, opts...)
	di, err := sif.NewDescriptorInput(sif.DataPartition, bytes.NewReader(data), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return di
}

func writeFile(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOpenDetectsKinds(t *testing.T) {
	sq := mkSquash(t)
	sqData, _ := os.ReadFile(sq)
	launch := writeFile(t, append([]byte("#!/usr/bin/env run-singularity\n"), sqData...))
	ext := mkExt3(t)

	cases := []struct {
		name string
		path string
		kind Kind
		off  int64
	}{
		{"directory", t.TempDir(), KindDir, 0},
		{"squashfs", sq, KindSquashfs, 0},
		{"squashfs after launch line", launch, KindSquashfs, 31},
		{"ext3", ext, KindExt3, 0},
		{"sif", mkSIF(t, sq), KindSIF, 32768},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img, err := Open(c.path, false)
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			if img.Kind != c.kind {
				t.Fatalf("kind %v, want %v", img.Kind, c.kind)
			}
			if img.Root != nil && img.Root.Offset != c.off {
				t.Errorf("root offset %d, want %d", img.Root.Offset, c.off)
			}
		})
	}
}

func TestOpenRefuses(t *testing.T) {
	sq := mkSquash(t)
	good := mkSIF(t, sq)
	data, _ := os.ReadFile(good)

	noJournal := mkFs(t, "mkfs.ext2")
	ext4 := mkFs(t, "mkfs.ext4")
	corrupt := append([]byte{}, data...)
	copy(corrupt[32768:], "XXXX") // the squashfs magic of the primary partition
	badTables := append([]byte{}, data...)
	for i := 32768 + 40; i < 32768+96; i++ {
		badTables[i] = 0xff // bytes_used and every table start
	}
	random := make([]byte, 8192)
	for i := range random {
		random[i] = byte(i*7 + i/13)
	}

	cases := []struct {
		name, path, want string
	}{
		{"missing", "/nonexistent/x.sif", "not found"},
		{"empty path", "", "no image given: the image path is empty"},
		{"docker URI", "docker://alpine:3", "docker://alpine:3: husk runs local images " +
			"only (SIF files, ext3 images, directories), not docker ones"},
		{"library URI", "library://a/b/c", "not library ones"},
		{"oci-archive", "oci-archive:/x.tar", "not oci-archive ones"},
		{"random", writeFile(t, random), "unknown image format"},
		{"truncated header", writeFile(t, data[:100]), "truncated SIF: header"},
		{"truncated descriptors", writeFile(t, data[:5000]),
			"truncated SIF: descriptor table ends past end of file"},
		{"truncated partition", writeFile(t, data[:len(data)-10]),
			"truncated SIF: partition 1"},
		{"corrupt squashfs", writeFile(t, corrupt), "is not a squashfs filesystem"},
		{"corrupt squashfs tables", writeFile(t, badTables), "partition 1: squash"},
		{"foreign arch", mkSIFArch(t, sq, foreignArch()),
			"the image's architecture (" + foreignArch() + ") could not run on the host's (" +
				runtime.GOARCH + ")"},
		{"ext2", noJournal, "file is not a valid ext3 image: it has no journal (ext2)"},
		{"ext4", ext4, "file is not a valid ext3 image: it has features ext3 lacks (extents"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img, err := Open(c.path, false)
			if err == nil {
				img.Close()
				t.Fatalf("Open succeeded, want error containing %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q, want it to contain %q", err, c.want)
			}
		})
	}
}

// foreignArch is an architecture this host cannot run.
func foreignArch() string {
	if runtime.GOARCH == "s390x" {
		return "riscv64"
	}
	return "s390x"
}

func TestSIFOverlayPartitions(t *testing.T) {
	sq := mkSquash(t)
	ext := mkExt3(t)
	s := mkSIF(t, sq,
		ext3Part(t, ext),                    // group 1: used
		ext3Part(t, ext, sif.OptGroupID(2))) // other group: ignored
	img, err := Open(s, false)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if len(img.Overlays) != 1 || img.Overlays[0].FS != FSExt3 || img.Overlays[0].ID != 2 {
		t.Fatalf("overlays %+v, want one ext3 partition with ID 2", img.Overlays)
	}
	// e2fsck agrees the section is an ext3 filesystem at that offset.
	run(t, need(t, "e2fsck", "e2fsprogs"), "-fn",
		s+"?offset="+strconv.FormatInt(img.Overlays[0].Offset, 10))
}

func TestPlanStacking(t *testing.T) {
	sq := mkSquash(t)
	ext := mkExt3(t)
	s := mkSIF(t, sq, ext3Part(t, ext))
	a, b := mkExt3(t), mkExt3(t)
	dir := t.TempDir()

	// A squashfs --overlay without :ro is read-only by nature: no warning.
	var warnings bytes.Buffer
	p, err := NewPlan(Request{Image: s, Overlays: ParseOverlays([]string{
		a, b + ":ro", dir + ":ro", sq}),
	}, slog.New(slog.NewTextHandler(&warnings, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Upper == nil || p.Upper.Path != a {
		t.Fatalf("upper %+v, want %s", p.Upper, a)
	}
	var got []string
	for _, l := range p.Lowers {
		got = append(got, string(l.Kind)+":"+filepath.Base(filepath.Dir(l.Path))+
			filepath.Base(l.Path))
	}
	want := []string{
		"squashfs:" + filepath.Base(filepath.Dir(sq)) + "root.sqfs", // last --overlay on top
		"diroverlay:" + filepath.Base(filepath.Dir(dir)) + filepath.Base(dir),
		"ext3:" + filepath.Base(filepath.Dir(b)) + "o.img",
		"ext3:" + filepath.Base(filepath.Dir(s)) + "img.sif",     // embedded partition
		"squashfs:" + filepath.Base(filepath.Dir(s)) + "img.sif", // root
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("lowers\n got %v\nwant %v", got, want)
	}
	if len(p.Files) != 4 {
		t.Errorf("%d files, want 4 (sif, a, b, squashfs)", len(p.Files))
	}
	if warnings.Len() != 0 {
		t.Errorf("warnings: %s", warnings.String())
	}
}

func TestPlanErrors(t *testing.T) {
	sq := mkSquash(t)
	s := mkSIF(t, sq)
	withOv := mkSIF(t, sq, ext3Part(t, mkExt3(t)))
	a, b := mkExt3(t), mkExt3(t)

	cases := []struct {
		name string
		req  Request
		want string
	}{
		{"two writable", Request{Image: s, Overlays: ParseOverlays([]string{a, b})},
			"you can't specify more than one writable overlay, " + a +
				" contains a writable overlay, requires to use '--overlay " + b + ":ro'"},
		{"overlay and writable", Request{Image: withOv, Writable: true,
			Overlays: ParseOverlays([]string{a})},
			"cannot use --overlay in conjunction with --writable"},
		{"writable without partition", Request{Image: s, Writable: true},
			"no SIF writable overlay partition found in " + s},
		{"tmpfs and writable overlay", Request{Image: s, WritableTmpfs: true,
			Overlays: ParseOverlays([]string{a})},
			"you can't specify --writable-tmpfs with another writable overlay image (" + a + ")"},
		{"writable squashfs", Request{Image: sq, Writable: true},
			"could not set " + sq + " image writable: squashfs is a read-only filesystem"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := NewPlan(c.req, quiet)
			if err == nil {
				p.Close()
				t.Fatalf("NewPlan succeeded, want %q", c.want)
			}
			if err.Error() != c.want {
				t.Fatalf("error\n got %q\nwant %q", err, c.want)
			}
		})
	}
}

func TestWritableSIF(t *testing.T) {
	s := mkSIF(t, mkSquash(t), ext3Part(t, mkExt3(t)))
	p, err := NewPlan(Request{Image: s, Writable: true, WritableTmpfs: true}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Upper == nil || p.Upper.Section.ID != 2 || p.WritableTmpfs {
		t.Fatalf("plan %s, want the SIF's partition 2 as upper and no tmpfs", p.Describe())
	}
}

func TestParseOverlays(t *testing.T) {
	got, err := ParseOverlayArgs([]string{"a.img", "b.img:ro", "c:rw", "/d/e.sif:ro"})
	if err != nil {
		t.Fatal(err)
	}
	want := []OverlayArg{{"a.img", false}, {"b.img", true}, {"c", false},
		{"/d/e.sif", true}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%d: got %v, want %v", i, got[i], want[i])
		}
	}
	bad := []struct{ value, want string }{
		{"a.img:RO", `--overlay a.img:RO: unknown option "RO" (want ro or rw)`},
		{"a.img:r0", `unknown option "r0"`},
		{"a.img:bogus", `unknown option "bogus"`},
		{"a.img:", `unknown option ""`},
		{"d:ro:x", `unknown option "ro:x"`},
		{"", `--overlay "": want an image path`},
		{":ro", `want an image path`},
	}
	for _, b := range bad {
		_, err := ParseOverlayArgs([]string{"ok.img", b.value})
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%q: got error %v, want %q", b.value, err, b.want)
		}
	}
}

func TestLockConflicts(t *testing.T) {
	path := mkExt3(t)
	// Another open file description holding a write lock stands for
	// another process (OFD locks conflict across descriptions).
	other, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Len: 0}
	if err := unix.FcntlFlock(other.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		t.Fatal(err)
	}

	for _, write := range []bool{true, false} {
		img, err := Open(path, write)
		if err != nil {
			t.Fatal(err)
		}
		err = Lock(img, *img.Root, write, quiet)
		img.Close()
		want := "while locking ext3 partition from " + path + ": can't open " + path +
			" for writing, currently in use by another process"
		if !write {
			want = "while locking ext3 partition from " + path + ": can't open " + path +
				" for reading, currently in use for writing by another process"
		}
		if err == nil || err.Error() != want {
			t.Errorf("write=%v: error %v, want %q", write, err, want)
		}
	}

	// Readers share; a second use for writing in this process is refused.
	other.Close()
	r1, _ := Open(path, false)
	defer r1.Close()
	r2, _ := Open(path, true)
	defer r2.Close()
	if err := Lock(r1, *r1.Root, false, quiet); err != nil {
		t.Fatal(err)
	}
	err = Lock(r2, *r2.Root, true, quiet)
	want := "can't open " + path + " for writing, already used for reading by this process"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want %q", err, want)
	}
	// Nor may a reader join a use for writing, and the message says which
	// use is which (it called the second one writing too).
	w, _ := Open(path, true)
	defer w.Close()
	r3, _ := Open(path, false)
	defer r3.Close()
	r1.Close()
	if err := Lock(w, *w.Root, true, quiet); err != nil {
		t.Fatal(err)
	}
	err = Lock(r3, *r3.Root, false, quiet)
	want = "can't open " + path + " for reading, already used for writing by this process"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want %q", err, want)
	}
}
