package image

import "testing"

// BenchmarkNewPlan is the CLI's image work before each run: open a SIF,
// check its header, descriptors and squashfs superblock, open and lock an
// ext3 overlay.
func BenchmarkNewPlan(b *testing.B) {
	sq := mkSquash(b)
	s := mkSIF(b, sq)
	ov := mkExt3TB(b)
	req := Request{Image: s, Overlays: ParseOverlays([]string{ov})}
	b.ReportAllocs()
	for range b.N {
		p, err := NewPlan(req, nil)
		if err != nil {
			b.Fatal(err)
		}
		p.Close()
	}
}
