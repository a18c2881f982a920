package ext3

import (
	"bytes"
	"fmt"
	"testing"
)

func TestENOSPC(t *testing.T) {
	img := mkext3(t, 8<<20, "-b", "1024")
	f := openImage(t, img, false)
	chunk := bytes.Repeat([]byte("d"), 64<<10)

	// A non-root owner stops at the reserve with ENOSPC, not EIO.
	user := mustA(t)(f.Create(RootIno, "user", 0o644, 1000, 1000))
	var off int64
	for {
		n, err := f.WriteAt(user.Ino, chunk, off)
		off += int64(n)
		if err != nil {
			wantErr(t, err, errnoENOSPC)
			break
		}
	}
	st := f.Statfs()
	if st.Bavail != 0 || st.Bfree == 0 {
		t.Fatalf("after user ENOSPC: statfs %+v, want Bavail 0 and reserve left", st)
	}
	// Root may use the reserve, then also gets ENOSPC.
	root := mustA(t)(f.Create(RootIno, "root", 0o644, 0, 0))
	var roff int64
	for {
		n, err := f.WriteAt(root.Ino, chunk, roff)
		roff += int64(n)
		if err != nil {
			wantErr(t, err, errnoENOSPC)
			break
		}
	}
	if roff == 0 {
		t.Fatal("root could not use the reserved blocks")
	}
	// Metadata operations fail cleanly too.
	for i := 0; ; i++ {
		if _, err := f.Mkdir(RootIno, "d"+itoa(i), 0o755, 1000, 1000); err != nil {
			wantErr(t, err, errnoENOSPC)
			break
		}
	}
	noErr(t, f.Sync())
	fsck(t, img)

	// Deleting frees space at once, even before a commit.
	noErr(t, f.Unlink(RootIno, "user"))
	if st2 := f.Statfs(); st2.Bfree <= st.Bfree {
		t.Fatalf("statfs after unlink: %+v", st2)
	}
	again := mustA(t)(f.Create(RootIno, "again", 0o644, 1000, 1000))
	mustN(t)(f.WriteAt(again.Ino, chunk, 0))
	got := make([]byte, len(chunk))
	mustN(t)(f.ReadAt(again.Ino, got, 0))
	if !bytes.Equal(got, chunk) {
		t.Fatal("data written after reclaiming space differs")
	}
	noErr(t, f.Close())
	fsck(t, img)
}

func TestInodeExhaustion(t *testing.T) {
	img := mkext3(t, 8<<20, "-b", "1024", "-N", "64")
	f := openImage(t, img, false)
	made := 0
	for i := 0; ; i++ {
		if _, err := f.Create(RootIno, "f"+itoa(i), 0o644, 0, 0); err != nil {
			wantErr(t, err, errnoENOSPC)
			break
		}
		made++
	}
	if st := f.Statfs(); st.Ffree != 0 || made == 0 {
		t.Fatalf("made %d files, statfs %+v", made, st)
	}
	noErr(t, f.Unlink(RootIno, "f0"))
	mustA(t)(f.Create(RootIno, "reuse", 0o644, 0, 0))
	noErr(t, f.Close())
	fsck(t, img)
}

// A device or a fast symlink whose name finds no room in a full directory
// is undone without freeing its i_block words as blocks: the target "/x"
// reads as block 30767 and device 20:0 as block 5120, which a file owns.
func TestENOSPCUndoKeepsOthersBlocks(t *testing.T) {
	img := mkext3(t, 64<<20, "-b", "1024")
	f := openImage(t, img, false)
	fill := mustA(t)(f.Create(RootIno, "fill", 0o644, 0, 0))
	chunk := make([]byte, 1<<20)
	var off int64
	for {
		n, err := f.WriteAt(fill.Ino, chunk, off)
		off += int64(n)
		if err != nil {
			wantErr(t, err, errnoENOSPC)
			break
		}
	}
	// Fill the root directory's blocks with names until one more name
	// needs a block that is not there.
	for i := 0; ; i++ {
		if _, err := f.Create(RootIno, "f"+itoa(i), 0o644, 0, 0); err != nil {
			wantErr(t, err, errnoENOSPC)
			break
		}
	}
	long := "a-name-long-enough-to-need-its-own-room-in-a-directory-block"
	_, err := f.Symlink(RootIno, long, "/x", 0, 0)
	wantErr(t, err, errnoENOSPC)
	_, err = f.Mknod(RootIno, long+"2", 0o20644, 20<<8, 0, 0)
	wantErr(t, err, errnoENOSPC)
	noErr(t, f.Close())
	fsck(t, img)

	f = openImage(t, img, true)
	got := make([]byte, len(chunk))
	for o := int64(0); o < off; o += int64(len(got)) {
		n, err := f.ReadAt(fill.Ino, got, o)
		if err != nil && n == 0 {
			t.Fatalf("read fill at %d: %v", o, err)
		}
		if !bytes.Equal(got[:n], chunk[:n]) {
			t.Fatalf("fill changed near offset %d", o)
		}
	}
	noErr(t, f.Close())
}

// TestNoReserve: with Options.NoReserve a root-owned file stops where
// everyone else does, with the reserved blocks still free, and the
// image stays clean.
func TestNoReserve(t *testing.T) {
	img := mkext3(t, 8<<20, "-b", "1024")
	dev, size := imageDevice(t, img, false)
	f, err := Open(dev, size, Options{NoReserve: true})
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("r"), 64<<10)
	root := mustA(t)(f.Create(RootIno, "root", 0o644, 0, 0))
	for off := int64(0); ; {
		n, err := f.WriteAt(root.Ino, chunk, off)
		off += int64(n)
		if err != nil {
			wantErr(t, err, errnoENOSPC)
			break
		}
	}
	if st := f.Statfs(); st.Bavail != 0 || st.Bfree < st.Blocks/25 {
		t.Errorf("after root's ENOSPC: statfs %+v, want Bavail 0 and the 5%% reserve free", st)
	}
	// Nor do root's new directories and the directory blocks new names
	// need: each mkdir takes a block, and a directory fills a block
	// after some dozens of names.
	before := f.Statfs().Bfree
	var err2 error
	for i := 0; i < 2000 && err2 == nil; i++ {
		_, err2 = f.Mkdir(RootIno, fmt.Sprintf("sub-directory-with-a-long-name-%04d", i),
			0o755, 0, 0)
	}
	wantErr(t, err2, errnoENOSPC)
	if got := f.Statfs().Bfree; got != before {
		t.Errorf("free blocks %d after root's mkdirs, was %d: the reserve was used", got,
			before)
	}
	noErr(t, f.Close())
	fsck(t, img)
}
