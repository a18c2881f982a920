package fusefs

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// benchFixture is a two-layer union with 1000 small files in one
// directory and a 64 MiB file in each of the lower and the upper.
func benchFixture(b *testing.B, timeout time.Duration) string {
	b.Helper()
	base := b.TempDir()
	lower, ovl := filepath.Join(base, "lower"), filepath.Join(base, "ovl")
	for _, d := range []string{lower + "/dir", ovl + "/upper/dir", ovl + "/work"} {
		if err := os.MkdirAll(d, 0755); err != nil {
			b.Fatal(err)
		}
	}
	for i := 0; i < 1000; i++ {
		dir := lower
		if i%2 == 0 {
			dir = ovl + "/upper"
		}
		if err := os.WriteFile(filepath.Join(dir, "dir", "f"+itoa(i)), []byte("x"), 0644); err != nil {
			b.Fatal(err)
		}
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 4<<20)
	for _, p := range []string{lower + "/big", ovl + "/upper/bigup"} {
		if err := os.WriteFile(p, big, 0644); err != nil {
			b.Fatal(err)
		}
	}
	l, err := OpenDirLayer(lower, nil)
	if err != nil {
		b.Fatal(err)
	}
	up, work, err := OpenOverlayDir(ovl, nil)
	if err != nil {
		b.Fatal(err)
	}
	u, err := New(Options{Upper: up, WorkDir: work, Lowers: []Layer{l},
		EntryTimeout: timeout, AttrTimeout: timeout})
	if err != nil {
		b.Fatal(err)
	}
	mnt := b.TempDir()
	if err := u.Mount(mnt); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { u.Unmount(); l.Close(); up.Close() })
	return mnt
}

func benchStat(b *testing.B, timeout time.Duration) {
	mnt := benchFixture(b, timeout)
	var st unix.Stat_t
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := unix.Lstat(filepath.Join(mnt, "dir", "f"+itoa(i%1000)), &st); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookupGetattr stats files with kernel caching off, so every
// stat is a LOOKUP (and GETATTR) served by the union.
func BenchmarkLookupGetattr(b *testing.B) { benchStat(b, time.Nanosecond) }

// BenchmarkStatCached stats with the default timeouts (kernel cache).
func BenchmarkStatCached(b *testing.B) { benchStat(b, 0) }

// BenchmarkReaddir lists a merged directory of 1000 entries.
func BenchmarkReaddir(b *testing.B) {
	mnt := benchFixture(b, time.Nanosecond)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ents, err := os.ReadDir(filepath.Join(mnt, "dir"))
		if err != nil || len(ents) != 1000 {
			b.Fatal(len(ents), err)
		}
	}
}

func benchRead(b *testing.B, name string) {
	mnt := benchFixture(b, 0)
	buf := make([]byte, 1<<20)
	b.SetBytes(64 << 20)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f, err := os.Open(filepath.Join(mnt, name))
		if err != nil {
			b.Fatal(err)
		}
		// Drop the page cache of this file so the data comes from FUSE.
		unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		for {
			n, err := f.Read(buf)
			if n == 0 || err != nil {
				break
			}
		}
		f.Close()
	}
}

// BenchmarkReadLower reads a 64 MiB lower file.
func BenchmarkReadLower(b *testing.B) { benchRead(b, "big") }

// BenchmarkReadUpper reads a 64 MiB upper file.
func BenchmarkReadUpper(b *testing.B) { benchRead(b, "bigup") }
