package fusefs

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/husk-project/husk/squash"
)

// TestSequentialReadahead reads large image files through the mount from
// another process, as a container does: once the reader has gone a
// little way in order, the union has the kernel read ahead of it, no
// further than a window past the file's end, and what is read is the
// file. A reader that stops early, and a file of the upper, get no
// readahead; the union unmounts at the end with nothing left open.
func TestSequentialReadahead(t *testing.T) {
	requireFuse(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	must(t, os.MkdirAll(src, 0755))
	random := make([]byte, 24<<20+4321) // stored uncompressed: spliced
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	text := bytes.Repeat([]byte("compressible text, decoded by stage 1\n"), 500000)
	must(t, os.WriteFile(filepath.Join(src, "random"), random, 0644))
	must(t, os.WriteFile(filepath.Join(src, "text"), text, 0644))
	sqfs := filepath.Join(dir, "img.sqfs")
	tool(t, "mksquashfs", src, sqfs, "-noappend", "-quiet", "-comp", "gzip")
	f, err := os.Open(sqfs)
	must(t, err)
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	must(t, err)
	sq, err := squash.Open(f, st.Size(), nil)
	must(t, err)

	ovl := filepath.Join(dir, "ovl")
	must(t, os.MkdirAll(filepath.Join(ovl, "upper"), 0755))
	must(t, os.MkdirAll(filepath.Join(ovl, "work"), 0755))
	must(t, os.WriteFile(filepath.Join(ovl, "upper", "up"), random, 0644))
	up, work, err := OpenOverlayDir(ovl, nil)
	must(t, err)
	t.Cleanup(func() { up.Close() })
	mnt, u := mountUnion(t, Options{Lowers: []Layer{NewSquashLayer(sq).Backed(f, 0)},
		Upper: up, WorkDir: work})

	// cat reads name through the mount in another process.
	cat := func(name string, args ...string) []byte {
		t.Helper()
		cmd := exec.Command("dd", append([]string{"if=" + filepath.Join(mnt, name),
			"bs=1M", "status=none"}, args...)...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("dd %s: %v", name, err)
		}
		return out
	}
	for _, c := range []struct {
		name string
		want []byte
	}{{"random", random}, {"text", text}} {
		before := u.ra.advised.Load()
		if got := cat(c.name); !bytes.Equal(got, c.want) {
			t.Fatalf("%s: content read through the mount differs", c.name)
		}
		advised := u.ra.advised.Load() - before
		if advised == 0 {
			t.Errorf("%s: no readahead for a sequential reader", c.name)
		}
		if limit := int64(len(c.want)) + readWindow; advised > limit {
			t.Errorf("%s: %d bytes read ahead, more than %d", c.name, advised, limit)
		}
	}
	before := u.ra.advised.Load()
	cat("text", "count=0") // opened, not read
	if got := cat("text", "bs=128k", "count=2", "skip=100"); !bytes.Equal(got,
		text[100<<17:102<<17]) {
		t.Fatal("text: a short read in the middle differs")
	}
	if got := cat("up"); !bytes.Equal(got, random) {
		t.Fatal("up: content read through the mount differs")
	}
	if d := u.ra.advised.Load() - before; d != 0 {
		t.Errorf("%d bytes read ahead for a short reader and an upper file", d)
	}
}
