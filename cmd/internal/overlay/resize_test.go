package overlay

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/sylabs/sif/v2/pkg/sif"

	"github.com/husk-project/husk/cmd/internal/image"
)

func TestParseSizeMiB(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"100", 100}, {"100M", 100}, {"100MiB", 100}, {"2G", 2048}, {"2g", 2048},
		{"1GB", 1024}, {"1T", 1 << 20}, {"0", 0}, {"-5", 0}, {"1.5G", 0}, {"G", 0}, {"x", 0},
	} {
		got, err := ParseSizeMiB(c.in)
		if c.want == 0 && err == nil || c.want != 0 && (err != nil || got != c.want) {
			t.Errorf("ParseSizeMiB(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
}

func TestResizeBare(t *testing.T) {
	for _, sparse := range []bool{false, true} {
		t.Run("sparse="+strconv.FormatBool(sparse), func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "o.img")
			if err := Create(p, Options{SizeMiB: 64, Sparse: sparse, UID: 1, GID: 1}); err != nil {
				t.Fatal(err)
			}
			res, err := Resize(p, 1024, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.OldSize != 64<<20 || res.NewSize != 1024<<20 || res.GDTBlocksAdded != 3 {
				t.Errorf("result %+v", res)
			}
			st, err := os.Stat(p)
			if err != nil || st.Size() != 1024<<20 {
				t.Fatalf("size %v %v", st.Size(), err)
			}
			allocated := st.Sys().(*syscall.Stat_t).Blocks*512 >= st.Size()
			if allocated == sparse {
				t.Errorf("sparse %v image is allocated=%v after growing", sparse, allocated)
			}
			tool(t, "e2fsck", "-fn", p)
			in, err := Describe(p, nil)
			if err != nil {
				t.Fatal(err)
			}
			if in.Blocks != 1<<20 || in.FSSize != 1<<30 || !in.HasUpper || !in.HasWork ||
				in.State != "clean" || in.Journal == nil || in.Journal.State != "clean" {
				t.Errorf("info after growing: %+v", in)
			}

			for size, want := range map[int64]string{
				100:  "shrinking the overlay from 1024 MiB to 100 MiB is not supported",
				1024: "the overlay is already 1024 MiB",
			} {
				if _, err := Resize(p, size, false, nil); err == nil ||
					!strings.Contains(err.Error(), want) {
					t.Errorf("Resize to %d MiB: %v, want %q", size, err, want)
				}
			}
		})
	}
}

// A resize killed after it extended the file leaves a file system smaller
// than its file: a new size is measured against the file system, any
// size from it up finishes the job, and the file ends up as large as
// asked (a trial saw 11G refused as "shrinking from 19456 MiB" for a 512
// MiB file system, and 19G reported as grown "from 19456 MiB").
func TestResizeAfterInterruptedOne(t *testing.T) {
	p := filepath.Join(t.TempDir(), "o.img")
	if err := Create(p, Options{SizeMiB: 64, Sparse: true, UID: 1, GID: 1}); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, 512<<20); err != nil { // what the killed resize left
		t.Fatal(err)
	}
	if _, err := Resize(p, 32, false, nil); err == nil || !strings.Contains(err.Error(),
		"shrinking the overlay from 64 MiB to 32 MiB") {
		t.Errorf("Resize to 32 MiB: %v", err)
	}
	// The file system's own size only gives the file's extra space back.
	res, err := Resize(p, 64, false, nil)
	if err != nil || !res.Trimmed || res.NewSize != 64<<20 {
		t.Fatalf("Resize to the file system's size: %+v, %v", res, err)
	}
	if st, err := os.Stat(p); err != nil || st.Size() != 64<<20 {
		t.Errorf("file size after trimming: %v %v", st.Size(), err)
	}
	if err := os.Truncate(p, 512<<20); err != nil {
		t.Fatal(err)
	}
	res, err = Resize(p, 128, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.OldSize != 64<<20 || res.NewSize != 128<<20 || res.Trimmed {
		t.Errorf("result %+v", res)
	}
	if st, err := os.Stat(p); err != nil || st.Size() != 128<<20 {
		t.Errorf("file size after: %v %v", st.Size(), err)
	}
	tool(t, "e2fsck", "-fn", p)
}

// overlaySIF makes a SIF with a 64 MiB overlay, plus extra objects after it.
func overlaySIF(t *testing.T, after ...sif.DescriptorInput) string {
	img := mkSIF(t, sif.FsSquash)
	if err := Create(img, Options{SizeMiB: 64, Sparse: true}); err != nil {
		t.Fatal(err)
	}
	if len(after) > 0 {
		fi, err := sif.LoadContainerFromPath(img)
		if err != nil {
			t.Fatal(err)
		}
		for _, di := range after {
			if err := fi.AddObject(di); err != nil {
				t.Fatal(err)
			}
		}
		fi.UnloadContainer()
	}
	return img
}

func TestResizeSIF(t *testing.T) {
	img := overlaySIF(t)
	if _, err := Resize(img, 200, false, nil); err != nil {
		t.Fatal(err)
	}
	d := overlayDescriptor(t, img)
	st, _ := os.Stat(img)
	if d.Size() != 200<<20 || d.Offset()+d.Size() != st.Size() {
		t.Errorf("overlay at %d, %d bytes, file %d bytes", d.Offset(), d.Size(), st.Size())
	}
	h := make([]byte, 128)
	f, _ := os.Open(img)
	f.ReadAt(h, 0)
	f.Close()
	le := binary.LittleEndian
	if end := int64(le.Uint64(h[112:]) + le.Uint64(h[120:])); end != st.Size() {
		t.Errorf("header data ends at %d, file is %d bytes", end, st.Size())
	}
	tool(t, "e2fsck", "-fn", img+"?offset="+strconv.FormatInt(d.Offset(), 10))
	in, err := Describe(img, nil)
	if err != nil {
		t.Fatal(err)
	}
	if in.Kind != "SIF" || in.Size != 200<<20 || in.FSSize != 200<<20 || !in.HasUpper {
		t.Errorf("info: %+v", in)
	}
	// husk's own image code accepts it.
	im, err := image.Open(img, true)
	if err != nil {
		t.Fatal(err)
	}
	im.Close()
}

func TestResizeRefuses(t *testing.T) {
	t.Run("not last", func(t *testing.T) {
		di, err := sif.NewDescriptorInput(sif.DataGeneric, strings.NewReader("after"))
		if err != nil {
			t.Fatal(err)
		}
		img := overlaySIF(t, di)
		before, _ := os.Stat(img)
		_, err = Resize(img, 200, false, nil)
		want := "object 3 (Generic/Raw) lies after it in the file"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Resize: %v, want %q", err, want)
		}
		if after, _ := os.Stat(img); after.Size() != before.Size() {
			t.Errorf("file changed from %d to %d bytes", before.Size(), after.Size())
		}
	})
	t.Run("locked", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "o.img")
		if err := Create(p, Options{SizeMiB: 64, Sparse: true}); err != nil {
			t.Fatal(err)
		}
		im, err := image.Open(p, false)
		if err != nil {
			t.Fatal(err)
		}
		defer im.Close()
		if err := image.Lock(im, *im.Root, false, nil); err != nil {
			t.Fatal(err)
		}
		_, err = Resize(p, 100, false, nil)
		if err == nil || !strings.Contains(err.Error(), "while locking ext3 partition") {
			t.Fatalf("Resize of a locked image: %v", err)
		}
		if st, _ := os.Stat(p); st.Size() != 64<<20 {
			t.Errorf("locked image grew to %d", st.Size())
		}
	})
	t.Run("squashfs", func(t *testing.T) {
		img := mkSIF(t, sif.FsSquash)
		_, err := Resize(img, 100, false, nil)
		if err == nil || !strings.Contains(err.Error(), "has no ext3 overlay partition") {
			t.Fatalf("Resize of a SIF without overlay: %v", err)
		}
	})
}
