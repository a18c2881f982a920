package main

import (
	"path/filepath"
	"testing"

	"github.com/alecthomas/kong"
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

// BenchmarkParse measures what every husk command pays before it starts:
// building the kong parser (the CLI model and its help texts) and parsing
// an exec command line, with the model of exec only (as run builds it) and
// with every command's (help, completion).
func BenchmarkParse(b *testing.B) {
	args := []string{"exec", "-B", "/tmp:/mnt", "--overlay", "o.img", "x.sif", "true"}
	for _, bc := range []struct {
		name string
		opts []kong.Option
	}{{"exec", onlyCommand(args)}, {"all", nil}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var cli CLI
				p, err := newParser(&cli, bc.opts...)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := p.Parse(args); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkExecTrueBindTmp is BenchmarkExecTrue with a bind over /tmp, as
// bench.sh runs it: the bind lands on the default /tmp mount, and both
// must go before the union can be unmounted (they once made it retry).
func BenchmarkExecTrueBindTmp(b *testing.B) {
	setup(b)
	img, dir := debianSIF(b), workDir(b)
	ov := filepath.Join(dir, "o.img")
	ok(b, dir, "overlay", "create", "--sparse", ov)
	b.ResetTimer()
	for range b.N {
		ok(b, dir, "exec", "-B", dir+":/tmp", "--overlay", ov, img, "true")
	}
}
