package fusefs

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/hanwen/go-fuse/v2/splice"
	"golang.org/x/sys/unix"

	"github.com/husk-project/husk/squash"
)

// TestSplicedReads serves a squashfs image, embedded at an offset in a
// larger file as in a SIF, whose large file is incompressible (stored
// uncompressed) with a compressible tail file next to it. Reads of the
// stored data must be spliced from the image file, and everything read
// through the mount, at odd offsets too, must match.
func TestSplicedReads(t *testing.T) {
	requireFuse(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	must(t, os.MkdirAll(src, 0755))
	random := make([]byte, 3<<20+12345) // stored blocks and a fragment tail
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	text := bytes.Repeat([]byte("compressible text\n"), 50000)
	must(t, os.WriteFile(filepath.Join(src, "random"), random, 0644))
	must(t, os.WriteFile(filepath.Join(src, "text"), text, 0644))
	mnt, layer := mountEmbedded(t, src, "-comp", "gzip")

	for _, c := range []struct {
		name string
		want []byte
	}{{"random", random}, {"text", text}} {
		got, err := os.ReadFile(filepath.Join(mnt, c.name))
		must(t, err)
		if !bytes.Equal(got, c.want) {
			t.Fatalf("%s: content read through the mount differs", c.name)
		}
		h, err := os.Open(filepath.Join(mnt, c.name))
		must(t, err)
		buf := make([]byte, 70000)
		for _, off := range []int64{1, 131071, 1 << 19, int64(len(c.want)) - 5000} {
			k, err := h.ReadAt(buf, off)
			if err != nil && err != io.EOF {
				t.Fatal(err)
			}
			if !bytes.Equal(buf[:k], c.want[off:off+int64(k)]) {
				t.Fatalf("%s at %d: content differs", c.name, off)
			}
		}
		h.Close()
	}
	if layer.spliced.Load() == 0 {
		t.Errorf("no read of the stored file was spliced")
	}
}

// TestSplicedReadsUnaligned: stored data that starts inside a page of the
// image file spans one page more than its length suggests, and go-fuse
// splices it through a pipe sized by length. A read of 255,232 bytes came
// back short (go-fuse took it for the end of the file), and the kernel
// then shrank the file: `cat` of it lost its last 280 bytes, silently. A
// reader that asks the kernel for large reads (POSIX_FADV_SEQUENTIAL, as
// cat does) must get every byte of files whose sizes lie near such
// boundaries, and their size must not change.
func TestSplicedReadsUnaligned(t *testing.T) {
	requireFuse(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	must(t, os.MkdirAll(src, 0755))
	random := func(n int) []byte {
		b := make([]byte, n)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	// Stored uncompressed, in name order; the first one puts the others
	// at offsets inside a page.
	must(t, os.WriteFile(filepath.Join(src, "a"), random(3000), 0644))
	sizes := []int{255232, 258000, 126000, 130000, 520000, 1040000}
	want := map[string][]byte{}
	for i, n := range sizes {
		name := fmt.Sprintf("b%d", i)
		want[name] = random(n)
		must(t, os.WriteFile(filepath.Join(src, name), want[name], 0644))
	}
	mnt, layer := mountEmbedded(t, src, "-no-fragments")

	for i := range sizes {
		name := fmt.Sprintf("b%d", i)
		w := want[name]
		// go-fuse keeps its pipes, grown, for the next reads: one grown
		// by an earlier read (of this test or another) would hide the
		// fault.
		splice.ClearSplicePool()
		h, err := os.Open(filepath.Join(mnt, name))
		must(t, err)
		must(t, unix.Fadvise(int(h.Fd()), 0, 0, unix.FADV_SEQUENTIAL))
		// 128 KiB at a time, as cat: the kernel then asks for a whole
		// readahead window (up to 256 KiB) at once.
		var got []byte
		buf := make([]byte, 128<<10)
		for {
			k, err := h.Read(buf)
			got = append(got, buf[:k]...)
			if err == io.EOF {
				break
			}
			must(t, err)
		}
		h.Close()
		if len(got) != len(w) || !bytes.Equal(got, w) {
			t.Errorf("%s: read %d bytes, want %d (same: %v)", name, len(got), len(w),
				bytes.Equal(got, w))
		}
		st, err := os.Stat(filepath.Join(mnt, name))
		must(t, err)
		if st.Size() != int64(len(w)) {
			t.Errorf("%s: size %d after the read, want %d", name, st.Size(), len(w))
		}
	}
	if layer.spliced.Load() == 0 {
		t.Errorf("no read was spliced")
	}
}

// mountEmbedded makes a squashfs image of src with mksquashfs (more
// options in opts), puts it at an offset in a larger file as a SIF puts
// its partitions, and mounts a union of it, backed by that file so that
// stored data is spliced.
func mountEmbedded(t *testing.T, src string, opts ...string) (string, *SquashLayer) {
	t.Helper()
	dir := t.TempDir()
	sqfs := filepath.Join(dir, "img.sqfs")
	tool(t, "mksquashfs", append([]string{src, sqfs, "-noappend", "-quiet"}, opts...)...)
	img, err := os.ReadFile(sqfs)
	must(t, err)
	const base = 40960
	sif := filepath.Join(dir, "img.sif")
	must(t, os.WriteFile(sif, append(make([]byte, base), img...), 0644))
	f, err := os.Open(sif)
	must(t, err)
	t.Cleanup(func() { f.Close() })
	sq, err := squash.Open(io.NewSectionReader(f, base, int64(len(img))), int64(len(img)), nil)
	must(t, err)
	layer := NewSquashLayer(sq).Backed(f, base)
	mnt, _ := mountUnion(t, Options{Lowers: []Layer{layer}})
	return mnt, layer
}
