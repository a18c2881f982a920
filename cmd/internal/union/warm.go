package union

import (
	"errors"
	"log/slog"
	"os"
	"path"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/husk-project/husk/fusefs"
	"github.com/husk-project/husk/internal/detach"
)

// Warming: the payload's first programs (the launcher's /bin/sh, then the
// command) start cold. Each page the kernel faults in of them and of the
// libraries they load is a FUSE read, and the first read of each squashfs
// block decodes it while the program and its core wait: about a third of
// `husk exec IMAGE true`, and 20 ms of a python3 start. Stage 1 knows these
// programs before the container exists, and its second core is mostly idle
// while the binds are mounted and stage 2 pivots: a goroutine then opens
// them in the union, with their ELF interpreter and the libraries they
// name (two levels deep, where the loader looks), and has the kernel read
// them ahead (POSIX_FADV_WILLNEED: its READ requests go out together and
// stage 1 serves them on every core), so that the kernel has their names
// and pages cached when the payload starts. Files of the image layers
// keep their page cache across opens (FOPEN_KEEP_CACHE); a read the
// payload makes meanwhile waits for the block being decoded rather than
// decode it twice. It is a hint: a program that is missing, not ELF, or
// damaged is passed over (the payload meets and reports the damage).
// The image is not trusted: one file is open at a time, at most warmFiles
// per program, names resolve inside the union only, and the ELF tables
// read are those the loader reads, bounded (elfdeps.go), so a hostile
// program costs no more than a benign one and Stop returns at once.

const (
	warmFileMax  = 8 << 20  // larger files are not read (their libraries are)
	warmTotalMax = 24 << 20 // nor more than this in all
)

// warmDepth is how many levels of files are read: the program, the
// libraries it names, and theirs (a variable for tests).
var warmDepth = 3

// warmFiles is how many files are opened at most for one program.
const warmFiles = 64

// warmPath is searched for a program named without a slash: Apptainer's
// default PATH, which the image's environment seldom changes.
var warmPath = []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin",
	"/sbin", "/bin"}

// warmer reads programs in the union mounted at a directory.
type warmer struct {
	root int // the union's root directory, O_PATH
	log  *slog.Logger
	stop chan struct{}
	done sync.WaitGroup

	seen  map[[2]uint64]bool // device and inode of the files handled
	total int64              // bytes asked for so far
	read  []string           // the files asked for, in order
}

// startWarm starts reading progs in the union mounted at dir. The
// result's Stop ends it; nil if dir cannot be opened.
func startWarm(dir string, progs []string, log *slog.Logger) *warmer {
	w := newWarm(dir, log)
	if w != nil {
		w.start(progs)
	}
	return w
}

// newWarm opens the union mounted at dir for a warmer; nil if it cannot.
func newWarm(dir string, log *slog.Logger) *warmer {
	root, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		log.Debug("not reading programs ahead", "err", err)
		return nil
	}
	return &warmer{root: root, log: log, stop: make(chan struct{}),
		seen: map[[2]uint64]bool{}}
}

// start reads progs in a goroutine of its own.
func (w *warmer) start(progs []string) {
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		detach.Run(func() { w.programs(progs) }) // it opens files in the union
	}()
}

// programs reads progs and the files they load.
func (w *warmer) programs(progs []string) {
	defer func() {
		// debug/elf on a hostile image must not take the server down.
		if r := recover(); r != nil {
			w.log.Debug("reading programs ahead stopped", "panic", r)
		}
	}()
	start := time.Now()
	for _, p := range progs {
		w.program(p)
	}
	w.log.Debug("programs read ahead", "programs", progs, "files", len(w.read),
		"MiB", w.total>>20, "took", time.Since(start).Round(time.Microsecond))
}

// Stop ends the reading after the file in progress and waits for it.
func (w *warmer) Stop() {
	close(w.stop)
	w.done.Wait()
	unix.Close(w.root)
}

func (w *warmer) stopped() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}

// program reads program p and the files it loads, breadth first, one
// file open at a time and at most warmFiles of them.
func (w *warmer) program(p string) {
	type item struct {
		paths []string // tried in turn
		depth int
	}
	queue := []item{{[]string{p}, 0}}
	tried := map[string]bool{}
	for opened := 0; len(queue) > 0 && opened < warmFiles && !w.stopped(); {
		it := queue[0]
		queue = queue[1:]
		f, name, err := w.find(it.paths, tried)
		if err != nil {
			if it.depth == 0 {
				w.log.Debug("not reading ahead", "program", p, "err", err)
			}
			continue
		}
		opened++
		deps := w.file(f, name)
		f.Close()
		if it.depth+1 < warmDepth {
			for _, d := range deps {
				queue = append(queue, item{d, it.depth + 1})
			}
		}
	}
}

// file asks the kernel to read f (named name) into its page cache, once,
// and returns the interpreter and the libraries it names if it is a
// dynamic ELF file, each as the paths the loader would try.
func (w *warmer) file(f *os.File, name string) [][]string {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil
	}
	key := [2]uint64{st.Dev, st.Ino}
	if w.seen[key] {
		return nil
	}
	w.seen[key] = true
	if st.Size <= warmFileMax && w.total+st.Size <= warmTotalMax {
		if err := fusefs.ReadAhead(f, 0, st.Size); err != nil {
			w.log.Debug("not reading ahead", "file", name, "err", err)
			return nil
		}
		w.total += st.Size
		w.read = append(w.read, name)
	}
	interp, libs := elfDeps(f, st.Size)
	var out [][]string
	if interp != "" {
		out = append(out, []string{interp})
	}
	for _, lib := range libs {
		if strings.Contains(lib, "/") {
			out = append(out, []string{lib})
			continue
		}
		var alts []string
		for _, dir := range libDirs() {
			alts = append(alts, path.Join(dir, lib))
		}
		out = append(out, alts)
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

// find opens the first of paths that is a regular file; a name without a
// slash is searched in warmPath. tried records the paths tried, and
// whether they opened: one that did ends the search (errSeen), one that
// did not is passed over.
func (w *warmer) find(paths []string, tried map[string]bool) (*os.File, string, error) {
	var tries []string
	for _, p := range paths {
		if strings.Contains(p, "/") {
			tries = append(tries, p)
			continue
		}
		for _, dir := range warmPath {
			tries = append(tries, path.Join(dir, p))
		}
	}
	for _, p := range tries {
		if opened, ok := tried[p]; ok {
			if opened {
				return nil, "", errSeen // this library again
			}
			continue
		}
		f, err := w.open(p)
		tried[p] = err == nil
		if err == nil {
			return f, p, nil
		}
	}
	return nil, "", syscall.ENOENT
}

// open opens path p of the union as the container would see it (see
// fusefs.OpenInMount: the names come from the image).
func (w *warmer) open(p string) (*os.File, error) {
	f, _, err := fusefs.OpenInMount(w.root, p)
	return f, err
}

var errSeen = errors.New("already read")
