package fusefs

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestSequentialReadahead reads large image files through the mount from
// another process, as a container does: once the reader has gone a
// little way in order, the union has the kernel read ahead of it, no
// further than a window past the file's end, and what is read is the
// file. A reader that stops early, one through O_DIRECT and a file of the
// upper get no readahead; the union unmounts at the end with nothing left open.
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
	wide := bytes.Repeat([]byte("a long file for a reader that jumps\n"), 3<<20) // 108 MiB
	must(t, os.WriteFile(filepath.Join(src, "wide"), wide, 0644))
	lower := squashLayer(t, src, dir)

	ovl := filepath.Join(dir, "ovl")
	must(t, os.MkdirAll(filepath.Join(ovl, "upper"), 0755))
	must(t, os.MkdirAll(filepath.Join(ovl, "work"), 0755))
	must(t, os.WriteFile(filepath.Join(ovl, "upper", "up"), random, 0644))
	up, work, err := OpenOverlayDir(ovl, nil)
	must(t, err)
	t.Cleanup(func() { up.Close() })
	mnt, u := mountUnion(t, Options{Lowers: []Layer{lower},
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
	if got := cat("random", "iflag=direct"); !bytes.Equal(got, random) {
		t.Fatal("random: content read through O_DIRECT differs")
	}
	if d := u.ra.advised.Load() - before; d != 0 {
		t.Errorf("%d bytes read ahead for an O_DIRECT reader", d)
	}
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

	// A reader that reads 2 MiB, then 4 KiB every 16.5 MiB, one handle:
	// its first run is followed, the jumps are not (they once pulled in
	// the whole file, a window at a time).
	before = u.ra.advised.Load()
	cmd := exec.Command(os.Args[0], "-test.run=^TestStridedReader$")
	cmd.Env = append(os.Environ(), "HUSK_TEST_STRIDED="+filepath.Join(mnt, "wide"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("strided reader: %v\n%s", err, out)
	}
	if d := u.ra.advised.Load() - before; d > 2*readWindow {
		t.Errorf("%d MiB read ahead for a reader that read 2 MiB and jumped", d>>20)
	}
}

// TestStridedReader is the reader of TestSequentialReadahead that jumps,
// run in a process of its own (the union does not follow its own reads).
func TestStridedReader(t *testing.T) {
	name := os.Getenv("HUSK_TEST_STRIDED")
	if name == "" {
		return // only as TestSequentialReadahead's child
	}
	f, err := os.Open(name)
	must(t, err)
	defer f.Close()
	st, err := f.Stat()
	must(t, err)
	buf := make([]byte, 2<<20)
	if _, err := f.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	for off := int64(35 << 19); off+4096 < st.Size(); off += 33 << 19 {
		time.Sleep(50 * time.Millisecond) // the advice before runs out
		if _, err := f.ReadAt(buf[:4096], off); err != nil {
			t.Fatal(err)
		}
	}
}
