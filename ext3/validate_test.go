package ext3

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// overlayImage makes a 64 MiB, 1 KiB-block overlay image like
// `apptainer overlay create` (mkfs.ext3 -d with upper/ and work/), writes
// a few files through husk and checks it with e2fsck.
func overlayImage(t *testing.T) string {
	t.Helper()
	stage := t.TempDir()
	for _, d := range []string{"upper", "work"} {
		if err := os.Mkdir(filepath.Join(stage, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	img := mkext3(t, 64<<20, "-b", "1024", "-d", stage)
	f := openImage(t, img, false)
	up, err := f.Lookup(RootIno, "upper")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		a, err := f.Create(up.Ino, fmt.Sprintf("f%d", i), 0o644, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(a.Ino, bytes.Repeat([]byte{byte(i)}, 20000), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	fsck(t, img)
	return img
}

// group0 returns group 0's block bitmap, inode bitmap and inode table
// block as dumpe2fs reports them.
func group0(t *testing.T, img string) (bb, ib, it int64) {
	t.Helper()
	needTools(t, "dumpe2fs")
	out, err := runOut("dumpe2fs", img)
	if err != nil {
		t.Fatalf("dumpe2fs: %v\n%s", err, out)
	}
	_, rest, ok := strings.Cut(string(out), "Group 0:")
	if !ok {
		t.Fatalf("dumpe2fs: no group 0\n%s", out)
	}
	field := func(name string) int64 {
		_, s, ok := strings.Cut(rest, name+" at ")
		var v int64
		if !ok {
			t.Fatalf("dumpe2fs: no %q in group 0", name)
		}
		fmt.Sscan(strings.TrimRight(strings.Fields(s)[0], ","), &v)
		return v
	}
	return field("Block bitmap"), field("Inode bitmap"), field("Inode table")
}

func flipBytes(t *testing.T, img string, off int64, n int) {
	t.Helper()
	fh, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	b := make([]byte, n)
	fh.ReadAt(b, off)
	for i := range b {
		b[i] ^= 0xff
	}
	if _, err := fh.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedBitmapRefused damages group 0's bitmaps so that metadata
// reads as free, then writes until an error: husk must refuse the group
// with a CorruptError (EIO) naming it, and never put data over the
// metadata (e2fsck then finds only the bitmap damage, no illegal blocks).
func TestDamagedBitmapRefused(t *testing.T) {
	base := overlayImage(t)
	bb, ib, it := group0(t, base)
	const bs = 1024
	cases := []struct {
		name   string
		off    int64 // byte to damage
		n      int
		detail string
	}{
		// Bits 32..63: blocks 33..64, reserved GDT blocks (resize inode).
		{"reserved GDT", bb*bs + 4, 4, "superblock or GDT block 33"},
		{"inode table", bb*bs + (it-1)/8 + 8, 4, "inode table block"},
		{"reserved inodes", ib * bs, 1, "reserved inode 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img := copyFile(t, base)
			flipBytes(t, img, tc.off, tc.n)
			damaged, _ := os.ReadFile(img)
			f := openImage(t, img, false)
			up, err := f.Lookup(RootIno, "upper")
			if err != nil {
				t.Fatal(err)
			}
			err = writeUntilError(f, up.Ino, 200<<20)
			var ce *CorruptError
			if !errors.Is(err, syscall.EIO) || !errors.As(err, &ce) {
				t.Fatalf("writing: %v; want a CorruptError (EIO)", err)
			}
			for _, want := range []string{"group 0", tc.detail, "e2fsck"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
			f.Close()
			after, _ := os.ReadFile(img)
			// Group 0's metadata (past the primary superblock and GDT)
			// and bitmaps are untouched.
			for _, r := range [][2]int64{{3, 259}, {bb, bb + 1}, {ib, ib + 1}, {it, it + 256}} {
				if !bytes.Equal(damaged[r[0]*bs:r[1]*bs], after[r[0]*bs:r[1]*bs]) {
					t.Errorf("blocks %d-%d changed", r[0], r[1]-1)
				}
			}
			out, _ := runOut("e2fsck", "-fn", img)
			for _, bad := range []string{"Resize inode not valid", "Illegal block",
				"multiply-claimed", "bad mode", "Root inode"} {
				if strings.Contains(string(out), bad) {
					t.Errorf("e2fsck reports %q:\n%s", bad, out)
				}
			}
		})
	}
}

// TestLiveInodeMarkedFree clears the inode bitmap bit of a file in use,
// as a damaged bitmap block would, then creates a file next to it: husk
// must refuse the group with a CorruptError naming the inode rather than
// make the new file over the old one, whose data stays; the image is then
// clean (the allocation mended the bit). Before that, on the undamaged image, a number
// freed by a delete and taken again at once is not mistaken for damage.
func TestLiveInodeMarkedFree(t *testing.T) {
	img := overlayImage(t)
	f := openImage(t, img, false)
	up, err := f.Lookup(RootIno, "upper")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint32]int{}
	for i := range 20 {
		a, err := f.Create(up.Ino, "tmp", 0o644, 0, 0)
		if err != nil {
			t.Fatalf("create %d on the undamaged image: %v", i, err)
		}
		seen[a.Ino]++
		if err := f.Unlink(up.Ino, "tmp"); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) == 20 {
		t.Errorf("no inode number was reused: %v", seen)
	}
	victim, err := f.Lookup(up.Ino, "f1")
	if err != nil {
		t.Fatal(err)
	}
	ipg := f.sb.InodesPerGroup
	g := (victim.Ino - 1) / ipg
	bitmap := int64(f.groups[g].desc.InodeBitmap) * int64(f.bs)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	fsck(t, img)
	if (up.Ino-1)/ipg != g {
		t.Fatalf("/upper (inode %d) and f1 (inode %d) are in different groups", up.Ino,
			victim.Ino)
	}
	fh, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	bit := (victim.Ino - 1) % ipg
	b := []byte{0}
	fh.ReadAt(b, bitmap+int64(bit/8))
	b[0] &^= 1 << (bit % 8)
	if _, err := fh.WriteAt(b, bitmap+int64(bit/8)); err != nil {
		t.Fatal(err)
	}
	fh.Close()

	f = openImage(t, img, false)
	var ce *CorruptError
	for i := 0; ; i++ {
		a, err := f.Create(up.Ino, fmt.Sprintf("new%d", i), 0o644, 0, 0)
		if err == nil && a.Ino != victim.Ino && i < int(ipg) {
			continue // a free number below the cleared bit
		}
		if !errors.Is(err, syscall.EIO) || !errors.As(err, &ce) {
			t.Fatalf("create new%d (inode %d): %v; want a CorruptError (EIO)", i, a.Ino,
				err)
		}
		break
	}
	for _, want := range []string{fmt.Sprintf("inode %d is marked free", victim.Ino),
		fmt.Sprintf("group %d", g), "e2fsck"} {
		if !strings.Contains(ce.Error(), want) {
			t.Errorf("error %q does not say %q", ce, want)
		}
	}
	got := make([]byte, 20000)
	if n, err := f.ReadAt(victim.Ino, got, 0); err != nil || n != len(got) ||
		!bytes.Equal(got, bytes.Repeat([]byte{1}, 20000)) {
		t.Errorf("f1 after the refused create: %d bytes, %v", n, err)
	}
	// Later files and directories go to other groups.
	for _, mk := range []func() (Attr, error){
		func() (Attr, error) { return f.Create(up.Ino, "later", 0o644, 0, 0) },
		func() (Attr, error) { return f.Mkdir(up.Ino, "laterdir", 0o755, 0, 0) },
	} {
		a, err := mk()
		if err != nil || (a.Ino-1)/ipg == g {
			t.Errorf("after the refused group: inode %d, %v; want one in another group",
				a.Ino, err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// The allocation set the lost bit again and gave the count back.
	fsck(t, img)
}

// writeUntilError creates files in dir and fills them until an error.
func writeUntilError(f *FS, dir uint32, limit int) error {
	chunk := bytes.Repeat([]byte{0xa5}, 1<<20)
	total := 0
	for n := 0; total < limit; n++ {
		a, err := f.Create(dir, fmt.Sprintf("big%d", n), 0o644, 1000, 1000)
		if err != nil {
			return err
		}
		for off := int64(0); off < 16<<20 && total < limit; off += int64(len(chunk)) {
			if _, err := f.WriteAt(a.Ino, chunk, off); err != nil {
				return err
			}
			total += len(chunk)
		}
	}
	return errors.New("wrote everything")
}

// TestReservedBlock checks the allocator's per-allocation range test
// against dumpe2fs and the journal inode's block list.
func TestReservedBlock(t *testing.T) {
	img := overlayImage(t)
	bb, ib, it := group0(t, img)
	f := openImage(t, img, true)
	defer f.Close()
	jp := journalPhys(t, img)
	var data uint32
	out := strings.Fields(debugfs(t, img, "bmap /upper/f1 0"))
	fmt.Sscan(out[len(out)-1], &data)
	itEnd := uint32(it) + f.itBlocks
	want := map[uint32]bool{1: true, 2: true, 3: true, 258: true,
		uint32(bb): true, uint32(ib): true, uint32(it): true, itEnd - 1: true,
		jp[0]: true, jp[len(jp)/2]: true, slices.Max(jp): true,
		data: false,
	}
	if data == 0 {
		t.Fatal("debugfs bmap: no data block for /upper/f1")
	}
	for nr, w := range want {
		if got := f.reservedBlock(nr); got != w {
			t.Errorf("reservedBlock(%d) = %v, want %v", nr, got, w)
		}
	}
}

// TestOpenWritesNothing: opening writable and only reading, or opening an
// image that fails validation, leaves every byte as it was; the first
// change marks the superblock in use (needs_recovery, mount count).
func TestOpenWritesNothing(t *testing.T) {
	base := overlayImage(t)
	t.Run("read only use", func(t *testing.T) {
		img := copyFile(t, base)
		before, _ := os.ReadFile(img)
		f := openImage(t, img, false)
		up, err := f.Lookup(RootIno, "upper")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.ReadDir(up.Ino); err != nil {
			t.Fatal(err)
		}
		a, _ := f.Lookup(up.Ino, "f1")
		if _, err := f.ReadAt(a.Ino, make([]byte, 100), 0); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if after, _ := os.ReadFile(img); !bytes.Equal(before, after) {
			t.Error("a read-only use changed the image")
		}
	})
	t.Run("first change marks the superblock", func(t *testing.T) {
		img := copyFile(t, base)
		sb0 := readRange(t, img, extSBOff, 1024)
		f := openImage(t, img, false)
		if !bytes.Equal(sb0, readRange(t, img, extSBOff, 1024)) {
			t.Fatal("Open wrote the superblock")
		}
		if _, err := f.Mkdir(RootIno, "d", 0o755, 0, 0); err != nil {
			t.Fatal(err)
		}
		sb := readRange(t, img, extSBOff, 1024)
		if binary.LittleEndian.Uint32(sb[extSBIncompat:])&extIncompatRecov == 0 {
			t.Error("needs_recovery not on disk after the first change")
		}
		if c0, c := binary.LittleEndian.Uint16(sb0[0x34:]),
			binary.LittleEndian.Uint16(sb[0x34:]); c != c0+1 {
			t.Errorf("mount count %d, want %d", c, c0+1)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		fsck(t, img)
	})
	t.Run("root not a directory", func(t *testing.T) {
		img := copyFile(t, base)
		debugfsW(t, img, "sif <2> mode 0100644")
		before, _ := os.ReadFile(img)
		fh, err := os.OpenFile(img, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		_, err = Open(NewSection(fh, 0, int64(len(before))), int64(len(before)), Options{})
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.Inode != RootIno {
			t.Fatalf("Open: %v; want a CorruptError for the root inode", err)
		}
		if after, _ := os.ReadFile(img); !bytes.Equal(before, after) {
			t.Error("a refused Open changed the image")
		}
	})
}

func debugfsW(t *testing.T, img, req string) {
	t.Helper()
	out, err := runOut("debugfs", "-w", "-R", req, img)
	if err != nil || strings.Contains(string(out), "rror") {
		t.Fatalf("debugfs -w -R %q: %v\n%s", req, err, out)
	}
}

// TestReplayValidatedFirst: a journal needing recovery is replayed only
// after the superblock and group descriptors validated, and not at all
// when a transaction targets a block outside the file system: Open fails
// and the image is unchanged.
func TestReplayValidatedFirst(t *testing.T) {
	base := mkext3(t, 8<<20)
	const bs = 1024
	data := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(data, bytes.Repeat([]byte{0x5a}, 2*bs), 0o644); err != nil {
		t.Fatal(err)
	}
	jp := journalPhys(t, base)
	home := slices.Max(jp) + 50
	out := runCmd(t, fmt.Sprintf("jo\njw -b %d-%d %s\njc\n", home, home+1, data),
		"debugfs", "-w", base, "-f", "-")
	if strings.Contains(out, "rror") {
		t.Fatalf("debugfs:\n%s", out)
	}
	setRecoverFlag(t, base)
	cases := []struct {
		name   string
		damage func(t *testing.T, img string)
		want   error
	}{
		{"target out of range", func(t *testing.T, img string) {
			// First tag of the descriptor in journal block 1: block
			// number (big endian) right after the 12-byte header.
			desc := int64(jp[1]) * bs
			hdr := readRange(t, img, desc, 16)
			if binary.BigEndian.Uint32(hdr) != jbdMagic || binary.BigEndian.Uint32(hdr[4:]) != 1 {
				t.Fatalf("journal block 1 is not a descriptor: % x", hdr)
			}
			patch(t, img, desc+12, binary.BigEndian.AppendUint32(nil, 1<<30))
		}, ErrJournalCorrupt},
		{"target inside the journal", func(t *testing.T, img string) {
			patch(t, img, int64(jp[1])*bs+12, binary.BigEndian.AppendUint32(nil, jp[5]))
		}, ErrJournalCorrupt},
		{"target the journal's own indirect block", func(t *testing.T, img string) {
			patch(t, img, int64(jp[1])*bs+12,
				binary.BigEndian.AppendUint32(nil, journalIndBlock(t, img)))
		}, ErrJournalCorrupt},
		{"bad group descriptor", func(t *testing.T, img string) {
			// Group 0's block bitmap pointer (GDT in block 2).
			patch(t, img, 2*bs, binary.LittleEndian.AppendUint32(nil, 1<<30))
		}, syscall.EIO},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img := copyFile(t, base)
			tc.damage(t, img)
			before, _ := os.ReadFile(img)
			fh, err := os.OpenFile(img, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			_, err = Open(NewSection(fh, 0, int64(len(before))), int64(len(before)), Options{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open: %v; want %v", err, tc.want)
			}
			if after, _ := os.ReadFile(img); !bytes.Equal(before, after) {
				t.Error("a refused Open changed the image")
			}
		})
	}
	// The undamaged journal replays (so the cases above fail for the
	// damage, not for the journal).
	img := copyFile(t, base)
	f := openImage(t, img, false)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readRange(t, img, int64(home)*bs, bs); got[0] != 0x5a {
		t.Error("journal not replayed")
	}
}

// journalIndBlock returns the journal inode's first indirect block, as
// debugfs's stat of inode 8 lists it ("(IND):798").
func journalIndBlock(t *testing.T, img string) uint32 {
	t.Helper()
	out, err := runOut("debugfs", "-R", "stat <8>", img)
	m := regexp.MustCompile(`\(IND\):(\d+)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("debugfs stat <8>: %v\n%s", err, out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return uint32(n)
}

func patch(t *testing.T, img string, off int64, b []byte) {
	t.Helper()
	fh, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// A directory entry that names a free inode is damage (ext4: "deleted
// inode referenced"), not a missing name: ENOENT would end a listing
// there as if the directory had gone, and rm -rf or cp -r would quietly
// miss the rest.
func TestEntryToFreeInode(t *testing.T) {
	img := mkext3(t, 8<<20)
	debugfsW(t, img, "mkdir /d")
	debugfsW(t, img, "write /dev/null /d/f")
	debugfsW(t, img, "ln <1500> /d/ghost") // inode 1500 is free
	f := openImage(t, img, true)
	defer f.Close()
	d, err := f.Lookup(RootIno, "d")
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Lookup(d.Ino, "ghost")
	if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "free inode 1500") {
		t.Errorf("lookup of an entry naming a free inode: %v, want EIO naming it", err)
	}
	if _, err := f.Lookup(d.Ino, "f"); err != nil {
		t.Errorf("lookup f: %v", err)
	}
	if _, err := f.Lookup(d.Ino, "nope"); err != syscall.ENOENT {
		t.Errorf("lookup of a missing name: %v, want ENOENT", err)
	}
}
