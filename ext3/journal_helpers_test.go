package ext3

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Helpers shared by the journal tests. They read just enough of an ext
// image to find the journal (through debugfs, the oracle) so the journal
// tests do not depend on the rest of the package.

// needTool fails the test when an external program is missing.
func needTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: install %s", name, pkg)
	}
	return p
}

// runCmd runs a command and returns its combined output, failing the
// test on a non-zero exit.
func runCmd(t testing.TB, stdin string, name string, args ...string) string {
	t.Helper()
	out, code := runCmdCode(t, stdin, name, args...)
	if code != 0 {
		t.Fatalf("%s %s: exit %d\n%s", name, strings.Join(args, " "), code, out)
	}
	return out
}

// runCmdCode runs a command and returns its output and exit code.
func runCmdCode(t testing.TB, stdin string, name string, args ...string) (string, int) {
	t.Helper()
	needTool(t, name, "e2fsprogs")
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return string(out), 0
}

// mkfsImage creates an image of sizeKB with the given mkfs program and
// arguments and returns its path.
func mkfsImage(t testing.TB, mkfs string, sizeKB int, args ...string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "fs.img")
	args = append(append([]string{"-q", "-F"}, args...), img, strconv.Itoa(sizeKB)+"k")
	runCmd(t, "", mkfs, args...)
	return img
}

// imageBlockSize reads s_log_block_size from the ext superblock.
func imageBlockSize(t testing.TB, img string) int {
	t.Helper()
	b := readRange(t, img, 1024, 1024)
	return 1024 << binary.LittleEndian.Uint32(b[0x18:])
}

// journalPhys lists the fs blocks of inode 8 in journal block order,
// from the BLOCKS section of debugfs's "stat <8>": entries such as
// "(0-11):594-605" or "(12):607", skipping (IND), (DIND), (ETB0) ...
func journalPhys(t testing.TB, img string) []uint32 {
	t.Helper()
	// -c: catastrophic mode, which skips bitmaps that may be stale before
	// the journal is replayed.
	out := runCmd(t, "", "debugfs", "-c", "-R", "stat <8>", img)
	_, list, ok := strings.Cut(out, "BLOCKS:")
	if !ok {
		_, list, ok = strings.Cut(out, "EXTENTS:")
	}
	if !ok {
		t.Fatalf("debugfs stat <8> of %s has no BLOCKS:\n%s", img, out)
	}
	list, _, _ = strings.Cut(list, "TOTAL:")
	var phys []uint32
	for _, e := range strings.Split(list, ",") {
		logical, physical, ok := strings.Cut(strings.TrimSpace(e), "):")
		if !ok || !strings.HasPrefix(logical, "(") {
			continue
		}
		lo, hi, err1 := parseRange(logical[1:])
		plo, _, err2 := parseRange(physical)
		if err1 != nil || err2 != nil {
			continue // (IND), (ETB0) and other metadata blocks
		}
		if int(lo) != len(phys) {
			t.Fatalf("journal of %s: block map has a hole at %d", img, len(phys))
		}
		for i := range hi - lo + 1 {
			phys = append(phys, uint32(plo+i))
		}
	}
	if len(phys) == 0 {
		t.Fatalf("debugfs found no journal blocks in %s:\n%s", img, out)
	}
	return phys
}

// parseRange parses "a-b" or "a".
func parseRange(s string) (lo, hi uint64, err error) {
	a, b, found := strings.Cut(strings.TrimSpace(s), "-")
	if lo, err = strconv.ParseUint(a, 10, 64); err != nil {
		return 0, 0, err
	}
	if !found {
		return lo, lo, nil
	}
	hi, err = strconv.ParseUint(b, 10, 64)
	return lo, hi, err
}

// openImageJournal opens img read-write and loads its journal.
func openImageJournal(t testing.TB, img string) (*journal, *os.File) {
	t.Helper()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	j, err := loadJournal(f, imageBlockSize(t, img), journalPhys(t, img))
	if err != nil {
		t.Fatalf("loadJournal %s: %v", img, err)
	}
	return j, f
}

// readRange reads n bytes at off from a file.
func readRange(t testing.TB, path string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// copyFile copies src to a new file in a temp dir and returns its path.
func copyFile(t testing.TB, src string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// Fields of the ext superblock (at byte 1024) the tests touch.
const (
	extSBOff          = 1024
	extSBIncompat     = 0x60
	extSBROCompat     = 0x64
	extSBChecksum     = 0x3FC
	extIncompatRecov  = 0x4
	extROCompatMetaCs = 0x400
)

// setRecoverFlag sets EXT3_FEATURE_INCOMPAT_RECOVER in img's superblock,
// as the core does while its journal may hold transactions.
func setRecoverFlag(t testing.TB, img string) {
	t.Helper()
	sb := readRange(t, img, extSBOff, 1024)
	inc := binary.LittleEndian.Uint32(sb[extSBIncompat:])
	binary.LittleEndian.PutUint32(sb[extSBIncompat:], inc|extIncompatRecov)
	writeSuper(t, img, sb)
}

// clearRecoverFlag clears EXT3_FEATURE_INCOMPAT_RECOVER in img's
// superblock (what the core does after recover) and fixes the superblock
// checksum of a metadata_csum image.
func clearRecoverFlag(t testing.TB, img string) {
	t.Helper()
	sb := readRange(t, img, extSBOff, 1024)
	inc := binary.LittleEndian.Uint32(sb[extSBIncompat:])
	binary.LittleEndian.PutUint32(sb[extSBIncompat:], inc&^extIncompatRecov)
	writeSuper(t, img, sb)
}

// writeSuper writes the ext superblock sb into img, with a fresh checksum
// on a metadata_csum image.
func writeSuper(t testing.TB, img string, sb []byte) {
	t.Helper()
	if binary.LittleEndian.Uint32(sb[extSBROCompat:])&extROCompatMetaCs != 0 {
		c := jbdCRC32c(^uint32(0), sb[:extSBChecksum])
		binary.LittleEndian.PutUint32(sb[extSBChecksum:], c)
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(sb, extSBOff); err != nil {
		t.Fatal(err)
	}
}

// copySuperBookkeeping copies into dst the ext superblock fields e2fsck
// updates whenever it writes the superblock (s_wtime, s_wtime_hi,
// s_kbytes_written; s_state too when withState, for the error bit e2fsck
// sets after a corrupt transaction), so images can be compared byte for
// byte; it fixes the superblock checksum of a metadata_csum image.
func copySuperBookkeeping(t testing.TB, src, dst string, withState bool) {
	t.Helper()
	from := readRange(t, src, extSBOff, 1024)
	sb := readRange(t, dst, extSBOff, 1024)
	fields := [][2]int{{0x30, 4}, {0x178, 8}, {0x274, 1}}
	if withState {
		fields = append(fields, [2]int{0x3A, 2})
	}
	for _, r := range fields {
		copy(sb[r[0]:r[0]+r[1]], from[r[0]:r[0]+r[1]])
	}
	writeSuper(t, dst, sb)
}

// diffBlocks returns the numbers of the blocks that differ between two
// images of the same size, at most 20 of them.
func diffBlocks(t testing.TB, a, b string, bs int) []int {
	t.Helper()
	da, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	db, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(da) != len(db) {
		t.Fatalf("%s and %s differ in size: %d, %d", a, b, len(da), len(db))
	}
	var diff []int
	for i := 0; i < len(da) && len(diff) < 20; i += bs {
		if !bytes.Equal(da[i:i+bs], db[i:i+bs]) {
			diff = append(diff, i/bs)
		}
	}
	return diff
}
