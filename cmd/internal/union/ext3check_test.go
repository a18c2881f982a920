package union

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/husk-project/husk/cmd/internal/image"
)

// TestExt3UpperValidated runs the writable ext3 layer's open path on
// damaged overlays: each is refused with an error naming the problem and
// left byte for byte unchanged (the "mounted" superblock update and the
// creation of upper/work wait for validation). An empty image gets upper/
// and work/ as Apptainer makes them; a good overlay is not written at all.
func TestExt3UpperValidated(t *testing.T) {
	dir := t.TempDir()
	stage := filepath.Join(dir, "stage")
	os.MkdirAll(filepath.Join(stage, "upper", "etc"), 0o755)
	os.MkdirAll(filepath.Join(stage, "work"), 0o755)
	overlay := filepath.Join(dir, "overlay.img")
	run(t, "mkfs.ext3", "-q", "-b", "1024", "-d", stage, overlay, "8M")
	empty := filepath.Join(dir, "empty.img")
	run(t, "mkfs.ext3", "-q", empty, "8M")

	cases := []struct {
		name   string
		base   string
		damage func(t *testing.T, img string)
		want   string // error text; "" for success
		errno  error
	}{
		{"good overlay", overlay, nil, "", nil},
		{"root inode not a directory", overlay, func(t *testing.T, img string) {
			run(t, "debugfs", "-w", "-R", "sif <2> mode 0100644", img)
		}, "root inode", syscall.EIO},
		{"upper not a directory", overlay, func(t *testing.T, img string) {
			run(t, "debugfs", "-w", "-R", "sif /upper mode 0100644", img)
		}, "ext3 overlay /upper", syscall.ENOTDIR},
		{"work not a directory", overlay, func(t *testing.T, img string) {
			run(t, "debugfs", "-w", "-R", "sif /work mode 0100644", img)
		}, "ext3 overlay /work", syscall.ENOTDIR},
		{"upper directory block damaged", overlay, func(t *testing.T, img string) {
			out, err := exec.Command("debugfs", "-R", "bmap /upper 0", img).Output()
			f := strings.Fields(string(out))
			if err != nil || len(f) == 0 {
				t.Fatalf("debugfs bmap /upper 0: %v %s", err, out)
			}
			blk, err := strconv.ParseInt(f[len(f)-1], 10, 64)
			if err != nil {
				t.Fatalf("debugfs bmap /upper 0: %s", out)
			}
			fh, err := os.OpenFile(img, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			fh.WriteAt(bytes.Repeat([]byte{0xff}, 1024), blk*1024)
		}, "ext3 overlay /upper", syscall.EIO},
		{"empty image", empty, nil, "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "o.img")
			b, err := os.ReadFile(tc.base)
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(img, b, 0o644)
			if tc.damage != nil {
				tc.damage(t, img)
			}
			before, _ := os.ReadFile(img)
			fh, err := os.OpenFile(img, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			m := &mounted{log: slog.New(slog.DiscardHandler)}
			bld := builder{files: []*os.File{fh}, m: m}
			l := image.Layer{Kind: image.LayerExt3, File: 0, Path: img,
				Section: image.Section{Size: int64(len(before))}}
			_, _, err = bld.upper(l)
			if cerr := m.close(); cerr != nil {
				t.Errorf("close: %v", cerr)
			}
			after, _ := os.ReadFile(img)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) ||
					!errors.Is(err, tc.errno) {
					t.Fatalf("upper: %v; want an error with %q (%v)", err, tc.want, tc.errno)
				}
				if !bytes.Equal(before, after) {
					t.Error("a refused overlay was changed")
				}
				return
			}
			if err != nil {
				t.Fatalf("upper: %v", err)
			}
			run(t, "e2fsck", "-fn", img)
			if tc.base == overlay {
				if !bytes.Equal(before, after) {
					t.Error("opening and closing a good overlay changed it")
				}
				return
			}
			out, _ := exec.Command("debugfs", "-R", "ls -l /", img).CombinedOutput()
			for _, d := range []string{"upper", "work"} {
				if !strings.Contains(string(out), " "+d+"\n") || !strings.Contains(string(out), "40755") {
					t.Errorf("%s not created as a 0755 directory:\n%s", d, out)
				}
			}
		})
	}
}
