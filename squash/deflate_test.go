// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"bytes"
	"compress/zlib"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// deflateSamples compresses 128 KiB slices of the host's shared libraries
// and text as mksquashfs does (zlib, level 9), with a few synthetic blocks
// for the edges: empty output, one byte, incompressible data.
func deflateSamples(t testing.TB) (raw, comp [][]byte) {
	add := func(b []byte) {
		var buf bytes.Buffer
		w, _ := zlib.NewWriterLevel(&buf, 9)
		w.Write(b)
		w.Close()
		raw = append(raw, b)
		comp = append(comp, buf.Bytes())
	}
	add(nil)
	add([]byte{'x'})
	noise := make([]byte, 128<<10)
	rng := rand.NewChaCha8([32]byte{1})
	rng.Read(noise)
	add(noise)
	total := 0
	for _, dir := range []string{"/usr/lib/x86_64-linux-gnu", "/usr/share/doc", "/etc"} {
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() || total > 8<<20 {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return nil
			}
			b = b[:min(len(b), 128<<10)]
			total += len(b)
			add(b)
			return nil
		})
	}
	if len(raw) < 20 {
		t.Fatalf("only %d sample blocks found on this host", len(raw))
	}
	return raw, comp
}

// TestZlibDecompressors checks the default gzip decoder (libdeflate in cgo
// builds) against the Go one on real blocks, a too-small output buffer and
// corrupted input.
func TestZlibDecompressors(t *testing.T) {
	raw, comp := deflateSamples(t)
	fast, ref := newZlibDecompressor(), &zlibDecompressor{}
	for i := range comp {
		got, err := fast.decompress(make([]byte, 0, 128<<10), comp[i])
		if err != nil || !bytes.Equal(got, raw[i]) {
			t.Fatalf("block %d (%d bytes): got %d bytes, err %v", i, len(raw[i]),
				len(got), err)
		}
		if len(raw[i]) > 1 {
			_, err = fast.decompress(make([]byte, 0, len(raw[i])-1), comp[i])
			if !errors.Is(err, errOutputTooLarge) {
				t.Fatalf("block %d into a short buffer: err %v, want %v", i, err,
					errOutputTooLarge)
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	bufA, bufB := make([]byte, 0, 128<<10), make([]byte, 0, 128<<10)
	for i := range 2000 {
		src := bytes.Clone(comp[i%len(comp)])
		switch i % 3 {
		case 0:
			src[rng.IntN(len(src))] ^= byte(1 + rng.IntN(255))
		case 1:
			src = src[:rng.IntN(len(src))]
		case 2:
			src = append(src[:rng.IntN(len(src))], make([]byte, 1+rng.IntN(64))...)
		}
		compareZlib(t, fast, ref, src, bufA, bufB)
	}
}

// compareZlib decodes src with both decoders and fails if they disagree:
// both must accept it with the same output, or both refuse it with the
// same error.
func compareZlib(t *testing.T, fast, ref decompressor, src, bufA, bufB []byte) {
	t.Helper()
	a, errA := fast.decompress(bufA, src)
	b, errB := ref.decompress(bufB, src)
	if (errA == nil) != (errB == nil) || !bytes.Equal(a, b) {
		t.Fatalf("%d-byte input: default decoder %d bytes, err %v; Go decoder %d "+
			"bytes, err %v", len(src), len(a), errA, len(b), errB)
	}
	// Both say what is wrong the same way (libdeflate alone cannot).
	if errA != nil && errA.Error() != errB.Error() {
		t.Fatalf("%d-byte input: default decoder says %q, Go decoder %q", len(src),
			errA, errB)
	}
}

// FuzzZlib feeds arbitrary input to the default gzip decoder and the Go
// one and checks they agree.
func FuzzZlib(f *testing.F) {
	raw, comp := deflateSamples(f)
	for i, c := range comp[:12] {
		if len(raw[i]) < 64<<10 {
			f.Add(c)
		}
	}
	fast, ref := newZlibDecompressor(), &zlibDecompressor{}
	// One fuzz worker runs one input at a time, so the buffers are reused.
	bufA, bufB := make([]byte, 0, 128<<10), make([]byte, 0, 128<<10)
	f.Fuzz(func(t *testing.T, data []byte) {
		compareZlib(t, fast, ref, data, bufA, bufB)
	})
}

// BenchmarkZlib measures the default gzip decoder on real 128 KiB blocks;
// -tags husk_purego measures the Go one.
func BenchmarkZlib(b *testing.B) {
	raw, comp := deflateSamples(b)
	z := newZlibDecompressor()
	dst := make([]byte, 0, 128<<10)
	n := 0
	for _, r := range raw {
		n += len(r)
	}
	b.SetBytes(int64(n))
	for b.Loop() {
		for _, c := range comp {
			if _, err := z.decompress(dst, c); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// Decoder names libdeflate for a gzip image in a cgo build, and Go for
// other compressors and for builds without cgo.
func TestDecoderName(t *testing.T) {
	want := "Go"
	if _, ok := newZlibDecompressor().(*zlibDecompressor); !ok {
		want = "libdeflate"
	}
	for _, c := range []struct{ comp, want string }{{"gzip", want}, {"lz4", "Go"}} {
		img := smallImage(t, 0, "-comp", c.comp)
		f, err := Open(bytes.NewReader(img), int64(len(img)), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.Decoder(); got != c.want {
			t.Errorf("%s image: decoder %q, want %q", c.comp, got, c.want)
		}
	}
}
