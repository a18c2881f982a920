package union

import (
	"debug/elf"
	"errors"
	"io"
	"log/slog"
	"path"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/husk-project/husk/squash"
)

// Warming: the payload's first programs (the launcher's /bin/sh, then the
// command) start cold. Each page the kernel faults in of them and of the
// libraries they load is a FUSE read, and the first read of each squashfs
// block decodes it while the program and its core wait: about a third of
// `husk exec IMAGE true`, and 20 ms of a python3 start. Stage 1 knows
// these programs before the container exists, and its second core is
// mostly idle while the binds are mounted and stage 2 pivots, so it
// decodes their blocks then, in the background: the program, its ELF
// interpreter and the libraries it names (two levels deep, found in the
// usual directories). Reads that arrive meanwhile wait for the block being
// decoded rather than decode it twice. It is a hint: a program that is not
// in the image's root filesystem, is not ELF, or is damaged is skipped
// (the payload meets and reports the damage itself).

const (
	warmFileMax  = 8 << 20  // larger files are not decoded (their libraries are)
	warmTotalMax = 16 << 20 // at most this much of the data cache
	maxSymlinks  = 40       // as the kernel's path walk
)

// warmPath is searched for a program named without a slash: Apptainer's
// default PATH, which the image's environment seldom changes.
var warmPath = []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin",
	"/sbin", "/bin"}

var errNotRegular = errors.New("not a regular file")

// warmer decodes programs of one squashfs image in a goroutine.
type warmer struct {
	fs   *squash.FS
	log  *slog.Logger
	stop chan struct{}
	done sync.WaitGroup

	seen    map[uint32]bool // inode numbers already handled
	total   int64           // bytes of files decoded so far
	decoded []uint32        // inode numbers of the files decoded, in order
}

// startWarm starts decoding progs of fs. The result's Stop ends it.
func startWarm(fs *squash.FS, progs []string, log *slog.Logger) *warmer {
	w := &warmer{fs: fs, log: log, stop: make(chan struct{}), seen: map[uint32]bool{}}
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		defer func() {
			// debug/elf on a hostile image must not take the server down.
			if r := recover(); r != nil {
				log.Debug("decoding ahead stopped", "panic", r)
			}
		}()
		start := time.Now()
		files := 0
		for _, p := range progs {
			files += w.program(p)
		}
		log.Debug("programs decoded ahead", "programs", progs, "files", files,
			"MiB", w.total>>20, "took", time.Since(start).Round(time.Microsecond))
	}()
	return w
}

// Stop ends the decoding after the block in progress and waits for it.
func (w *warmer) Stop() {
	close(w.stop)
	w.done.Wait()
}

func (w *warmer) stopped() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}

// program decodes program p and the libraries it loads, and returns how
// many files it decoded.
func (w *warmer) program(p string) int {
	n, err := w.find(p)
	if err != nil {
		w.log.Debug("not decoding ahead", "program", p, "err", err)
		return 0
	}
	files := 0
	libs := []*squash.Inode{n}
	for depth := 0; depth < 3 && len(libs) > 0 && !w.stopped(); depth++ {
		var next []*squash.Inode
		for _, f := range libs {
			if w.seen[f.Ino] || w.stopped() {
				continue
			}
			w.seen[f.Ino] = true
			if w.decode(f) {
				files++
			}
			next = append(next, w.needs(f)...)
		}
		libs = next
	}
	return files
}

// decode decodes file n if it fits the limits, and reports whether it did.
func (w *warmer) decode(n *squash.Inode) bool {
	if n.Size > warmFileMax || w.total+int64(n.Size) > warmTotalMax {
		return false
	}
	if err := w.fs.Prefetch(n, int64(n.Size)); err != nil {
		w.log.Debug("not decoding ahead", "inode", n.Ino, "err", err)
		return false
	}
	w.total += int64(n.Size)
	w.decoded = append(w.decoded, n.Ino)
	return true
}

// needs returns the ELF interpreter and the libraries ELF file n names,
// as the image has them; nothing if n is not a dynamic ELF file.
func (w *warmer) needs(n *squash.Inode) []*squash.Inode {
	f, err := elf.NewFile(io.NewSectionReader(inodeReader{w.fs, n}, 0, int64(n.Size)))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []*squash.Inode
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_INTERP {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(prog.Open(), 4096))
		if err != nil {
			break
		}
		if i, err := w.resolve(strings.TrimRight(string(b), "\x00")); err == nil {
			out = append(out, i)
		}
	}
	names, err := f.ImportedLibraries()
	if err != nil {
		return out
	}
	for _, name := range names {
		for _, dir := range libDirs() {
			if i, err := w.resolve(path.Join(dir, name)); err == nil {
				out = append(out, i)
				break
			}
		}
	}
	return out
}

// libDirs are the directories the dynamic loader of a Debian, Ubuntu or
// Red Hat image searches by default, its own architecture's first.
func libDirs() []string {
	triplet := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu",
		"ppc64le": "powerpc64le-linux-gnu", "riscv64": "riscv64-linux-gnu",
		"s390x": "s390x-linux-gnu", "386": "i386-linux-gnu"}[runtime.GOARCH]
	dirs := []string{"/lib64", "/usr/lib64", "/lib", "/usr/lib"}
	if triplet != "" {
		dirs = append([]string{"/lib/" + triplet, "/usr/lib/" + triplet}, dirs...)
	}
	return dirs
}

// find resolves program p: a path, or a name searched in warmPath.
func (w *warmer) find(p string) (*squash.Inode, error) {
	if strings.Contains(p, "/") {
		return w.resolve(p)
	}
	for _, dir := range warmPath {
		if n, err := w.resolve(path.Join(dir, p)); err == nil {
			return n, nil
		}
	}
	return nil, syscall.ENOENT
}

// resolve walks absolute path p in the image, following symbolic links as
// the kernel does, to a regular file.
func (w *warmer) resolve(p string) (*squash.Inode, error) {
	root, err := w.fs.Inode(w.fs.Root())
	if err != nil {
		return nil, err
	}
	stack := []*squash.Inode{root} // the directories walked, root first
	rest := strings.Split(p, "/")
	links := 0
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		dir := stack[len(stack)-1]
		if !dir.IsDir() {
			return nil, syscall.ENOTDIR
		}
		n, err := w.fs.Lookup(dir, name)
		if err != nil {
			return nil, err
		}
		switch n.Mode & syscall.S_IFMT {
		case syscall.S_IFLNK:
			if links++; links > maxSymlinks {
				return nil, syscall.ELOOP
			}
			target, err := w.fs.Readlink(n)
			if err != nil {
				return nil, err
			}
			if strings.HasPrefix(target, "/") {
				stack = stack[:1]
			}
			rest = append(strings.Split(target, "/"), rest...)
		case syscall.S_IFDIR:
			stack = append(stack, n)
		case syscall.S_IFREG:
			for _, r := range rest {
				if r != "" && r != "." {
					return nil, syscall.ENOTDIR
				}
			}
			return n, nil
		default:
			return nil, errNotRegular
		}
	}
	return nil, errNotRegular
}

// inodeReader reads a squashfs file as an io.ReaderAt.
type inodeReader struct {
	fs *squash.FS
	n  *squash.Inode
}

func (r inodeReader) ReadAt(p []byte, off int64) (int, error) { return r.fs.ReadAt(r.n, p, off) }
