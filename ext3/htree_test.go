package ext3

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDxHash checks the directory hash against debugfs dx_hash.
func TestDxHash(t *testing.T) {
	needTools(t, "debugfs", "mkfs.ext3")
	img := mkext3(t, 8<<20)
	seedStr := "b8e19642-26e8-4b90-af90-2dca13f4e823"
	var seed [16]byte
	hexs := strings.ReplaceAll(seedStr, "-", "")
	for i := range seed {
		v, _ := strconv.ParseUint(hexs[2*i:2*i+2], 16, 8)
		seed[i] = byte(v)
	}
	f := &FS{sb: &superblock{}}
	for i := range f.sb.HashSeed {
		f.sb.HashSeed[i] = le.Uint32(seed[4*i:])
	}
	names := []string{"a", "hello", "lost+found", "entry-with-a-longish-name-12345",
		strings.Repeat("0123456789", 7), "\xe9t\xe9", "x\xffy\x80z-" + strings.Repeat("q", 40)}
	re := regexp.MustCompile(`Hash of .* is 0x([0-9a-f]+)`)
	for _, alg := range []struct {
		name string
		v    uint8
	}{{"legacy", hashLegacy}, {"half_md4", hashHalfMD4}, {"tea", hashTea}} {
		for _, n := range names {
			out := debugfs(t, img, fmt.Sprintf("dx_hash -h %s -s %s %s", alg.name, seedStr, n))
			m := re.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("debugfs dx_hash output: %s", out)
			}
			want, _ := strconv.ParseUint(m[1], 16, 32)
			if got := f.dxHash(n, alg.v); got != uint32(want) {
				t.Errorf("%s(%q) = %#x, debugfs says %#x", alg.name, n, got, want)
			}
		}
	}
}

// kernelDirs mounts img with the kernel and fills directories with n
// empty files each, so they get kernel-built htree indexes.
func kernelDirs(t *testing.T, img string, dirs map[string]int) {
	t.Helper()
	mnt, unmount := kernelMount(t, img, "ext3", "")
	defer unmount()
	for d, n := range dirs {
		p := filepath.Join(mnt, d)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			if err := unix.Mknod(filepath.Join(p, dirName(i)), unix.S_IFREG|0o644, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func dirName(i int) string { return fmt.Sprintf("file-%07d-with-some-padding", i) }

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := runOut(name, args...); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func TestKernelHtree(t *testing.T) {
	img := mkext3(t, 1<<30, "-b", "4096", "-N", "250000")
	const big = 100000
	kernelDirs(t, img, map[string]int{"small": 300, "big": big})
	if out := debugfs(t, img, "stat /small"); !strings.Contains(out, "Flags: 0x1000") {
		t.Fatalf("kernel did not index /small:\n%s", out)
	}
	f := openImage(t, img, false)
	small := mustA(t)(f.Lookup(RootIno, "small"))
	bigd := mustA(t)(f.Lookup(RootIno, "big"))
	// Hashed lookups in the small directory go through the index.
	for i := 0; i < 300; i++ {
		mustA(t)(f.Lookup(small.Ino, dirName(i)))
	}
	_, err := f.Lookup(small.Ino, "absent")
	wantErr(t, err, errnoENOENT)
	t0 := time.Now()
	for i := 0; i < big; i++ {
		mustA(t)(f.Lookup(bigd.Ino, dirName(i)))
	}
	t.Logf("%d lookups in a kernel-made htree directory: %v", big, time.Since(t0))

	// Insert and delete through husk, then let e2fsck and the kernel judge.
	for i := big; i < big+2000; i++ {
		mustA(t)(f.Create(bigd.Ino, dirName(i), 0o644, 0, 0))
		mustA(t)(f.Create(small.Ino, dirName(i), 0o644, 0, 0))
	}
	for i := 0; i < big; i += 7 {
		noErr(t, f.Unlink(bigd.Ino, dirName(i)))
	}
	noErr(t, f.Close())
	fsck(t, img)
	for _, d := range []string{"/small", "/big"} {
		if out := debugfs(t, img, "stat "+d); !strings.Contains(out, "Flags: 0x1000") {
			t.Fatalf("husk dropped the index of %s:\n%s", d, out)
		}
		checkHtree(t, img, d)
	}
	mnt := mountRO(t, img)
	for i := 0; i < big+2000; i += 13 {
		_, err := os.Lstat(filepath.Join(mnt, "big", dirName(i)))
		if gone := i < big && i%7 == 0; gone != os.IsNotExist(err) {
			t.Fatalf("kernel lstat big/%s: %v", dirName(i), err)
		}
	}
	for i := big; i < big+2000; i++ {
		if _, err := os.Lstat(filepath.Join(mnt, "small", dirName(i))); err != nil {
			t.Fatalf("kernel lstat small/%s: %v", dirName(i), err)
		}
	}
}

func TestHuskBigDir(t *testing.T) {
	img := mkext3(t, 1<<30, "-b", "4096", "-N", "150000")
	f := openImage(t, img, false)
	d := mustA(t)(f.Mkdir(RootIno, "big", 0o755, 0, 0))
	const n = 100000
	t0 := time.Now()
	for i := 0; i < n; i++ {
		mustA(t)(f.Create(d.Ino, dirName(i), 0o644, 0, 0))
	}
	t.Logf("%d creates: %v", n, time.Since(t0))
	t0 = time.Now()
	for i := 0; i < n; i++ {
		mustA(t)(f.Lookup(d.Ino, dirName(i)))
	}
	t.Logf("%d lookups: %v", n, time.Since(t0))
	ents, err := f.ReadDir(d.Ino)
	if err != nil || len(ents) != n {
		t.Fatalf("ReadDir: %d entries, %v", len(ents), err)
	}
	noErr(t, f.Close())
	fsck(t, img)
}

// waitLoopGone waits (up to 5 s) until the loop device behind img is
// detached, which the kernel does asynchronously after umount, then syncs
// the image and drops its cached pages so the next reader sees exactly
// what the kernel wrote.
func waitLoopGone(t *testing.T, img string) {
	t.Helper()
	for i := 0; i < 50; i++ {
		out, err := runOut("losetup", "-j", img)
		if err == nil && len(strings.TrimSpace(string(out))) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	run(t, "sync")
	fh, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	fh.Sync()
	unix.Fadvise(int(fh.Fd()), 0, 0, unix.FADV_DONTNEED)
}
