package union

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// hostTrue returns the host's true(1), a dynamic ELF file.
func hostTrue(t testing.TB) []byte {
	p, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestElfDeps reads the host's true(1) as debug/elf does, and passes over
// a truncated copy without a word.
func TestElfDeps(t *testing.T) {
	b := hostTrue(t)
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var wantInterp string
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			s, _ := io.ReadAll(p.Open())
			wantInterp = strings.TrimRight(string(s), "\x00")
		}
	}
	wantLibs, err := f.ImportedLibraries()
	if err != nil || len(wantLibs) == 0 || wantInterp == "" {
		t.Fatalf("host true: interpreter %q, libraries %q (%v)", wantInterp, wantLibs, err)
	}
	interp, libs := elfDeps(bytes.NewReader(b), int64(len(b)))
	if interp != wantInterp || !slices.Equal(libs, wantLibs) {
		t.Errorf("got %q %q, want %q %q", interp, libs, wantInterp, wantLibs)
	}
	for _, n := range []int{0, 4, 63, 64, 200, 1000, len(b) / 2} {
		elfDeps(bytes.NewReader(b[:n]), int64(n)) // must not panic
	}
}

// TestElfDepsBounded: a dynamic section naming one library 4,000 times
// gives it once, and one naming 200 libraries gives the first 64.
func TestElfDepsBounded(t *testing.T) {
	for _, tc := range []struct {
		names []string
		want  int
	}{
		{slices.Repeat([]string{"libc.so.6"}, 4000), 1},
		{func() (n []string) {
			for i := range 200 {
				n = append(n, "lib"+strconv.Itoa(i)+".so")
			}
			return n
		}(), 64},
	} {
		b := synthElf(tc.names)
		_, libs := elfDeps(bytes.NewReader(b), int64(len(b)))
		if len(libs) != tc.want || libs[0] != tc.names[0] {
			t.Errorf("%d names: %d libraries (%.40q), want %d", len(tc.names), len(libs),
				libs, tc.want)
		}
	}
}

// synthElf builds a minimal ELF64 file: one PT_LOAD covering the file,
// a PT_DYNAMIC with a DT_NEEDED per name, DT_STRTAB and DT_STRSZ.
func synthElf(names []string) []byte {
	le := binary.LittleEndian
	const ehdr, phdr = 64, 56
	var strs bytes.Buffer
	strs.WriteByte(0)
	var offs []uint64
	for _, n := range names {
		offs = append(offs, uint64(strs.Len()))
		strs.WriteString(n)
		strs.WriteByte(0)
	}
	dynOff := uint64(ehdr + 2*phdr)
	dynSize := uint64(16 * (len(names) + 3))
	strOff := dynOff + dynSize
	size := strOff + uint64(strs.Len())
	b := make([]byte, size)
	copy(b, "\x7fELF\x02\x01\x01")
	le.PutUint16(b[16:], 3) // ET_DYN
	le.PutUint16(b[18:], 62)
	le.PutUint64(b[32:], ehdr)
	le.PutUint16(b[52:], ehdr)
	le.PutUint16(b[54:], phdr)
	le.PutUint16(b[56:], 2)
	ph := func(i int, typ uint32, off, filesz uint64) {
		p := b[ehdr+i*phdr:]
		le.PutUint32(p, typ)
		le.PutUint64(p[8:], off)
		le.PutUint64(p[16:], off) // vaddr = offset
		le.PutUint64(p[32:], filesz)
		le.PutUint64(p[40:], filesz)
	}
	ph(0, 1, 0, size)
	ph(1, 2, dynOff, dynSize)
	d := b[dynOff:]
	for i, o := range offs {
		le.PutUint64(d[16*i:], 1)
		le.PutUint64(d[16*i+8:], o)
	}
	d = d[16*len(offs):]
	le.PutUint64(d, 5)
	le.PutUint64(d[8:], strOff)
	le.PutUint64(d[16:], 10)
	le.PutUint64(d[24:], uint64(strs.Len()))
	copy(b[strOff:], strs.Bytes())
	return b
}

// FuzzElfDeps: no input makes elfDeps panic or return more than it
// promises.
func FuzzElfDeps(f *testing.F) {
	f.Add(hostTrue(f)[:8192])
	f.Add(synthElf([]string{"libc.so.6", "libm.so.6"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		interp, libs := elfDeps(bytes.NewReader(b), int64(len(b)))
		if len(interp) > 4096 || len(libs) > 64 {
			t.Fatalf("interpreter of %d bytes, %d libraries", len(interp), len(libs))
		}
		for _, l := range libs {
			if l == "" || len(l) > 256 || strings.ContainsRune(l, 0) {
				t.Fatalf("library name %q", l)
			}
		}
	})
}
