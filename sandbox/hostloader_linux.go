// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"bufio"
	"debug/elf"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The seccomp shim is this binary, started after the pivot. Built with
// cgo (the default: libdeflate, NSS), the binary is dynamically linked,
// and exec would load the ELF interpreter and libc named in it from the
// image: an image without glibc (Alpine, a static program alone) fails
// with ENOENT, one with an older glibc with "GLIBC_2.34 not found". So
// stage 2 opens the host's interpreter, this binary and the directories
// of its libraries before the pivot, and the shim is exec'd as the host's
// interpreter running this binary, with those directories as its only
// library path, all reached through /proc/self/fd.
type hostLoader struct {
	interp *os.File   // the host's ELF interpreter
	exe    *os.File   // this binary
	libs   []*os.File // directories of the shared libraries it runs with
}

// openHostLoader opens the files the shim needs on the host. It returns
// nil when this binary is static (it runs anywhere as it is) or when
// something is missing, and the shim then starts from /proc/self/exe.
func openHostLoader(log *slog.Logger) *hostLoader {
	interp, err := elfInterp("/proc/self/exe")
	if err != nil || interp == "" {
		log.Debug("seccomp shim starts as is", "interp", interp, "error", err)
		return nil
	}
	dirs, err := libraryDirs("/proc/self/maps", interp)
	if err != nil {
		log.Debug("seccomp shim starts as is", "error", err)
		return nil
	}
	l := &hostLoader{}
	if l.interp, err = os.Open(interp); err == nil {
		l.exe, err = os.Open("/proc/self/exe")
	}
	for _, d := range dirs {
		if err != nil {
			break
		}
		var f *os.File
		if f, err = os.Open(d); err == nil {
			l.libs = append(l.libs, f)
		}
	}
	if err != nil {
		log.Debug("seccomp shim starts as is", "error", err)
		l.Close()
		return nil
	}
	log.Debug("seccomp shim starts from the host", "interp", interp, "libs", dirs)
	return l
}

// command returns the path, argv and files that run this binary with
// args through the host's interpreter, the files to be open in the new
// process from descriptor fd on.
func (l *hostLoader) command(args []string, fd int) (string, []string, []*os.File) {
	files := append([]*os.File{l.interp, l.exe}, l.libs...)
	at := func(i int) string { return fmt.Sprintf("/proc/self/fd/%d", fd+i) }
	var dirs []string
	for i := range l.libs {
		dirs = append(dirs, at(2+i))
	}
	argv := append([]string{"husk-seccomp", "--library-path", strings.Join(dirs, ":"),
		at(1)}, args...)
	return at(0), argv, files
}

// Close closes what openHostLoader opened; a nil loader is fine.
func (l *hostLoader) Close() {
	if l == nil {
		return
	}
	for _, f := range append([]*os.File{l.interp, l.exe}, l.libs...) {
		if f != nil {
			f.Close()
		}
	}
}

// elfInterp returns the interpreter (PT_INTERP) the ELF file at path
// names, or "" for a static binary.
func elfInterp(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(p.Open(), 4096))
		if err != nil {
			return "", fmt.Errorf("%s: PT_INTERP: %w", path, err)
		}
		return strings.TrimRight(string(b), "\x00"), nil
	}
	return "", nil
}

// libraryDirs returns, in the order first mapped, the directories of the
// shared libraries in the maps file of this process, but the
// interpreter's own.
func libraryDirs(maps, interp string) ([]string, error) {
	f, err := os.Open(maps)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	self, _ := os.Readlink("/proc/self/exe")
	realInterp, err := filepath.EvalSymlinks(interp)
	if err != nil {
		return nil, err
	}
	var dirs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address perms offset dev inode path: only the path has a
		// slash, and it may hold spaces.
		line := sc.Text()
		i := strings.IndexByte(line, '/')
		if i < 0 {
			continue
		}
		p := line[i:]
		if p == self || p == realInterp || p == interp ||
			!strings.Contains(filepath.Base(p), ".so") {
			continue
		}
		if d := filepath.Dir(p); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("no shared library mapped in %s", maps)
	}
	return dirs, nil
}
