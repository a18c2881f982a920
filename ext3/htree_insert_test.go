package ext3

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// indexed reports whether directory ino still has EXT2_INDEX_FL, its
// indirect_levels and the number of entries in the root.
func indexed(t *testing.T, f *FS, ino uint32) (bool, int, int) {
	t.Helper()
	in, err := f.iget(ino)
	if err != nil {
		t.Fatal(err)
	}
	defer f.iput(in)
	in.mu.RLock()
	defer in.mu.RUnlock()
	if !f.isIndexed(in) {
		return false, 0, 0
	}
	b, _, err := f.dirBlock(in, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.cache.put(b)
	return true, int(b.data[30]), int(le.Uint16(b.data[34:]))
}

// checkHtree runs debugfs htree on dir and fails on any complaint; it
// returns the number of leaf blocks listed.
func checkHtree(t *testing.T, img, dir string) int {
	t.Helper()
	out := debugfs(t, img, "htree "+dir)
	// debugfs prints hashes in hex, so words like "bad" can appear in
	// good output; it also complains about checksum space on file systems
	// without metadata_csum. e2fsck -fn is the strict judge of hash
	// ranges; this only checks that debugfs can walk the tree.
	for _, bad := range []string{"Corrupt", "corrupt", "Invalid", "invalid"} {
		if strings.Contains(out, bad) {
			t.Fatalf("debugfs htree %s reports %q:\n%.3000s", dir, bad, out)
		}
	}
	if !strings.Contains(out, "Root node dump:") {
		t.Fatalf("debugfs htree %s: no index:\n%.2000s", dir, out)
	}
	return len(regexp.MustCompile(`(?m)^Entry #\d+: Hash`).FindAllString(out, -1))
}

// TestHtreeGrow starts from a directory the kernel indexed and has husk
// add, delete and rename entries until the index splits leaves, grows a
// level and splits index nodes; the index must stay (flag kept), and
// e2fsck, debugfs and the kernel's hashed lookups must agree with it.
func TestHtreeGrow(t *testing.T) {
	for _, tc := range []struct {
		name  string
		bs    string
		n     int // entries husk adds
		nodes bool
	}{
		// 4 KiB blocks: 100,000 entries need a second level.
		{"4k", "4096", 100000, false},
		// 1 KiB blocks: small nodes (127 entries) split many times.
		{"1k", "1024", 20000, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := mkext3(t, 1<<30, "-b", tc.bs, "-N", "200000")
			kernelDirs(t, img, map[string]int{"grow": 300, "other": 10})
			if out := debugfs(t, img, "stat /grow"); !strings.Contains(out, "Flags: 0x1000") {
				t.Fatalf("kernel did not index /grow:\n%s", out)
			}
			f := openImage(t, img, false)
			d := mustA(t)(f.Lookup(RootIno, "grow")).Ino
			other := mustA(t)(f.Lookup(RootIno, "other")).Ino
			const base = 300
			end := base + tc.n
			for i := base; i < end; i++ {
				mustA(t)(f.Create(d, dirName(i), 0o644, 0, 0))
			}
			ok, levels, count := indexed(t, f, d)
			if !ok || levels != 1 {
				t.Fatalf("after %d creates: indexed %v, %d levels; want the index kept "+
					"with one level below the root", tc.n, ok, levels)
			}
			if tc.nodes && count < 2 {
				t.Fatalf("root has %d entries: no index node was split", count)
			}
			// Deletes, renames within the directory and out of it.
			gone := func(i int) bool { return i%3 == 0 }
			moved := func(i int) bool { return !gone(i) && i%5 == 0 }
			out := func(i int) bool { return !gone(i) && !moved(i) && i%11 == 0 }
			for i := 0; i < end; i++ {
				switch {
				case gone(i):
					noErr(t, f.Unlink(d, dirName(i)))
				case moved(i):
					noErr(t, f.Rename(d, dirName(i), d, "r-"+dirName(i), 0))
				case out(i):
					noErr(t, f.Rename(d, dirName(i), other, dirName(i), 0))
				}
			}
			// More creates after the deletes reuse the space in the leaves.
			for i := end; i < end+tc.n/10; i++ {
				mustA(t)(f.Create(d, dirName(i), 0o644, 0, 0))
			}
			if ok, _, _ := indexed(t, f, d); !ok {
				t.Fatal("index dropped")
			}
			want := map[string]bool{}
			for i := 0; i < end+tc.n/10; i++ {
				switch {
				case i >= end:
					want[dirName(i)] = true
				case gone(i) || out(i):
				case moved(i):
					want["r-"+dirName(i)] = true
				default:
					want[dirName(i)] = true
				}
			}
			ents, err := f.ReadDir(d)
			noErr(t, err)
			if len(ents) != len(want) {
				t.Fatalf("ReadDir: %d entries, want %d", len(ents), len(want))
			}
			for name := range want {
				mustA(t)(f.Lookup(d, name))
			}
			noErr(t, f.Close())
			fsck(t, img)
			if leaves := checkHtree(t, img, "/grow"); leaves == 0 {
				t.Fatal("debugfs htree lists no entries")
			}
			if out := debugfs(t, img, "htree /grow"); !strings.Contains(out,
				"Indirect levels: 1") {
				t.Fatalf("debugfs htree: want one indirect level:\n%.1500s", out)
			}

			// The kernel looks names up through the index: every name must
			// be found where the hash says, and removed names must not.
			mnt := mountRO(t, img)
			for name := range want {
				if _, err := os.Lstat(filepath.Join(mnt, "grow", name)); err != nil {
					t.Fatalf("kernel lstat grow/%s: %v", name, err)
				}
			}
			for i := 0; i < end; i += 7 {
				if gone(i) || moved(i) || out(i) {
					_, err := os.Lstat(filepath.Join(mnt, "grow", dirName(i)))
					if !os.IsNotExist(err) {
						t.Fatalf("kernel lstat removed grow/%s: %v", dirName(i), err)
					}
				}
			}
			kents, err := os.ReadDir(filepath.Join(mnt, "grow"))
			noErr(t, err)
			if len(kents) != len(want) {
				t.Fatalf("kernel readdir: %d entries, want %d", len(kents), len(want))
			}
		})
	}
}
