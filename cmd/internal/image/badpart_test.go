package image

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// A SIF whose ext3 overlay partition holds no ext3 filesystem (the trial's
// `sif add --partfs 2 --parttype 4` of a text file): --writable names it
// and says why, a plain run warns about it and goes on without it, as
// Apptainer does silently.
func TestBadOverlayPartition(t *testing.T) {
	sq := mkSquash(t)
	blob := writeFile(t, []byte("hello\n"))
	s := mkSIF(t, sq, ext3Part(t, blob))
	tooShort := "object 2) is not a valid ext3 image: 6 bytes, too small for an ext3 superblock"

	p, err := NewPlan(Request{Image: s, Writable: true}, quiet)
	if err == nil {
		p.Close()
		t.Fatal("NewPlan --writable succeeded on a bad overlay partition")
	}
	if want := s + ": overlay partition (" + tooShort; err.Error() != want {
		t.Fatalf("error\n got %q\nwant %q", err, want)
	}

	var warnings bytes.Buffer
	log := slog.New(slog.NewTextHandler(&warnings, nil))
	p, err = NewPlan(Request{Image: s}, log)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Lowers) != 1 || p.Upper != nil {
		t.Errorf("plan %s, want the root alone", p.Describe())
	}
	p.Close()
	if !strings.Contains(warnings.String(), tooShort+": ignoring it") {
		t.Errorf("warnings: %q", warnings.String())
	}

	// A squashfs where the descriptor says ext3, and an ext2 (no journal).
	for name, want := range map[string]string{
		"squashfs": "it holds a squashfs filesystem",
		"ext2":     "an ext2 (no journal) or ext4 (features ext3 lacks) filesystem",
	} {
		part := sq
		if name == "ext2" {
			part = mkFs(t, "mkfs.ext2")
		}
		img, err := Open(mkSIF(t, sq, ext3Part(t, part)), false)
		if err != nil {
			t.Fatal(err)
		}
		err = img.BadExt3Overlay()
		img.Close()
		if err == nil || !strings.HasSuffix(err.Error(), want) {
			t.Errorf("%s partition: %v, want %q", name, err, want)
		}
	}
}

// --overlay of a SIF without overlay partitions adds nothing: say so.
func TestOverlaySIFWithoutPartition(t *testing.T) {
	sq := mkSquash(t)
	s, root := mkSIF(t, sq), mkSIF(t, sq)
	var warnings bytes.Buffer
	p, err := NewPlan(Request{Image: root, Overlays: ParseOverlays([]string{s})},
		slog.New(slog.NewTextHandler(&warnings, nil)))
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	if !strings.Contains(warnings.String(), "--overlay "+s+
		": the SIF has no overlay partition, nothing of it is used") {
		t.Errorf("warnings: %q", warnings.String())
	}
}
