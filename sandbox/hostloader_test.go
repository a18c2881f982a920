// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// libraryDirs keeps the directories of shared libraries, in first-mapped
// order and once each, and leaves out the interpreter, the binary itself,
// anonymous mappings and files that are not libraries.
func TestLibraryDirs(t *testing.T) {
	dir := t.TempDir()
	interp := filepath.Join(dir, "ld.so.2")
	if err := os.WriteFile(interp, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	maps := filepath.Join(dir, "maps")
	content := "" +
		"00400000-00401000 r-xp 00000000 08:01 1 /usr/bin/husk\n" +
		"7f00-7f01 r--p 00000000 08:01 2 /usr/lib/x86_64-linux-gnu/libc.so.6\n" +
		"7f01-7f02 r-xp 00001000 08:01 2 /usr/lib/x86_64-linux-gnu/libc.so.6\n" +
		"7f02-7f03 r--p 00000000 08:01 3 /opt/x y/lib/libnss_sss.so.2\n" +
		"7f03-7f04 r--p 00000000 08:01 4 " + interp + "\n" +
		"7f04-7f05 r--p 00000000 08:01 5 /usr/lib/locale/locale-archive\n" +
		"7f05-7f06 rw-p 00000000 00:00 0 \n" +
		"7ffd-7ffe rw-p 00000000 00:00 0 [stack]\n"
	if err := os.WriteFile(maps, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := libraryDirs(maps, interp)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/usr/lib/x86_64-linux-gnu", "/opt/x y/lib"}
	if !slices.Equal(got, want) {
		t.Errorf("libraryDirs: %q, want %q", got, want)
	}
	if err := os.WriteFile(maps, []byte("7f03-7f04 r--p 0 08:01 4 "+interp+"\n"),
		0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := libraryDirs(maps, interp); err == nil {
		t.Error("libraryDirs of a map without libraries: no error")
	}
}

// elfInterp reads the interpreter a dynamically linked program names and
// none for a file with no PT_INTERP.
func TestElfInterp(t *testing.T) {
	got, err := elfInterp("/bin/sh")
	if err != nil || got == "" {
		t.Fatalf("elfInterp(/bin/sh) = %q, %v; want the loader's path", got, err)
	}
	if _, err := os.Stat(got); err != nil {
		t.Errorf("elfInterp(/bin/sh) = %q, which does not exist: %v", got, err)
	}
	if _, err := elfInterp(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("elfInterp of a missing file: no error")
	}
}

// command numbers the loader's files from the descriptor it is given:
// the interpreter is exec'd, the binary and the library directories
// follow, in that order.
func TestHostLoaderCommand(t *testing.T) {
	open := func(p string) *os.File {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	l := &hostLoader{interp: open("/bin/sh"), exe: open("/bin/sh"),
		libs: []*os.File{open("/usr"), open("/etc")}}
	path, argv, files := l.command([]string{"/bin/true", "true"}, 7)
	want := []string{"husk-seccomp", "--library-path", "/proc/self/fd/9:/proc/self/fd/10",
		"/proc/self/fd/8", "/bin/true", "true"}
	if path != "/proc/self/fd/7" || !slices.Equal(argv, want) {
		t.Errorf("command: %s %q, want /proc/self/fd/7 %q", path, argv, want)
	}
	if len(files) != 4 || files[0] != l.interp || files[1] != l.exe || files[2] != l.libs[0] {
		t.Errorf("files %v: want interpreter, binary, then the library directories", files)
	}
}
