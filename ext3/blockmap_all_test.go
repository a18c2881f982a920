package ext3

import "testing"

// TestBmapAll: bmapAll agrees with bmap block by block, on the journal
// of a mkfs.ext3 image and on a file with holes in its direct, indirect
// and double indirect ranges.
func TestBmapAll(t *testing.T) {
	img := mkext3(t, 256<<20)
	f := openImage(t, img, false)
	attr, err := f.Create(RootIno, "sparse", 0o644, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	bs := int64(f.bs)
	apb := int64(f.apb)
	for _, blk := range []int64{0, 5, nDirect + 3, nDirect + apb + 2, nDirect + apb + apb + 7} {
		if _, err := f.WriteAt(attr.Ino, []byte("x"), blk*bs); err != nil {
			t.Fatal(err)
		}
	}
	for _, ino := range []uint32{journalIno, attr.Ino} {
		in, err := f.iget(ino)
		if err != nil {
			t.Fatal(err)
		}
		n := (in.size() + uint64(bs) - 1) / uint64(bs)
		got, err := f.bmapAll(in, n)
		if err != nil {
			t.Fatalf("inode %d: %v", ino, err)
		}
		if uint64(len(got)) != n {
			t.Fatalf("inode %d: %d blocks mapped, want %d", ino, len(got), n)
		}
		for i := range got {
			want, err := f.bmap(in, uint64(i))
			if err != nil || got[i] != want {
				t.Fatalf("inode %d block %d: bmapAll %d, bmap %d (%v)", ino, i, got[i], want, err)
			}
		}
		f.iput(in)
	}
}
