package fusefs

import (
	"archive/tar"
	"context"
	"fmt"
	"log/slog"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// The untar workload of bench.sh (issues 3 and 6) in-process: GNU tar
// unpacks a tree of many small files into the ext3 upper through the
// mounted union, then rm -rf removes it. The FUSE server runs in the
// benchmark's process, so a CPU profile of the benchmark is a profile of
// the server; tar and rm are separate processes, as in a container.

const (
	untarDirs  = 40
	untarFiles = 50 // per directory
)

// untarArchive writes a tar of untarDirs directories of untarFiles files
// each, sized like the small files of /usr/share (mostly under 8 KiB).
func untarArchive(b *testing.B) string {
	b.Helper()
	p := filepath.Join(b.TempDir(), "tree.tar")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	w := tar.NewWriter(f)
	r := rand.New(rand.NewSource(1))
	data := make([]byte, 64<<10)
	r.Read(data)
	mtime := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for d := 0; d < untarDirs; d++ {
		dir := fmt.Sprintf("share/d%03d/", d)
		must2(b, w.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0755,
			ModTime: mtime}))
		for i := 0; i < untarFiles; i++ {
			size := r.Intn(8 << 10)
			if i%10 == 0 {
				size = r.Intn(60 << 10)
			}
			must2(b, w.WriteHeader(&tar.Header{Typeflag: tar.TypeReg,
				Name: fmt.Sprintf("%sfile-%04d.txt", dir, i), Mode: 0644, Size: int64(size),
				ModTime: mtime}))
			if _, err := w.Write(data[:size]); err != nil {
				b.Fatal(err)
			}
		}
	}
	must2(b, w.Close())
	return p
}

func must2(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// untarOnce unpacks archive into a new directory of the mount and
// removes it again, as bench.sh's workload does.
func untarOnce(b *testing.B, mnt, archive string) {
	dst := filepath.Join(mnt, "t")
	for _, c := range [][]string{
		{"mkdir", dst},
		{"tar", "-xof", archive, "-C", dst},
		{"rm", "-rf", dst},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			b.Fatalf("%v: %v\n%s", c, err, out)
		}
	}
}

// opCounter counts the FUSE requests in go-fuse's debug output by
// opcode ("rx 12: CREATE n1 ...").
type opCounter struct {
	mu    sync.Mutex
	ops   map[string]int
	trace *os.File
}

func (c *opCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *opCounter) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *opCounter) WithGroup(string) slog.Handler            { return c }
func (c *opCounter) Handle(_ context.Context, r slog.Record) error {
	f := strings.Fields(r.Message)
	if tr := os.Getenv("HUSK_BENCH_TRACE"); tr != "" {
		c.mu.Lock()
		if c.trace == nil {
			c.trace, _ = os.Create(tr)
		}
		fmt.Fprintln(c.trace, r.Message)
		c.mu.Unlock()
	}
	if len(f) >= 3 && f[0] == "rx" {
		c.mu.Lock()
		c.ops[f[2]]++
		c.mu.Unlock()
	}
	return nil
}

// BenchmarkImageUntar unpacks and removes untarDirs*untarFiles files per
// op (or the archive HUSK_BENCH_TAR names); ops/file is the number of FUSE requests per file, counted in one
// extra run with go-fuse's debug output before the timed ones.
func BenchmarkImageUntar(b *testing.B) {
	sqfs, img := benchImages(b)
	archive, files := untarArchive(b), float64(untarDirs*(untarFiles+1))
	if p := os.Getenv("HUSK_BENCH_TAR"); p != "" {
		// bench.sh's archive ($HUSK_CACHE/bench-tree20k.tar), say.
		out, err := exec.Command("tar", "-tf", p).Output()
		if err != nil {
			b.Fatalf("HUSK_BENCH_TAR=%s: %v", p, err)
		}
		archive, files = p, float64(strings.Count(string(out), "\n"))
	}

	c := &opCounter{ops: map[string]int{}}
	ib := mountImages(b, sqfs, img, func(o *Options) {
		o.Debug, o.Logger = true, slog.New(c)
	})
	untarOnce(b, ib.mnt, archive)
	ib.stop()
	total := 0
	var names []string
	for op, k := range c.ops {
		total += k
		names = append(names, fmt.Sprintf("%s=%d", op, k))
	}
	sort.Strings(names)
	b.Logf("FUSE requests for %d entries: %d: %s", int(files), total, strings.Join(names, " "))

	ib = mountImages(b, sqfs, img)
	defer ib.stop()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		untarOnce(b, ib.mnt, archive)
	}
	b.StopTimer()
	b.ReportMetric(float64(total)/files, "ops/file")
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/files, "us/file")
}
