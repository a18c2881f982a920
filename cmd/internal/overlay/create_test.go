package overlay

import (
	"crypto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/sylabs/sif/v2/pkg/sif"
)

func tool(t *testing.T, name string, args ...string) string {
	t.Helper()
	path := name
	for _, p := range []string{name, "/usr/sbin/" + name, "/sbin/" + name} {
		if lp, err := exec.LookPath(p); err == nil {
			path = lp
			break
		}
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s (needs e2fsprogs and squashfs-tools)", name,
			strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestCreateBare(t *testing.T) {
	cases := []struct {
		name   string
		opts   Options
		owner  string
		mode   string
		blocks bool // fully allocated
	}{
		{"user", Options{SizeMiB: 64, UID: 1500, GID: 1500}, "1500", "0755", true},
		{"sparse fakeroot", Options{SizeMiB: 80, Sparse: true, Fakeroot: true, UID: 1500,
			GID: 1500}, "0", "0755", false},
		{"big ids", Options{SizeMiB: 64, Sparse: true, UID: 70000, GID: 70000}, "70000",
			"0777", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "o.img")
			c.opts.CreateDirs = []string{"/data/sub", "opt"}
			if err := Create(p, c.opts); err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 || st.Size() != c.opts.SizeMiB<<20 {
				t.Errorf("mode %o size %d", st.Mode().Perm(), st.Size())
			}
			if left, _ := filepath.Glob(p + ".*.ext3"); len(left) > 0 {
				t.Errorf("temporary files left behind: %v", left)
			}
			tool(t, "e2fsck", "-fn", p)
			for _, d := range []string{"/upper", "/work", "/upper/data", "/upper/data/sub",
				"/upper/opt"} {
				out := tool(t, "debugfs", "-R", "stat "+d, p)
				if !regexp.MustCompile(`User:\s+`+c.owner+`\s`).MatchString(out) ||
					!strings.Contains(out, "Mode:  "+c.mode) {
					t.Errorf("%s: want owner %s mode %s:\n%s", d, c.owner, c.mode, out)
				}
			}
			allocated := st.Sys().(*syscall.Stat_t).Blocks * 512
			if c.blocks != (allocated >= st.Size()) {
				t.Errorf("%d of %d bytes allocated, want fully allocated: %v", allocated,
					st.Size(), c.blocks)
			}
		})
	}
}

func TestCreateRefuses(t *testing.T) {
	dir := t.TempDir()
	ext := filepath.Join(dir, "e.img")
	if err := Create(ext, Options{SizeMiB: 64, Sparse: true}); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other")
	os.WriteFile(other, []byte("hello"), 0o644)
	// Looking into a FIFO for a SIF header hung until a writer came.
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path string
		opts       Options
		want       string
	}{
		{"small", filepath.Join(dir, "s"), Options{SizeMiB: 63},
			"image size must be equal or greater than 64 MiB"},
		{"ext3 exists", ext, Options{SizeMiB: 64}, "EXT3 overlay image " + ext + " already exists"},
		{"not a SIF", other, Options{SizeMiB: 64}, "destination image must be SIF image"},
		{"escape", filepath.Join(dir, "x"), Options{SizeMiB: 64, CreateDirs: []string{"../a"}},
			"overlay directory created outside of overlay layout"},
		{"fifo", fifo, Options{SizeMiB: 64}, fifo + " exists and is not a regular file"},
		{"directory", dir, Options{SizeMiB: 64}, dir + " exists and is not a regular file"},
		{"empty path", "", Options{SizeMiB: 64}, "no image path given"},
		// Past 16 TiB, mkfs divided by zero groups, and the size in
		// bytes overflowed further on.
		{"huge", filepath.Join(dir, "h"), Options{SizeMiB: 16 << 20, Sparse: true},
			"image size must be at most 16777215 MiB (16 TiB, the most ext3 can address)"},
		{"overflow", filepath.Join(dir, "o"), Options{SizeMiB: 1 << 50, Sparse: true},
			"image size must be at most 16777215 MiB"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Create(c.path, c.opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

// TestCreateOverDanglingLink: a symlink to nothing counts as no file, as
// in Apptainer, and the new overlay takes the link's place.
func TestCreateOverDanglingLink(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "o.img")
	if err := os.Symlink("gone.img", link); err != nil {
		t.Fatal(err)
	}
	if err := Create(link, Options{SizeMiB: 64, Sparse: true}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(link)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != 64<<20 {
		t.Fatalf("after create: %v, %v", fi, err)
	}
	tool(t, "e2fsck", "-fn", link)
}

func TestCreateInSIF(t *testing.T) {
	img := mkSIF(t, sif.FsSquash)
	if err := Create(img, Options{SizeMiB: 64, Sparse: true, UID: 1500, GID: 1500}); err != nil {
		t.Fatal(err)
	}
	d := overlayDescriptor(t, img)
	fs, pt, arch, _ := d.PartitionMetadata()
	if fs != sif.FsExt3 || pt != sif.PartOverlay || arch != "amd64" || d.GroupID() != 1 ||
		d.Offset()%4096 != 0 || d.Size() != 64<<20 {
		t.Fatalf("partition %v %v %s group %d offset %d size %d", fs, pt, arch, d.GroupID(),
			d.Offset(), d.Size())
	}
	tool(t, "e2fsck", "-fn", img+"?offset="+strconv.FormatInt(d.Offset(), 10))

	err := Create(img, Options{SizeMiB: 64, Sparse: true})
	want := "a writable overlay partition already exists in " + img + " (ID: 2)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("second overlay: %v, want %q", err, want)
	}
}

// mkSIF makes a SIF whose primary partition has fstype fs, plus extra
// objects.
func mkSIF(t *testing.T, fs sif.FSType, extra ...sif.DescriptorInput) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	sq := filepath.Join(dir, "r.sqfs")
	tool(t, "mksquashfs", src, sq, "-noappend", "-quiet")
	f, _ := os.Open(sq)
	defer f.Close()
	di, err := sif.NewDescriptorInput(sif.DataPartition, f,
		sif.OptPartitionMetadata(fs, sif.PartPrimSys, "amd64"))
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "i.sif")
	fi, err := sif.CreateContainerAtPath(img,
		sif.OptCreateWithDescriptors(append([]sif.DescriptorInput{di}, extra...)...))
	if err != nil {
		t.Fatal(err)
	}
	fi.UnloadContainer()
	return img
}

// overlayDescriptor reads the descriptor of img's overlay partition with
// the sif library.
func overlayDescriptor(t *testing.T, img string) sif.Descriptor {
	t.Helper()
	fi, err := sif.LoadContainerFromPath(img, sif.OptLoadWithFlag(os.O_RDONLY))
	if err != nil {
		t.Fatalf("sif library: %v", err)
	}
	defer fi.UnloadContainer()
	d, err := fi.GetDescriptor(sif.WithPartitionType(sif.PartOverlay))
	if err != nil {
		t.Fatalf("sif library: %v", err)
	}
	return d
}

func TestCreateRefusesSIF(t *testing.T) {
	sig, err := sif.NewDescriptorInput(sif.DataSignature, strings.NewReader("sig"),
		sif.OptSignatureMetadata(crypto.SHA256, make([]byte, 20)), sif.OptNoGroup(),
		sif.OptLinkedGroupID(1))
	if err != nil {
		t.Fatal(err)
	}
	signed := mkSIF(t, sif.FsSquash, sig)
	encrypted := mkSIF(t, sif.FsEncryptedSquashfs)
	cases := []struct{ name, path, want string }{
		{"signed", signed, "SIF image " + signed + " is signed: could not add writable overlay"},
		{"encrypted", encrypted, "encrypted root FS partition in " + encrypted +
			": could not add writable overlay"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, _ := os.Stat(c.path)
			err := Create(c.path, Options{SizeMiB: 64, Sparse: true})
			if err == nil || err.Error() != c.want {
				t.Fatalf("error %v, want %q", err, c.want)
			}
			after, _ := os.Stat(c.path)
			if after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
				t.Errorf("%s was modified", c.path)
			}
		})
	}
}
