package ext3

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/husk-project/husk/internal/testns"
)

// growImage makes a sparse image of fromMiB with mkfs.ext3 ("mkfs") or
// husk's Mkfs ("husk") and stores a few files with random contents.
func growImage(t *testing.T, maker string, fromMiB int64, args ...string) (string,
	map[string][32]byte) {
	t.Helper()
	size := fromMiB << 20
	var img string
	if maker == "mkfs" {
		img = mkext3(t, size, args...)
	} else {
		fh, p := newImageFile(t, size)
		if err := Mkfs(NewSection(fh, 0, size), size, MkfsOptions{}); err != nil {
			t.Fatal(err)
		}
		img = p
	}
	f := openImage(t, img, false)
	sums := map[string][32]byte{}
	for i, n := range []int{1, 5000, 300 << 10, 3 << 20} {
		data := make([]byte, n)
		rand.Read(data)
		name := fmt.Sprintf("f%d", i)
		a, err := f.Create(RootIno, name, 0o644, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(a.Ino, data, 0); err != nil {
			t.Fatal(err)
		}
		sums[name] = sha256.Sum256(data)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return img, sums
}

// growFile extends img to toMiB and grows its file system.
func growFile(t *testing.T, img string, toMiB int64) (*GrowResult, error) {
	t.Helper()
	fh, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	size := toMiB << 20
	if err := fh.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return Grow(NewSection(fh, 0, size), size, Options{})
}

// dumpe2fsHeader returns dumpe2fs -h fields as numbers where they are.
func dumpe2fsHeader(t *testing.T, img string) map[string]uint64 {
	t.Helper()
	needTools(t, "dumpe2fs")
	out, err := exec.Command("dumpe2fs", "-h", img).CombinedOutput()
	if err != nil {
		t.Fatalf("dumpe2fs -h %s: %v\n%s", img, err, out)
	}
	m := map[string]uint64{}
	for _, l := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			m[k] = n
		}
	}
	return m
}

func checkFiles(t *testing.T, f *FS, sums map[string][32]byte) {
	t.Helper()
	for name, want := range sums {
		a, err := f.Lookup(RootIno, name)
		if err != nil {
			t.Fatalf("%s after growing: %v", name, err)
		}
		data := make([]byte, a.Size)
		if _, err := f.ReadAt(a.Ino, data, 0); err != nil {
			t.Fatalf("read %s: %v", name, err)
		}
		if sha256.Sum256(data) != want {
			t.Errorf("%s changed by growing", name)
		}
	}
}

// fillFS writes 1 MiB chunks into new files until ENOSPC and returns the
// bytes written.
func fillFS(t *testing.T, f *FS) int64 {
	t.Helper()
	chunk := make([]byte, 1<<20)
	rand.Read(chunk)
	var total int64
	for i := 0; ; i++ {
		a, err := f.Create(RootIno, fmt.Sprintf("fill%d", i), 0o644, 0, 0)
		if errors.Is(err, syscall.ENOSPC) {
			return total
		}
		if err != nil {
			t.Fatal(err)
		}
		for off := int64(0); off < 256<<20; off += int64(len(chunk)) {
			n, err := f.WriteAt(a.Ino, chunk, off)
			total += int64(n)
			if errors.Is(err, syscall.ENOSPC) {
				return total
			}
			if err != nil {
				t.Fatalf("fill%d at %d: %v", i, off, err)
			}
		}
	}
}

func TestGrow(t *testing.T) {
	tests := []struct {
		maker      string
		from, to   int64 // MiB
		bs         uint64
		gdtAdded   uint32
		fill       bool // write until ENOSPC afterwards (costs time and disk)
		mkfsParams []string
	}{
		{"mkfs", 64, 100, 1024, 0, true, nil},
		{"mkfs", 64, 1024, 1024, 3, true, nil},
		{"mkfs", 600, 3072, 4096, 0, true, nil},
		{"husk", 64, 100, 1024, 0, true, nil},
		{"husk", 64, 1024, 1024, 3, false, nil},
		{"husk", 600, 3072, 4096, 0, false, nil},
		{"mkfs", 70, 90, 2048, 0, true, []string{"-b", "2048", "-I", "128"}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s-%d-%d", tc.maker, tc.from, tc.to), func(t *testing.T) {
			img, sums := growImage(t, tc.maker, tc.from, tc.mkfsParams...)
			before := dumpe2fsHeader(t, img)
			res, err := growFile(t, img, tc.to)
			if err != nil {
				t.Fatalf("Grow: %v", err)
			}
			if res.GDTBlocksAdded != tc.gdtAdded {
				t.Errorf("GDT blocks added %d, want %d", res.GDTBlocksAdded, tc.gdtAdded)
			}
			fsck(t, img)
			h := dumpe2fsHeader(t, img)
			wantBlocks := uint64(tc.to<<20) / tc.bs
			if h["Block count"] != wantBlocks {
				t.Errorf("block count %d, want %d", h["Block count"], wantBlocks)
			}
			ipg := before["Inodes per group"]
			groups := (wantBlocks - before["First block"] + before["Blocks per group"] - 1) /
				before["Blocks per group"]
			if h["Inode count"] != groups*ipg {
				t.Errorf("inode count %d, want %d groups x %d", h["Inode count"], groups, ipg)
			}
			gotR := float64(h["Reserved block count"]) / float64(h["Block count"])
			wantR := float64(before["Reserved block count"]) / float64(before["Block count"])
			if d := gotR - wantR; d > 0.001 || d < -0.001 {
				t.Errorf("reserved ratio %.4f, was %.4f", gotR, wantR)
			}
			if h["Free inodes"] != before["Free inodes"]+(groups*ipg-before["Inode count"]) {
				t.Errorf("free inodes %d, before %d", h["Free inodes"], before["Free inodes"])
			}

			f := openImage(t, img, false)
			checkFiles(t, f, sums)
			st := f.Statfs()
			if st.Blocks*uint64(st.Bsize) < uint64(tc.to<<20)*85/100 { // less the overhead
				t.Errorf("Statfs shows %d blocks of %d bytes", st.Blocks, st.Bsize)
			}
			if tc.fill {
				free := st.Bfree * uint64(st.Bsize)
				wrote := fillFS(t, f)
				// Root may use the reserved blocks; indirect blocks take the rest.
				if uint64(wrote) < free*98/100 || uint64(wrote) > free {
					t.Errorf("filled %d bytes, %d were free", wrote, free)
				}
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			fsck(t, img)
		})
	}
}

func TestGrowRefuses(t *testing.T) {
	t.Run("shrink", func(t *testing.T) {
		img := mkext3(t, 64<<20)
		fh, err := os.OpenFile(img, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		_, err = Grow(NewSection(fh, 0, 64<<20), 32<<20, Options{})
		if err == nil || !strings.Contains(err.Error(), "shrinking") {
			t.Fatalf("Grow to a smaller size: %v", err)
		}
		fsck(t, img)
	})
	t.Run("same size", func(t *testing.T) {
		img := mkext3(t, 64<<20)
		if _, err := growFile(t, img, 64); !errors.Is(err, ErrNotGrown) {
			t.Fatalf("Grow to the same size: %v, want ErrNotGrown", err)
		}
		fsck(t, img)
	})
	t.Run("no resize_inode", func(t *testing.T) {
		img := mkext3(t, 64<<20, "-O", "^resize_inode")
		before := dumpe2fsHeader(t, img)["Block count"]
		_, err := growFile(t, img, 1024)
		if !errors.Is(err, syscall.EFBIG) || !strings.Contains(err.Error(), "reserved") {
			t.Fatalf("Grow past the GDT without reserved blocks: %v", err)
		}
		fsck(t, img)
		if got := dumpe2fsHeader(t, img)["Block count"]; got != before {
			t.Fatalf("refused growth changed the block count to %d", got)
		}
		// Within the one GDT block it works.
		if _, err := growFile(t, img, 200); err != nil {
			t.Fatal(err)
		}
		fsck(t, img)
	})
}

// failDev fails every write after the first n, like a crash after them.
type failDev struct {
	Device
	n, writes int
}

var errInjected = errors.New("injected write failure")

func (d *failDev) WriteAt(p []byte, off int64) (int, error) {
	d.writes++
	if d.writes > d.n {
		return 0, errInjected
	}
	return d.Device.WriteAt(p, off)
}

// describeStopped checks Describe on an interrupted image and reports
// whether its journal needed recovery.
func describeStopped(t *testing.T, img string, oldBlocks, newBlocks uint64) bool {
	t.Helper()
	s, err := Describe(imageDevice(t, img, true))
	if err != nil {
		t.Fatalf("Describe: %v", err)
	}
	if s.Blocks != oldBlocks && s.Blocks != newBlocks || s.Journal != "internal" ||
		s.JournalBlocks != 4096 || s.BlockSize != 1024 {
		t.Fatalf("Describe of an interrupted growth: %+v", s)
	}
	if s.NeedsRecovery && (!s.InUse || s.HasUpper) {
		t.Errorf("Describe of an image needing recovery: %+v", s)
	}
	return s.NeedsRecovery
}

// TestGrowInterrupted stops Grow after a number of its writes: the next
// Open (which replays the journal) must find either the old or the new
// file system, with the files intact and e2fsck clean. Every stop among
// the last writes (journal commit, checkpoint, backups) is tried, and a
// spread of earlier ones (new groups).
func TestGrowInterrupted(t *testing.T) {
	for _, to := range []int64{100, 1024} {
		t.Run(strconv.FormatInt(to, 10), func(t *testing.T) {
			base, sums := growImage(t, "mkfs", 64)
			oldBlocks := dumpe2fsHeader(t, base)["Block count"]
			newBlocks := uint64(to << 10)
			dir := t.TempDir()
			sawRecovery := false
			run := func(n int) (int, error) {
				img := filepath.Join(dir, "img")
				if out, err := exec.Command("cp", "--sparse=always", base, img).
					CombinedOutput(); err != nil {
					t.Fatalf("cp: %v %s", err, out)
				}
				fh, err := os.OpenFile(img, os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				size := to << 20
				fh.Truncate(size)
				dev := &failDev{Device: NewSection(fh, 0, size), n: n}
				_, gerr := Grow(dev, size, Options{})
				fh.Close()
				if gerr != nil && !errors.Is(gerr, errInjected) {
					t.Fatalf("after %d writes: %v", n, gerr)
				}
				sawRecovery = sawRecovery || describeStopped(t, img, oldBlocks, newBlocks)
				f := openImage(t, img, false)
				checkFiles(t, f, sums)
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
				fsck(t, img)
				got := dumpe2fsHeader(t, img)["Block count"]
				if got != oldBlocks && got != newBlocks || gerr == nil && got != newBlocks {
					t.Fatalf("after %d writes (err %v): %d blocks, want %d or %d", n, gerr,
						got, oldBlocks, newBlocks)
				}
				return dev.writes, gerr
			}
			total, err := run(1 << 30)
			if err != nil {
				t.Fatal(err)
			}
			for n := 0; n < total; n++ {
				if n < total-20 && n%(total/4+1) != 0 {
					continue
				}
				if _, err := run(n); err == nil {
					t.Fatalf("Grow succeeded with only %d of %d writes", n, total)
				}
			}
			if !sawRecovery {
				t.Errorf("no stop left a journal to replay")
			}
		})
	}
}

// kernelScript runs in a private mount namespace (see testns.NS), so that
// no other namespace (a sandbox started meanwhile) keeps a copy of the
// mount alive after umount, and so that it holds no copy of another
// test's mounts while it fills the file system: it mounts the image,
// prints statfs (block size, blocks, available), the files' sha256,
// fills the file system with dd, prints the fill's size and unmounts.
const kernelScript = `set -e
mount -o loop "$1" "$2"
stat -f -c 'statfs %S %b %a' "$2"
(cd "$2" && sha256sum f*)
dd if=/dev/zero of="$2/fill" bs=1M conv=fsync 2>&1 | grep -q 'No space left'
stat -c 'fill %s' "$2/fill"
umount "$2"
`

// TestGrowKernel mounts a grown image with the kernel: statfs shows the
// new size, the old files are intact and the new space can be filled.
func TestGrowKernel(t *testing.T) {
	needTools(t, "mount", "umount", "sha256sum")
	img, sums := growImage(t, "mkfs", 64)
	if _, err := growFile(t, img, 1024); err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	ns, err := testns.New()
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	err = ns.Run(func() (err error) {
		out, err = exec.Command("sh", "-c", kernelScript, "sh", img, mnt).CombinedOutput()
		return err
	})
	if cerr := ns.Close(); cerr != nil {
		t.Error(cerr)
	}
	if err != nil {
		t.Fatalf("kernel mount, check and fill: %v\n%s", err, out)
	}
	var bsize, blocks, avail, fill uint64
	seen := map[string]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 4 && f[0] == "statfs":
			bsize, _ = strconv.ParseUint(f[1], 10, 64)
			blocks, _ = strconv.ParseUint(f[2], 10, 64)
			avail, _ = strconv.ParseUint(f[3], 10, 64)
		case len(f) == 2 && f[0] == "fill":
			fill, _ = strconv.ParseUint(f[1], 10, 64)
		case len(f) == 2:
			if want, ok := sums[f[1]]; ok {
				seen[f[1]] = true
				if fmt.Sprintf("%x", want) != f[0] {
					t.Errorf("%s changed, as the kernel reads it", f[1])
				}
			}
		}
	}
	if len(seen) != len(sums) {
		t.Errorf("kernel listed %d of the %d files:\n%s", len(seen), len(sums), out)
	}
	if total := blocks * bsize; total < 950<<20 {
		t.Fatalf("kernel sees %d bytes, want about 1 GiB:\n%s", total, out)
	}
	if fill < avail*bsize*97/100 {
		t.Errorf("kernel wrote %d bytes, %d were available", fill, avail*bsize)
	}
	fsck(t, img)
}

// TestGrowMatchesResize2fs grows copies of one image with Grow and with
// resize2fs: dumpe2fs must print the same for both, every group's layout
// and counts included, except times, mount count and journal sequence.
func TestGrowMatchesResize2fs(t *testing.T) {
	needTools(t, "resize2fs", "dumpe2fs")
	for _, c := range []struct {
		maker    string
		from, to int64
		args     []string
	}{
		{"mkfs", 64, 100, nil}, {"mkfs", 64, 4000, nil}, {"mkfs", 600, 3072, nil},
		{"mkfs", 70, 90, []string{"-b", "2048"}}, {"husk", 64, 1024, nil},
	} {
		t.Run(fmt.Sprintf("%s-%d-%d", c.maker, c.from, c.to), func(t *testing.T) {
			img, _ := growImage(t, c.maker, c.from, c.args...)
			ref := filepath.Join(t.TempDir(), "ref.img")
			if out, err := exec.Command("cp", "--sparse=always", img, ref).
				CombinedOutput(); err != nil {
				t.Fatalf("cp: %v %s", err, out)
			}
			if err := os.Truncate(ref, c.to<<20); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("resize2fs", "-f", ref).CombinedOutput(); err != nil {
				t.Fatalf("resize2fs: %v\n%s", err, out)
			}
			if _, err := growFile(t, img, c.to); err != nil {
				t.Fatal(err)
			}
			dump := func(p string) []string {
				out, err := exec.Command("dumpe2fs", p).CombinedOutput()
				if err != nil {
					t.Fatalf("dumpe2fs %s: %v\n%s", p, err, out)
				}
				var keep []string
				for _, l := range strings.Split(string(out), "\n") {
					if !strings.Contains(l, "time:") && !strings.HasPrefix(l, "Mount count") &&
						!strings.HasPrefix(l, "Journal sequence") &&
						!strings.HasPrefix(l, "Lifetime writes") {
						keep = append(keep, l)
					}
				}
				return keep
			}
			got, want := dump(img), dump(ref)
			if len(got) != len(want) {
				t.Fatalf("dumpe2fs prints %d lines after Grow, %d after resize2fs",
					len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("dumpe2fs line %d: Grow %q, resize2fs %q", i, got[i], want[i])
				}
			}
		})
	}
}
