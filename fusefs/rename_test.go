package fusefs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestRenameMatrix(t *testing.T) {
	type tc struct {
		name     string
		lower    []string
		upper    []string
		from, to string
		flags    uint
		err      error
		want     []string // the union afterwards
	}
	cases := []tc{
		{name: "lower file", lower: []string{"a=1"}, from: "a", to: "b",
			want: []string{"b=1"}},
		{name: "upper file", upper: []string{"a=1"}, from: "a", to: "b",
			want: []string{"b=1"}},
		{name: "file over whiteout", lower: []string{"a=1", "b=old"},
			upper: []string{"wh:b"}, from: "a", to: "b", want: []string{"b=1"}},
		{name: "file over lower file", lower: []string{"a=1", "b=2"}, from: "a", to: "b",
			want: []string{"b=1"}},
		{name: "lower dir keeps children", lower: []string{"d/x=1", "d/s/y=2", "d/l->x"},
			from: "d", to: "e", want: []string{"e/", "e/x=1", "e/s/", "e/s/y=2", "e/l->x"}},
		{name: "merged dir", lower: []string{"d/x=1"}, upper: []string{"d/y=2"},
			from: "d", to: "e", want: []string{"e/", "e/x=1", "e/y=2"}},
		{name: "dir over empty lower dir", lower: []string{"d/x=1", "e/"},
			from: "d", to: "e", want: []string{"e/", "e/x=1"}},
		{name: "dir over whiteout of lower dir", lower: []string{"d/x=1", "e/old=1"},
			upper: []string{"wh:e"}, from: "d", to: "e", want: []string{"e/", "e/x=1"}},
		{name: "upper dir over whiteout", lower: []string{"e/old=1"},
			upper: []string{"d/x=1", "wh:e"}, from: "d", to: "e",
			want: []string{"e/", "e/x=1"}},
		{name: "dir over nonempty dir", lower: []string{"d/x=1", "e/y=1"},
			from: "d", to: "e", err: unix.ENOTEMPTY,
			want: []string{"d/", "d/x=1", "e/", "e/y=1"}},
		{name: "noreplace exists", lower: []string{"a=1", "b=2"}, from: "a", to: "b",
			flags: unix.RENAME_NOREPLACE, err: unix.EEXIST, want: []string{"a=1", "b=2"}},
		{name: "noreplace over whiteout", lower: []string{"a=1", "b=2"},
			upper: []string{"wh:b"}, from: "a", to: "b", flags: unix.RENAME_NOREPLACE,
			want: []string{"b=1"}},
		{name: "exchange files", lower: []string{"a=1"}, upper: []string{"b=2"},
			from: "a", to: "b", flags: unix.RENAME_EXCHANGE, want: []string{"a=2", "b=1"}},
		{name: "exchange dirs", lower: []string{"d/x=1", "e/y=2"},
			from: "d", to: "e", flags: unix.RENAME_EXCHANGE,
			want: []string{"d/", "d/y=2", "e/", "e/x=1"}},
		{name: "exchange missing", lower: []string{"a=1"}, from: "a", to: "b",
			flags: unix.RENAME_EXCHANGE, err: unix.ENOENT, want: []string{"a=1"}},
		{name: "into subdir", lower: []string{"a=1", "s/t/"}, from: "a", to: "s/t/a",
			want: []string{"s/", "s/t/", "s/t/a=1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, 1)
			tree(t, f.lowers[0], c.lower...)
			tree(t, f.upper(), c.upper...)
			mnt, u := f.mount()
			err := unix.Renameat2(unix.AT_FDCWD, filepath.Join(mnt, c.from),
				unix.AT_FDCWD, filepath.Join(mnt, c.to), c.flags)
			if err != c.err && !(c.err == nil && err == nil) {
				t.Fatalf("rename: %v, want %v", err, c.err)
			}
			wantListing(t, mnt, c.want...)
			must(t, u.Unmount())
			mnt2, _ := f.mount()
			wantListing(t, mnt2, c.want...)
		})
	}
}

// An upper-only rename leaves nothing behind in the upper.
func TestRenameUpperOnlyNoWhiteout(t *testing.T) {
	f := newFixture(t, 1)
	tree(t, f.lowers[0], "other=1")
	mnt, _ := f.mount()
	tree(t, mnt, "d/x=1", "a=1")
	must(t, os.Rename(filepath.Join(mnt, "a"), filepath.Join(mnt, "b")))
	must(t, os.Rename(filepath.Join(mnt, "d"), filepath.Join(mnt, "e")))
	wantListing(t, f.upper(), "b=1", "e/", "e/x=1")
}

// A lower directory renamed away leaves a whiteout; the new one is opaque.
func TestRenameLowerDirMarks(t *testing.T) {
	f := newFixture(t, 1)
	tree(t, f.lowers[0], "d/x=1")
	mnt, _ := f.mount()
	must(t, os.Rename(filepath.Join(mnt, "d"), filepath.Join(mnt, "e")))
	st := stat(t, filepath.Join(f.upper(), "d"))
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("upper d: mode %o, want a whiteout", st.Mode)
	}
	v := make([]byte, 8)
	n, err := unix.Getxattr(filepath.Join(f.upper(), "e"), "trusted.overlay.opaque", v)
	if err != nil || string(v[:n]) != "y" {
		t.Errorf("upper e not opaque: %q %v", v[:n], err)
	}
	if !exists(filepath.Join(f.upper(), "e/x")) {
		t.Error("upper e/x missing")
	}
}

// TestRenameLowerDirTooBig renames an image directory that holds more
// than the overlay has room for: ENOSPC before anything is copied (a
// copy that stopped half way would stay in the upper, where the user
// cannot free it), the directory as it was, and a clean file system.
func TestRenameLowerDirTooBig(t *testing.T) {
	var spec []string
	spec = append(spec, "big/", "big/sub/")
	for i := range 5 {
		spec = append(spec, "big/sub/f"+itoa(i)+"="+strings.Repeat("x", 8<<20))
	}
	f := newImageFixture(t, append(spec, "small/", "small/a=1")...)
	mnt, stop := f.mount()
	var before, after unix.Statfs_t
	must(t, unix.Statfs(mnt, &before))
	err := os.Rename(filepath.Join(mnt, "big"), filepath.Join(mnt, "big2"))
	if !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("rename of a 40 MiB directory into a 32 MiB overlay: %v, want ENOSPC", err)
	}
	must(t, unix.Statfs(mnt, &after))
	if used := int64(before.Bfree-after.Bfree) * before.Bsize; used > 64<<10 {
		t.Errorf("the failed rename left %d bytes used", used)
	}
	ents, err := os.ReadDir(filepath.Join(mnt, "big", "sub"))
	if err != nil || len(ents) != 5 {
		t.Errorf("big/sub after: %d names, %v", len(ents), err)
	}
	// One that fits moves.
	must(t, os.Rename(filepath.Join(mnt, "small"), filepath.Join(mnt, "small2")))
	wantListingIn(t, filepath.Join(mnt, "small2"), "a=1")
	stop()
	f.fsck()
}

// Renaming an image directory copies its files up, and the copies keep
// the originals' times, change time included: tar, having read the
// directory before, said every file "changed as we read it" when the
// kernel's cached attributes gave way to the copies' (a trial). A real
// change after the copy still sets the change time.
func TestRenameLowerDirKeepsTimes(t *testing.T) {
	f := newImageFixture(t, "d/", "d/sub/", "d/sub/x=1", "d/y=2")
	mnt, stop := f.mount()
	before := map[string]*syscall.Stat_t{}
	for _, p := range []string{"d/sub", "d/sub/x", "d/y"} {
		before[p] = stat(t, filepath.Join(mnt, p))
	}
	time.Sleep(20 * time.Millisecond) // so a new ctime differs
	must(t, os.Rename(filepath.Join(mnt, "d"), filepath.Join(mnt, "e")))
	// A new mount: this kernel still holds the originals' attributes.
	stop()
	mnt, _ = f.mount()
	for p, b := range before {
		a := stat(t, filepath.Join(mnt, "e"+strings.TrimPrefix(p, "d")))
		if a.Ctim != b.Ctim || a.Mtim != b.Mtim {
			t.Errorf("%s: ctime %v mtime %v after the rename, was %v %v", p,
				a.Ctim, a.Mtim, b.Ctim, b.Mtim)
		}
	}
	x := filepath.Join(mnt, "e/sub/x")
	must(t, os.Chmod(x, 0o600))
	if a := stat(t, x); a.Ctim == before["d/sub/x"].Ctim {
		t.Error("chmod after the copy did not set the change time")
	}
	f.fsck()
}
