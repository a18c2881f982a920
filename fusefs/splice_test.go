package fusefs

import (
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"testing"

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
	sqfs := filepath.Join(dir, "img.sqfs")
	tool(t, "mksquashfs", src, sqfs, "-noappend", "-quiet", "-comp", "gzip")
	img, err := os.ReadFile(sqfs)
	must(t, err)
	const base = 40960 // as a SIF puts its partitions
	sif := filepath.Join(dir, "img.sif")
	must(t, os.WriteFile(sif, append(make([]byte, base), img...), 0644))

	f, err := os.Open(sif)
	must(t, err)
	t.Cleanup(func() { f.Close() })
	sq, err := squash.Open(io.NewSectionReader(f, base, int64(len(img))), int64(len(img)), nil)
	must(t, err)
	layer := NewSquashLayer(sq).Backed(f, base)
	mnt, _ := mountUnion(t, Options{Lowers: []Layer{layer}})

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
