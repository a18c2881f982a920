package main

import (
	"path/filepath"
	"testing"
)

// BenchmarkExecTrue measures a whole container start: open and lock the
// images, namespaces, FUSE mount of the SIF under an ext3 overlay, `true`,
// unmount and ext3 close. DESIGN-NOTES has Apptainer's figure (111 ms).
func BenchmarkExecTrue(b *testing.B) {
	setup(b)
	img, dir := debianSIF(b), workDir(b)
	ov := filepath.Join(dir, "o.img")
	ok(b, dir, "overlay", "create", "--sparse", ov)
	b.ResetTimer()
	for range b.N {
		ok(b, dir, "exec", "--overlay", ov, img, "true")
	}
}
