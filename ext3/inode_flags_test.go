package ext3

import (
	"bytes"
	"errors"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// rootInodeOffset returns where inode 2 lives in img, from debugfs imap.
func rootInodeOffset(t *testing.T, img string, bs int64) int64 {
	t.Helper()
	out := debugfs(t, img, "imap <2>")
	m := regexp.MustCompile(`located at block (\d+), offset (0x[0-9a-f]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("debugfs imap <2>:\n%s", out)
	}
	blk, _ := strconv.ParseInt(m[1], 10, 64)
	off, _ := strconv.ParseInt(m[2], 0, 64)
	return blk*bs + off
}

// A root inode with flipped bytes carries ext4-only flags on a file system
// without those features: Open must call it corrupt, not ext4, with one
// "ext3:" prefix, and write nothing.
func TestCorruptRootInodeFlags(t *testing.T) {
	const bs = 1024
	cases := []struct {
		name   string
		damage func(t *testing.T, img string, off int64)
		want   string
	}{
		{"flipped bytes", func(t *testing.T, img string, off int64) {
			in := readRange(t, img, off, 128)
			for i := range in {
				in[i] ^= 0xff
			}
			patch(t, img, off, in)
		}, "extents flag set on a file system without the extents feature"},
		{"extents flag", func(t *testing.T, img string, off int64) {
			// i_flags at 0x20: EXT4_EXTENTS_FL alone.
			patch(t, img, off+0x20, []byte{0, 0, 8, 0})
		}, "extents flag set on a file system without the extents feature"},
		{"inline_data flag", func(t *testing.T, img string, off int64) {
			patch(t, img, off+0x20, []byte{0, 0, 0, 0x10})
		}, "inline_data flag set on a file system without the inline_data feature"},
	}
	base := mkext3(t, 8<<20, "-b", "1024")
	off := rootInodeOffset(t, base, bs)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := copyFile(t, base)
			c.damage(t, img, off)
			before, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			for _, ro := range []bool{true, false} {
				flag := os.O_RDWR
				if ro {
					flag = os.O_RDONLY
				}
				fh, err := os.OpenFile(img, flag, 0)
				if err != nil {
					t.Fatal(err)
				}
				size := int64(len(before))
				f, err := Open(NewSection(fh, 0, size), size, Options{ReadOnly: ro})
				fh.Close()
				if err == nil {
					f.Close()
					t.Fatalf("Open (read-only %v) of a damaged root inode succeeded", ro)
				}
				msg := err.Error()
				want := "ext3: root inode: corrupt inode (inode 2): " + c.want
				if msg != want {
					t.Errorf("Open (read-only %v):\n got %q\nwant %q", ro, msg, want)
				}
				if strings.Count(msg, "ext3:") != 1 {
					t.Errorf("prefix repeated: %q", msg)
				}
				var ce *CorruptError
				if !errors.As(err, &ce) || !errors.Is(err, syscall.EIO) ||
					errors.Is(err, ErrUnsupported) {
					t.Errorf("error %v: want a CorruptError (EIO), not ErrUnsupported", err)
				}
			}
			after, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Error("opening the damaged image changed it")
			}
		})
	}
}
