package ext3

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// growMemDev is a Device over a byte slice.
type growMemDev struct {
	mu sync.Mutex
	b  []byte
}

func (m *growMemDev) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("read [%d,+%d) outside %d bytes", off, len(p), len(m.b))
	}
	return copy(p, m.b[off:]), nil
}

func (m *growMemDev) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("write [%d,+%d) outside %d bytes", off, len(p), len(m.b))
	}
	return copy(m.b[off:], p), nil
}

func (m *growMemDev) Sync() error { return nil }

// FuzzGrow grows a mkfs.ext3 image (1 KiB blocks, journal, resize inode)
// to three times its size after patching its bytes: each 4-byte group of
// the input writes byte 3 at offset bytes 0-2 (little endian, modulo the
// image size), which reaches the superblock, GDT, reserved GDT blocks,
// bitmaps and the resize inode. Grow must return an error or a file
// system a read-only Open accepts; never panic or hang.
func FuzzGrow(f *testing.F) {
	img := mkext3(f, 4<<20, "-b", "1024")
	seed, err := os.ReadFile(img)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{})
	// s_reserved_gdt_blocks, s_blocks_count, group 0's bitmap pointers.
	f.Add([]byte{0xce, 0x04, 0x00, 0xff})
	f.Add([]byte{0x04, 0x04, 0x00, 0x01})
	f.Add([]byte{0x00, 0x08, 0x00, 0x07, 0x08, 0x08, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, patch []byte) {
		b := make([]byte, 3*len(seed))
		copy(b, seed)
		for i := 0; i+4 <= len(patch) && i < 4*64; i += 4 {
			off := (int(patch[i]) | int(patch[i+1])<<8 | int(patch[i+2])<<16) % len(seed)
			b[off] = patch[i+3]
		}
		dev := &growMemDev{b: b}
		if _, err := Grow(dev, int64(len(b)), Options{}); err != nil {
			return
		}
		fs, err := Open(dev, int64(len(b)), Options{ReadOnly: true})
		if err != nil {
			t.Fatalf("Grow succeeded, then Open: %v", err)
		}
		fs.Close()
	})
}
