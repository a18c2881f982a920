package ext3

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// fsMemDev is a Device over a byte slice.
type fsMemDev struct {
	mu sync.Mutex
	b  []byte
}

func (m *fsMemDev) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("read [%d,+%d) outside %d bytes", off, len(p), len(m.b))
	}
	return copy(p, m.b[off:]), nil
}

func (m *fsMemDev) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("write [%d,+%d) outside %d bytes", off, len(p), len(m.b))
	}
	return copy(m.b[off:], p), nil
}

func (m *fsMemDev) Sync() error { return nil }

// openFuzzSeeds are small images made by mkfs.ext3 with a few files.
func openFuzzSeeds(t testing.TB) [][]byte {
	src := t.TempDir()
	os.WriteFile(src+"/file", []byte("hello"), 0o644)
	os.Mkdir(src+"/dir", 0o755)
	os.WriteFile(src+"/dir/big", make([]byte, 20000), 0o644)
	os.Symlink("target", src+"/link")
	var seeds [][]byte
	for _, args := range [][]string{
		{"-b", "1024", "-N", "32", "-O", "^has_journal,^resize_inode", "-d", src},
		{"-b", "1024", "-N", "32", "-I", "128", "-d", src},
	} {
		size := int64(256 << 10)
		if args[len(args)-3] == "128" {
			size = 2200 << 10 // the smallest size that gets a journal
		}
		img := mkext3(t, size, args...)
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	// An image with a hashed directory (e2fsck -D indexes it), so that
	// inserts go through htree leaf and node splits.
	hsrc := t.TempDir()
	os.Mkdir(hsrc+"/hdir", 0o755)
	for i := range 150 {
		os.WriteFile(fmt.Sprintf("%s/hdir/entry-%04d-with-a-longer-name", hsrc, i), nil, 0o644)
	}
	img := mkext3(t, 2200<<10, "-b", "1024", "-N", "256", "-I", "128", "-d", hsrc)
	if out, err := exec.Command("e2fsck", "-fyD", img).CombinedOutput(); err != nil &&
		!strings.Contains(err.Error(), "exit status 1") {
		t.Fatalf("e2fsck -fyD: %v\n%s", err, out)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return append(seeds, b)
}

// exerciseImage opens an image, walks and reads everything, and when writable
// makes a few changes. It must never panic or hang.
func exerciseImage(data []byte, ro bool) {
	dev := &fsMemDev{b: data}
	f, err := Open(dev, int64(len(data)), Options{ReadOnly: ro})
	if err != nil {
		return
	}
	budget := 2000
	var walk func(dir uint32, depth int)
	walk = func(dir uint32, depth int) {
		ents, err := f.ReadDir(dir)
		if err != nil || depth > 8 {
			return
		}
		for _, e := range ents {
			if budget--; budget < 0 {
				return
			}
			a, err := f.Lookup(dir, e.Name)
			if err != nil {
				continue
			}
			f.Listxattr(a.Ino)
			f.Getxattr(a.Ino, "user.x")
			switch a.Mode & sIFMT {
			case sIFDIR:
				walk(a.Ino, depth+1)
			case sIFLNK:
				f.Readlink(a.Ino)
			case sIFREG:
				buf := make([]byte, 64<<10)
				f.ReadAt(a.Ino, buf, 0)
			}
		}
	}
	walk(RootIno, 0)
	f.Statfs()
	f.Info()
	if !ro {
		if a, err := f.Create(RootIno, "new", 0o644, 0, 0); err == nil {
			f.WriteAt(a.Ino, make([]byte, 5000), 0)
			f.Setxattr(a.Ino, "user.k", []byte("v"), 0)
		}
		f.Mkdir(RootIno, "newdir", 0o755, 0, 0)
		if d, err := f.Lookup(RootIno, "hdir"); err == nil {
			// Enough inserts into the hashed directory to split leaves.
			for i := range 40 {
				f.Create(d.Ino, fmt.Sprintf("added-%03d-with-a-longer-name", i), 0o644, 0, 0)
			}
			f.Unlink(d.Ino, "entry-0001-with-a-longer-name")
		}
		for _, e := range firstOf(f.ReadDir(RootIno)) {
			f.Unlink(RootIno, e.Name)
			f.Rmdir(RootIno, e.Name)
		}
	}
	f.Close()
}

func firstOf[T any](v T, _ error) T { return v }

// FuzzOpen opens, walks, reads and (on a copy) writes images derived from
// small mkfs.ext3 images. Whole multi-megabyte images make Go's fuzzer
// crawl, so an input is a patch: byte 0 picks the seed image, then each
// 4-byte record sets the byte at a 24-bit offset (modulo the image size).
func FuzzOpen(f *testing.F) {
	seeds := openFuzzSeeds(f)
	for i := range seeds {
		f.Add([]byte{byte(i)})
	}
	f.Add([]byte{0, 0x38, 0x04, 0x00, 0x00}) // clobber the magic
	f.Add([]byte{1, 0x00, 0x0c, 0x00, 0xff}) // a GDT byte
	f.Fuzz(func(t *testing.T, patch []byte) {
		if len(patch) == 0 {
			return
		}
		img := append([]byte(nil), seeds[int(patch[0])%len(seeds)]...)
		for p := patch[1:]; len(p) >= 4; p = p[4:] {
			off := int(p[0]) | int(p[1])<<8 | int(p[2])<<16
			img[off%len(img)] = p[3]
		}
		exerciseImage(append([]byte(nil), img...), true)
		exerciseImage(img, false)
	})
}

// TestCorruptImages flips bytes in metadata areas of a real image and
// checks that Open and a full walk fail cleanly or succeed.
func TestCorruptImages(t *testing.T) {
	seeds := openFuzzSeeds(t)
	for si, s := range seeds {
		for i := 0; i < 300; i++ {
			b := append([]byte(nil), s...)
			// Spread corruption over the first 64 KiB, where the
			// superblock, descriptors, bitmaps, inodes and dirs live.
			for k := 0; k < 4; k++ {
				pos := (i*7919 + k*104729 + si) % (64 << 10)
				b[pos] ^= byte(i*31 + k + 1)
			}
			exerciseImage(b, true)
			exerciseImage(b, false)
		}
	}
	// Truncated images give a clear error.
	for _, n := range []int{0, 1000, 2048, 8192, len(seeds[0]) / 2} {
		dev := &fsMemDev{b: append([]byte(nil), seeds[0][:n]...)}
		_, err := Open(dev, int64(n), Options{ReadOnly: true})
		if err == nil {
			t.Errorf("Open of a %d-byte truncated image succeeded", n)
		} else {
			t.Logf("truncated to %d: %v", n, err)
		}
	}
}
