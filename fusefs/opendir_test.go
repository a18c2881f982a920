package fusefs

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// countingLayer counts the listings the union asks a layer for.
type countingLayer struct {
	Layer
	readDirs atomic.Int64
}

func (c *countingLayer) ReadDir(dir Node) ([]Dirent, error) {
	c.readDirs.Add(1)
	return c.Layer.ReadDir(dir)
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	must(t, err)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func sameNames(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %q, want %q", what, got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: %q, want %q", what, got, want)
		}
	}
}

// TestListingsKept checks that directories open without a server round
// trip and that the kernel keeps their listings: listing a lower-only and
// a merged directory again, or fsyncing them, asks no layer, while every change made through
// the mount (create, unlink, rename, mkdir, rmdir, in the upper and over
// the lower) shows in the next listing.
func TestListingsKept(t *testing.T) {
	f := newFixture(t, 1)
	tree(t, f.lowers[0], "lo/a=1", "lo/b=2", "both/l=3", "big/")
	tree(t, f.upper(), "both/u=4")
	for i := range 3000 {
		must(t, os.WriteFile(filepath.Join(f.lowers[0], "big", "f"+itoa(i)), nil, 0644))
	}
	var counted *countingLayer
	mnt, _ := f.mount(func(o *Options) {
		counted = &countingLayer{Layer: o.Lowers[0]}
		o.Lowers[0] = counted
	})
	p := func(s string) string { return filepath.Join(mnt, s) }

	sameNames(t, "lo", names(t, p("lo")), "a", "b")
	sameNames(t, "both", names(t, p("both")), "l", "u")
	if n := len(names(t, p("big"))); n != 3000 {
		t.Fatalf("big: %d names, want 3000", n)
	}
	before := counted.readDirs.Load()
	for _, d := range []string{"lo", "both", "big"} {
		// fsync of a directory lists nothing either.
		h, err := os.Open(p(d))
		must(t, err)
		must(t, h.Sync())
		must(t, h.Close())
	}
	for range 3 {
		sameNames(t, "lo again", names(t, p("lo")), "a", "b")
		sameNames(t, "both again", names(t, p("both")), "l", "u")
		if n := len(names(t, p("big"))); n != 3000 {
			t.Fatalf("big again: %d names, want 3000", n)
		}
	}
	if n := counted.readDirs.Load() - before; n != 0 {
		t.Errorf("listing unchanged directories again asked the lower %d times, want 0", n)
	}

	steps := []struct {
		do   func()
		dir  string
		want []string
	}{
		{func() { must(t, os.WriteFile(p("lo/c"), nil, 0644)) }, "lo", []string{"a", "b", "c"}},
		{func() { must(t, os.Remove(p("lo/a"))) }, "lo", []string{"b", "c"}},
		{func() { must(t, os.Rename(p("lo/b"), p("both/b"))) }, "lo", []string{"c"}},
		{func() {}, "both", []string{"b", "l", "u"}},
		{func() { must(t, os.Remove(p("both/u"))) }, "both", []string{"b", "l"}},
		{func() { must(t, os.Mkdir(p("both/d"), 0755)) }, "both", []string{"b", "d", "l"}},
		{func() { must(t, os.Remove(p("both/d"))) }, "both", []string{"b", "l"}},
		{func() { must(t, os.Remove(p("big/f0"))) }, "", nil},
	}
	for i, s := range steps {
		s.do()
		if s.dir != "" {
			sameNames(t, "step "+itoa(i)+" "+s.dir, names(t, p(s.dir)), s.want...)
		}
	}
	if n := len(names(t, p("big"))); n != 2999 {
		t.Fatalf("big after unlink: %d names, want 2999", n)
	}
}

// TestListingsConcurrent lists one large directory from several
// goroutines at once, each through its own open directory, while the
// kernel fills its cache: every reader must see every name once.
func TestListingsConcurrent(t *testing.T) {
	f := newFixture(t, 1)
	tree(t, f.lowers[0], "big/")
	for i := range 5000 {
		must(t, os.WriteFile(filepath.Join(f.lowers[0], "big", "name-"+itoa(i)), nil, 0644))
	}
	mnt, _ := f.mount()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := os.Open(filepath.Join(mnt, "big"))
			if err != nil {
				t.Error(err)
				return
			}
			defer d.Close()
			seen := map[string]bool{}
			for {
				ns, err := d.Readdirnames(37)
				for _, n := range ns {
					if seen[n] {
						t.Errorf("%s listed twice", n)
					}
					seen[n] = true
				}
				if err != nil || len(ns) == 0 {
					break
				}
			}
			if len(seen) != 5000 {
				t.Errorf("%d names, want 5000", len(seen))
			}
		}()
	}
	wg.Wait()
}

// TestListingsForgotten reads directories in part (their nodes keep the
// snapshot read in), removes one so the kernel forgets it, then reads the
// others in part and whole: no request may reach the forgotten node (an
// earlier design kept server handles open across requests, and releasing
// the forgotten one's made go-fuse panic), and each listing is whole.
func TestListingsForgotten(t *testing.T) {
	f := newFixture(t, 1)
	const dirs, count = 6, 600 // more names than one READDIRPLUS reply holds
	for d := range dirs {
		dir := filepath.Join(f.upper(), "d"+itoa(d))
		must(t, os.MkdirAll(dir, 0755))
		for i := range count {
			must(t, os.WriteFile(filepath.Join(dir, "name-"+itoa(i)), nil, 0644))
		}
	}
	mnt, _ := f.mount()
	partly := func(d int) {
		h, err := os.Open(filepath.Join(mnt, "d"+itoa(d)))
		must(t, err)
		if _, err := h.Readdirnames(5); err != nil {
			t.Fatal(err)
		}
		must(t, h.Close())
	}
	partly(0)
	dir := filepath.Join(mnt, "d0")
	for i := range count {
		must(t, os.Remove(filepath.Join(dir, "name-"+itoa(i))))
	}
	must(t, os.Remove(dir))
	for d := 1; d < dirs; d++ {
		partly(d)
	}
	for d := 1; d < dirs; d++ {
		if n := len(names(t, filepath.Join(mnt, "d"+itoa(d)))); n != count {
			t.Fatalf("d%d: %d names, want %d", d, n, count)
		}
	}
}

// TestListingsUnderChurn lists a merged directory from two goroutines
// while two others create and remove other names in it. Each change
// makes the kernel drop its listing, and the kernel opens directories
// without the server (see opendir.go), so the two readers' requests come
// to one node without a handle to tell them apart, and each new listing
// takes a new snapshot: a reader resuming from its offset in a snapshot
// taken since must still see every name that stayed, once.
func TestListingsUnderChurn(t *testing.T) {
	f := newFixture(t, 1)
	tree(t, f.lowers[0], "d/")
	const stay = 300
	for i := range stay {
		must(t, os.WriteFile(filepath.Join(f.lowers[0], "d", "stay-"+itoa(i)), nil, 0644))
	}
	mnt, _ := f.mount()
	dir := filepath.Join(mnt, "d")
	stop := make(chan struct{})
	var churn sync.WaitGroup
	for g := range 2 {
		churn.Add(1)
		go func() {
			defer churn.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := filepath.Join(dir, "zz-"+itoa(g)+"-"+itoa(i%50))
				if err := os.WriteFile(p, nil, 0644); err != nil {
					t.Error(err)
					return
				}
				if err := os.Remove(p); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	var readers sync.WaitGroup
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for range 150 {
				if err := listOnce(dir, stay); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	readers.Wait()
	close(stop)
	churn.Wait()
}

// listOnce lists dir in small pieces and checks that it holds the names
// stay-0 ... stay-(n-1), each once, besides others.
func listOnce(dir string, n int) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	seen := map[string]bool{}
	for {
		ns, err := d.Readdirnames(37)
		for _, name := range ns {
			if !strings.HasPrefix(name, "stay-") {
				continue
			}
			if seen[name] {
				return fmt.Errorf("%s listed twice", name)
			}
			seen[name] = true
		}
		if err == io.EOF || len(ns) == 0 {
			break
		}
		if err != nil {
			return err
		}
	}
	if len(seen) != n {
		return fmt.Errorf("%d of the %d names that stay listed", len(seen), n)
	}
	return nil
}

// TestListingsMixedBufferSizes: one process reads a large directory with
// a 32 KiB getdents buffer (the kernel then asks for 32 KiB of entries at
// once), another seeks into the middle of what that returned and reads
// on with 4 KiB buffers. Both reach the server as handle-less requests on
// one node; the second must get every entry after its offset, once. A
// handle shared between the two let go-fuse serve the second the rest of
// the first one's reply, which did not fit, and then skip what had not.
func TestListingsMixedBufferSizes(t *testing.T) {
	f := newFixture(t, 1)
	mnt, _ := f.mount()
	dir := filepath.Join(mnt, "big")
	must(t, os.Mkdir(dir, 0o755))
	for i := range 1000 {
		must(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("name-%04d", i)), nil, 0o644))
	}
	type ent struct {
		name string
		off  int64
	}
	read := func(fd, size int) []ent {
		buf := make([]byte, size)
		n, err := unix.Getdents(fd, buf)
		must(t, err)
		var out []ent
		for b := buf[:n]; len(b) > 0; {
			reclen := int(binary.NativeEndian.Uint16(b[16:]))
			name := unix.ByteSliceToString(b[19:reclen])
			if name != "." && name != ".." {
				out = append(out, ent{name, int64(binary.NativeEndian.Uint64(b[8:]))})
			}
			b = b[reclen:]
		}
		return out
	}
	fd1, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(t, err)
	defer unix.Close(fd1)
	first := read(fd1, 32<<10)
	if len(first) < 100 {
		t.Fatalf("a 32 KiB getdents returned %d entries", len(first))
	}
	from := first[len(first)/3]
	fd2, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(t, err)
	defer unix.Close(fd2)
	_, err = unix.Seek(fd2, from.off, 0)
	must(t, err)
	seen := map[string]bool{}
	for {
		es := read(fd2, 4<<10)
		if len(es) == 0 {
			break
		}
		for _, e := range es {
			if seen[e.name] {
				t.Fatalf("%s listed twice", e.name)
			}
			seen[e.name] = true
		}
	}
	// Everything fd1 got after the offset, and the rest of the 1000
	// names that hash above it, comes once.
	for _, e := range first[len(first)/3+1:] {
		if !seen[e.name] {
			t.Errorf("%s, after the offset in the first reply, was not listed", e.name)
		}
	}
	want := 0
	for i := range 1000 {
		if nameCookie(fmt.Sprintf("name-%04d", i)) > uint64(from.off) {
			want++
		}
	}
	if len(seen) != want {
		t.Errorf("%d names after the offset, want %d", len(seen), want)
	}
}
