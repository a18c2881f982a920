package union

import (
	"bytes"
	"encoding/binary"
	"io"
)

// elfDeps reads what the dynamic loader loads for ELF file r of size bytes:
// its interpreter (PT_INTERP) and the names of its DT_NEEDED entries, in
// order. It reads them as the loader does, through the program headers
// (PT_DYNAMIC, and the PT_LOAD segment holding DT_STRTAB), never the
// section headers, which a loader ignores and a hostile image can fill
// with anything. Only 64-bit little-endian files are read; every table
// read is bounded, so a file costs at most about 100 KiB of reads.
func elfDeps(r io.ReaderAt, size int64) (interp string, needed []string) {
	if size <= 0 {
		return "", nil
	}
	const (
		ehdrSize   = 64
		phdrSize   = 56
		maxPhdrs   = 128
		maxInterp  = 4096
		maxDynamic = 64 << 10
		maxNeeded  = 64
		maxName    = 256

		ptLoad, ptDynamic, ptInterp = 1, 2, 3
		dtNull, dtNeeded, dtStrtab  = 0, 1, 5
		dtStrsz                     = 10
	)
	read := func(off, n int64) []byte {
		if off < 0 || n <= 0 || off > size || n > size-off {
			return nil
		}
		b := make([]byte, n)
		if k, err := r.ReadAt(b, off); int64(k) != n && err != nil {
			return nil
		}
		return b
	}
	le := binary.LittleEndian
	eh := read(0, ehdrSize)
	if eh == nil || !bytes.Equal(eh[:4], []byte("\x7fELF")) || eh[4] != 2 || eh[5] != 1 {
		return "", nil
	}
	phoff, phentsize, phnum := int64(le.Uint64(eh[32:])), le.Uint16(eh[54:]), le.Uint16(eh[56:])
	if phentsize != phdrSize || phnum == 0 || phnum > maxPhdrs || phoff > size {
		return "", nil
	}
	ph := read(phoff, int64(phnum)*phdrSize)
	if ph == nil {
		return "", nil
	}
	type segment struct{ off, vaddr, filesz uint64 }
	var loads []segment
	var dyn []byte
	for i := 0; i < int(phnum); i++ {
		p := ph[i*phdrSize:]
		seg := segment{off: le.Uint64(p[8:]), vaddr: le.Uint64(p[16:]), filesz: le.Uint64(p[32:])}
		if seg.off > uint64(size) || seg.filesz > uint64(size) {
			continue
		}
		switch le.Uint32(p) {
		case ptLoad:
			loads = append(loads, seg)
		case ptInterp:
			if seg.filesz <= maxInterp {
				if b := read(int64(seg.off), int64(seg.filesz)); b != nil {
					s, _, _ := bytes.Cut(b, []byte{0})
					interp = string(s)
				}
			}
		case ptDynamic:
			if seg.filesz <= maxDynamic {
				dyn = read(int64(seg.off), int64(seg.filesz))
			}
		}
	}
	// DT_STRTAB is an address: the PT_LOAD segment holding it says where
	// that is in the file.
	var strtab, strsz uint64
	var names []uint64
	for i := 0; i+16 <= len(dyn); i += 16 {
		tag, val := le.Uint64(dyn[i:]), le.Uint64(dyn[i+8:])
		switch tag {
		case dtNull:
			i = len(dyn)
		case dtNeeded:
			if len(names) < maxNeeded {
				names = append(names, val)
			}
		case dtStrtab:
			strtab = val
		case dtStrsz:
			strsz = val
		}
	}
	var strOff uint64
	found := false
	for _, l := range loads {
		if strtab >= l.vaddr && strtab-l.vaddr < l.filesz {
			strOff, found = l.off+(strtab-l.vaddr), true
			break
		}
	}
	strsz = min(strsz, uint64(size))
	if !found || strOff >= uint64(size) {
		return interp, nil
	}
	seen := map[string]bool{}
	for _, n := range names {
		if n >= strsz || strOff+n >= uint64(size) {
			continue
		}
		at := int64(strOff + n)
		b := read(at, min(maxName, int64(strsz-n), size-at))
		name, _, ok := bytes.Cut(b, []byte{0})
		if !ok || len(name) == 0 || seen[string(name)] {
			continue
		}
		seen[string(name)] = true
		needed = append(needed, string(name))
	}
	return interp, needed
}
