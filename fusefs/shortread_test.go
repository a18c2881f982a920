package fusefs

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/husk-project/husk/squash"
)

// TestCorruptBlockFailsRead serves an image whose file has a good first
// block and a corrupt second one. A read spanning both must fail with
// EIO: handing the kernel the good part alone is a short read, which it
// takes for the end of the file, so cat would stop there with no error
// and the file would shrink to one block for as long as it is cached.
func TestCorruptBlockFailsRead(t *testing.T) {
	requireFuse(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	must(t, os.MkdirAll(src, 0755))
	// Block 0 is random, so mksquashfs stores it as is and block 1
	// starts right after it; blocks 1-3 are text and compressed.
	const block = 128 << 10
	data := make([]byte, block, 4*block)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	for len(data) < 4*block {
		data = append(data, "compressible text, line after line\n"...)
	}
	data = data[:4*block]
	must(t, os.WriteFile(filepath.Join(src, "f"), data, 0644))
	sqfs := filepath.Join(dir, "img.sqfs")
	tool(t, "mksquashfs", src, sqfs, "-noappend", "-quiet", "-comp", "gzip",
		"-no-fragments")
	img, err := os.ReadFile(sqfs)
	must(t, err)
	const superblockSize = 96
	img[superblockSize+block+40] ^= 0xff // inside block 1's zlib stream
	must(t, os.WriteFile(sqfs, img, 0644))

	f, err := os.Open(sqfs)
	must(t, err)
	t.Cleanup(func() { f.Close() })
	sq, err := squash.Open(f, int64(len(img)), nil)
	must(t, err)
	mnt, _ := mountUnion(t, Options{Lowers: []Layer{NewSquashLayer(sq)},
		OnLayerError: func(*LayerError) bool { return true }})

	path := filepath.Join(mnt, "f")
	h, err := os.Open(path)
	must(t, err)
	defer h.Close()
	buf := make([]byte, block)
	if _, err := h.ReadAt(buf, block/2); !errors.Is(err, syscall.EIO) {
		t.Errorf("read across the good and the corrupt block: err %v, want EIO", err)
	}
	if _, err := io.ReadAll(h); !errors.Is(err, syscall.EIO) {
		t.Errorf("reading the whole file: err %v, want EIO", err)
	}
	st, err := os.Stat(path)
	must(t, err)
	if st.Size() != int64(len(data)) {
		t.Errorf("size after the failed reads %d, want %d", st.Size(), len(data))
	}
	got := make([]byte, block)
	if _, err := h.ReadAt(got, 0); err != nil || !bytes.Equal(got, data[:block]) {
		t.Errorf("the good block alone: err %v, content equal %v", err,
			bytes.Equal(got, data[:block]))
	}
}
