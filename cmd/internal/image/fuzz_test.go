package image

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpen feeds mutated SIF, squashfs and ext3 images to Open: any input
// must give an image or an error, never a panic or a hang.
func FuzzOpen(f *testing.F) {
	sq := mkSquash(f)
	for _, p := range []string{sq, mkSIF(f, sq), mkExt3TB(f)} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		// Detection reads the first 2 KiB and the superblocks; large seeds
		// only slow the fuzzer down.
		if len(b) > 64<<10 {
			b = b[:4096]
		}
		f.Add(b)
	}
	f.Add([]byte("#!/usr/bin/env run-singularity\nhsqs"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "img")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		img, err := Open(p, false)
		if err == nil {
			img.Close()
		}
	})
}
