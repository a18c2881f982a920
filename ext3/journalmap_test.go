package ext3

import (
	"bytes"
	"encoding/binary"
	"os"
	"strings"
	"testing"
)

// A journal inode whose block map names a block twice (here a data
// block that is also the map's own indirect block) is refused at open,
// read-only or not, with the image left as it was: the first commit
// would have written journal records over the map. Found by FuzzGrow,
// where Grow's commit turned the map into garbage.
func TestJournalBlockMappedTwice(t *testing.T) {
	img := mkext3(t, 4<<20, "-b", "1024")
	f := openImage(t, img, true)
	bs := int64(f.bs)
	itable := int64(f.groups[0].desc.InodeTable)
	isz := int64(f.sb.inodeSize())
	f.Close()

	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	iblock := itable*bs + (journalIno-1)*isz + 40 // i_block of inode 8
	ind := binary.LittleEndian.Uint32(b[iblock+4*nDirect:])
	binary.LittleEndian.PutUint32(b[iblock+4*2:], ind) // journal block 2 := the IND block
	if err := os.WriteFile(img, b, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, ro := range []bool{true, false} {
		dev, size := imageDevice(t, img, ro)
		_, err := Open(dev, size, Options{ReadOnly: ro})
		if err == nil || !strings.Contains(err.Error(), "mapped twice") {
			t.Errorf("Open (read-only %v): err %v, want the block mapped twice", ro, err)
		}
	}
	after, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after, b) {
		t.Error("the refused image was written")
	}
}
