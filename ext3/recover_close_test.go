package ext3

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// A crash leaves needs_recovery set, with or without committed
// transactions in the journal (a commit checkpoints at once, so a kill
// after it leaves an empty log). A writable open that changes nothing
// must still close the image clean, as the kernel's mount and unmount
// would; a read-only open must not write at all.

// crashedAfterCommit returns an image killed after an fsync: the
// superblock says needs_recovery, the journal is empty.
func crashedAfterCommit(t *testing.T) string {
	t.Helper()
	img := mkfsImage(t, "mkfs.ext3", 8192, "-b", "1024")
	f := crashOpenFile(t, img, nil)
	a, err := f.Create(RootIno, "f", 0o644, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(a.Ino, crashData(7, 5000), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Fsync(a.Ino, false); err != nil {
		t.Fatal(err)
	}
	killed := crashSnapshot(t, img)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return killed
}

// crashedWithTransaction returns an image whose journal holds one
// committed transaction (written by debugfs) and needs_recovery set.
func crashedWithTransaction(t *testing.T) string {
	t.Helper()
	img := mkext3(t, 8<<20)
	data := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(data, bytes.Repeat([]byte{0x5a}, 2048), 0o644); err != nil {
		t.Fatal(err)
	}
	// Two blocks past the journal, in the data area of group 0 (free).
	home := slices.Max(journalPhys(t, img)) + 50
	out := runCmd(t, fmt.Sprintf("jo\njw -b %d-%d %s\njc\n", home, home+1, data),
		"debugfs", "-w", img, "-f", "-")
	if strings.Contains(out, "rror") {
		t.Fatalf("debugfs:\n%s", out)
	}
	setRecoverFlag(t, img)
	return img
}

// dumpe2fsFeatures returns the "Filesystem features:" line of dumpe2fs -h.
func dumpe2fsFeatures(t *testing.T, img string) string {
	t.Helper()
	needTools(t, "dumpe2fs")
	out := runCmd(t, "", "dumpe2fs", "-h", img)
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "Filesystem features:") {
			return l
		}
	}
	t.Fatalf("dumpe2fs -h %s: no features line:\n%s", img, out)
	return ""
}

// describeFile runs Describe on an image file.
func describeFile(t *testing.T, img string) *Summary {
	t.Helper()
	s, err := Describe(imageDevice(t, img, true))
	if err != nil {
		t.Fatalf("Describe %s: %v", img, err)
	}
	return s
}

func TestCrashedCloseWithoutChangesIsClean(t *testing.T) {
	cases := []struct {
		name  string
		image func(t *testing.T) string
	}{
		{"empty journal", crashedAfterCommit},
		{"committed transaction", crashedWithTransaction},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := c.image(t)
			if !strings.Contains(dumpe2fsFeatures(t, img), "needs_recovery") {
				t.Fatal("the crashed image does not say needs_recovery")
			}
			if s := describeFile(t, img); !s.InUse {
				t.Fatalf("Describe of the crashed image: InUse false")
			}
			mc := describeFile(t, img).MountCount

			f := crashOpenFile(t, img, nil)
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if l := dumpe2fsFeatures(t, img); strings.Contains(l, "needs_recovery") {
				t.Errorf("after a clean close: %s", l)
			}
			fsck(t, img)
			if out := debugfs(t, img, "logdump"); !strings.Contains(out,
				"Journal starts at block 0") {
				t.Errorf("journal not empty after a clean close:\n%s", out)
			}
			s := describeFile(t, img)
			if s.InUse || s.NeedsRecovery {
				t.Errorf("Describe after a clean close: InUse %v, NeedsRecovery %v",
					s.InUse, s.NeedsRecovery)
			}
			if s.MountCount != mc+1 {
				t.Errorf("mount count %d after the open, want %d", s.MountCount, mc+1)
			}
		})
	}
}

// A read-only open of a crashed image writes nothing: it either reads the
// image (empty journal) or refuses it (ErrNeedsRecovery).
func TestCrashedReadOnlyOpenWritesNothing(t *testing.T) {
	cases := []struct {
		name  string
		image func(t *testing.T) string
		want  error
	}{
		{"empty journal", crashedAfterCommit, nil},
		{"committed transaction", crashedWithTransaction, ErrNeedsRecovery},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := c.image(t)
			before, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			fh, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			size := int64(len(before))
			f, err := Open(NewSection(fh, 0, size), size, Options{ReadOnly: true})
			if !errors.Is(err, c.want) {
				t.Fatalf("read-only Open: %v, want %v", err, c.want)
			}
			if err == nil {
				if _, err := f.Lookup(RootIno, "lost+found"); err != nil {
					t.Errorf("lookup lost+found: %v", err)
				}
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
			}
			after, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Error("a read-only open changed the image")
			}
		})
	}
}

// TestIdleCommit: what was written and then left alone is committed once
// the file system has been quiet for IdleCommit, without an fsync (the
// kernel does not pass sync(1) on to a FUSE server); a copy of the image
// taken then, as a crash would leave it, holds the file after replay.
// Turned off, the same copy holds nothing until the next CommitInterval.
func TestIdleCommit(t *testing.T) {
	for _, tc := range []struct {
		name string
		idle time.Duration
		want bool
	}{
		{"on", 50 * time.Millisecond, true},
		{"off", -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := mkext3(t, 16<<20)
			dev, size := imageDevice(t, img, false)
			f, err := Open(dev, size, Options{CommitInterval: time.Hour, IdleCommit: tc.idle})
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			// A burst of changes, each within IdleCommit of the last.
			for i := range 5 {
				a, err := f.Create(RootIno, fmt.Sprintf("f%d", i), 0o644, 0, 0)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := f.WriteAt(a.Ino, []byte("written, then sync(1)"), 0); err != nil {
					t.Fatal(err)
				}
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(500 * time.Millisecond)
			crashed := crashCopy(t, img, filepath.Join(t.TempDir(), "crashed.img"))
			g := openImage(t, crashed, false)
			defer g.Close()
			_, err = g.Lookup(RootIno, "f4")
			if got := err == nil; got != tc.want {
				t.Fatalf("f4 in the image after the quiet spell: %v (%v), want %v", got, err,
					tc.want)
			}
			if tc.want {
				buf := make([]byte, 64)
				a, _ := g.Lookup(RootIno, "f4")
				n, _ := g.ReadAt(a.Ino, buf, 0)
				if string(buf[:n]) != "written, then sync(1)" {
					t.Errorf("f4 holds %q", buf[:n])
				}
			}
		})
	}
}
