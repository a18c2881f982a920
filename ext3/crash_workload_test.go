package ext3

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"
	"time"
)

// The crash workload runs in a child process (see TestMain) that the
// crash test kills with SIGKILL. Before each change it appends an intent
// line to an event log outside the image; after each Fsync returns it
// appends "sync OBJ PATH SHA256" and fsyncs the log. The log is written
// with plain write(2) calls, which a SIGKILL cannot undo, so the checker
// knows every change that may have reached the image and every state the
// image must still hold. The checker rebuilds file contents from the
// log (crash_check_test.go), so the two must agree on crashData.

// Environment of the workload child.
const (
	crashEnvHelper = "HUSK_CRASH_HELPER" // "work" or "recover"
	crashEnvImage  = "HUSK_CRASH_IMAGE"
	crashEnvLog    = "HUSK_CRASH_LOG"
	crashEnvSeed   = "HUSK_CRASH_SEED"
	crashEnvRun    = "HUSK_CRASH_RUN"
)

// crashMaxOps ends a workload that was not killed; it then closes the
// file system cleanly, which the checker verifies as well (every file at
// its last state). One run in eight is short enough to get there.
const crashMaxOps = 3000

// crashData returns n bytes derived from seed, never zero, so that
// zeros or another file's bytes in a file are never mistaken for data.
func crashData(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32()%255) + 1
	}
	return b
}

// crashHash is the content hash written to sync lines.
func crashHash(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// crashObj is a file the workload made, as the workload knows it.
type crashObj struct {
	id      int
	ino     uint32
	path    string // "" once unlinked
	content []byte
}

type crashWorker struct {
	fs   *FS
	log  *os.File
	rng  *rand.Rand
	run  int
	dirs map[string]uint32 // directory path -> inode
	objs []*crashObj       // objects with a path
	next int               // next object id
	tmp  int               // next tmp directory number
}

// crashHelperMain is the body of the child process; it returns the exit
// status.
func crashHelperMain(mode string) int {
	img, logPath := os.Getenv(crashEnvImage), os.Getenv(crashEnvLog)
	seed, _ := strconv.ParseUint(os.Getenv(crashEnvSeed), 10, 64)
	run, _ := strconv.Atoi(os.Getenv(crashEnvRun))
	fh, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash helper:", err)
		return 2
	}
	st, err := fh.Stat()
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash helper:", err)
		return 2
	}
	rng := rand.New(rand.NewPCG(seed, uint64(run)))
	// Background commits at a random interval interleave with the ops,
	// so kills land in commits that run beside the workload.
	interval := time.Duration(1+rng.IntN(50)) * time.Millisecond
	if mode == "recover" {
		fmt.Println("opening") // the parent starts its kill timer now
	}
	fs, err := Open(NewSection(fh, 0, st.Size()), st.Size(), Options{CommitInterval: interval})
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash helper: open:", err)
		return 2
	}
	if mode == "recover" {
		if err := fs.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "crash helper: close:", err)
			return 2
		}
		return 0
	}
	lf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash helper:", err)
		return 2
	}
	w := &crashWorker{fs: fs, log: lf, rng: rng, run: run, dirs: map[string]uint32{}}
	w.logf("run %d", w.run)
	fmt.Println("ready") // the parent starts its kill timer now
	if err := w.work(); err != nil {
		w.logf("error %s", err)
		fmt.Fprintln(os.Stderr, "crash helper:", err)
		return 1
	}
	if err := fs.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "crash helper: close:", err)
		return 1
	}
	w.logf("closed")
	lf.Sync()
	return 0
}

func (w *crashWorker) logf(format string, args ...any) {
	// One write per line; an error here ends the workload at the next op.
	fmt.Fprintf(w.log, format+"\n", args...)
}

func (w *crashWorker) work() error {
	if err := w.removeOldRuns(); err != nil {
		return err
	}
	base := fmt.Sprintf("r%d", w.run)
	ino, err := w.fs.Mkdir(RootIno, base, 0o755, 0, 0)
	if err != nil {
		return fmt.Errorf("mkdir %s: %w", base, err)
	}
	w.dirs[base] = ino.Ino
	for i := range 4 {
		name := fmt.Sprintf("d%d", i)
		a, err := w.fs.Mkdir(ino.Ino, name, 0o755, 0, 0)
		if err != nil {
			return fmt.Errorf("mkdir %s/%s: %w", base, name, err)
		}
		w.dirs[base+"/"+name] = a.Ino
	}
	ops := crashMaxOps
	if w.rng.IntN(8) == 0 {
		ops = 20 + w.rng.IntN(200)
	}
	for range ops {
		if err := w.step(); err != nil {
			return err
		}
	}
	return nil
}

// removeOldRuns deletes the trees of runs before the previous one, so
// blocks and inodes freed here are reused by this run while the crash
// may still undo the deletes.
func (w *crashWorker) removeOldRuns() error {
	ents, err := w.fs.ReadDir(RootIno)
	if err != nil {
		return err
	}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name[1:])
		if e.Name[0] != 'r' || err != nil || n >= w.run-1 {
			continue
		}
		if err := w.removeTree(RootIno, e.Name); err != nil {
			return fmt.Errorf("remove %s: %w", e.Name, err)
		}
	}
	return nil
}

func (w *crashWorker) removeTree(dir uint32, name string) error {
	a, err := w.fs.Lookup(dir, name)
	if err != nil {
		return err
	}
	if a.Mode&sIFMT != sIFDIR {
		return w.fs.Unlink(dir, name)
	}
	ents, err := w.fs.ReadDir(a.Ino)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := w.removeTree(a.Ino, e.Name); err != nil {
			return err
		}
	}
	return w.fs.Rmdir(dir, name)
}

// step runs one random operation.
func (w *crashWorker) step() error {
	n := w.rng.IntN(100)
	if len(w.objs) == 0 || (n < 14 && len(w.objs) < 40) {
		return w.create()
	}
	o := w.objs[w.rng.IntN(len(w.objs))]
	switch {
	case n < 30:
		return w.write(o, int64(len(o.content)), w.size()) // append
	case n < 42:
		off := int64(0)
		if len(o.content) > 0 {
			off = w.rng.Int64N(int64(len(o.content)))
		}
		return w.write(o, off, w.size())
	case n < 45:
		return w.write(o, int64(len(o.content))+w.rng.Int64N(40000), 1+w.rng.IntN(3000))
	case n < 51:
		return w.truncate(o, int64(w.rng.IntN(len(o.content)+5000)))
	case n < 56:
		return w.setxattr(o)
	case n < 64:
		return w.rename(o)
	case n < 70:
		return w.unlink(o)
	case n < 85:
		return w.fsync(o)
	case n < 87:
		w.logf("syncfs-start")
		if err := w.fs.Sync(); err != nil {
			return fmt.Errorf("sync: %w", err)
		}
		w.logf("syncfs")
		return w.log.Sync()
	case n < 90:
		return w.tmpDir()
	default:
		return w.openUnlinked(o)
	}
}

// size is a write length: mostly small, sometimes spanning many blocks.
func (w *crashWorker) size() int {
	if w.rng.IntN(8) == 0 {
		return 1 + w.rng.IntN(200_000)
	}
	return 1 + w.rng.IntN(6000)
}

func (w *crashWorker) dirOf(path string) (uint32, string) {
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '/' {
			return w.dirs[path[:i]], path[i+1:]
		}
	}
	return RootIno, path
}

func (w *crashWorker) randomPath() string {
	return fmt.Sprintf("r%d/d%d/f%d", w.run, w.rng.IntN(4), w.rng.IntN(60))
}

func (w *crashWorker) objAt(path string) *crashObj {
	for _, o := range w.objs {
		if o.path == path {
			return o
		}
	}
	return nil
}

func (w *crashWorker) drop(o *crashObj) {
	for i, x := range w.objs {
		if x == o {
			w.objs = append(w.objs[:i], w.objs[i+1:]...)
			break
		}
	}
	o.path = ""
}

func (w *crashWorker) create() error {
	path := w.randomPath()
	if w.objAt(path) != nil {
		return nil
	}
	o := &crashObj{id: w.next, path: path}
	w.next++
	w.logf("create %d %s", o.id, path)
	dir, name := w.dirOf(path)
	a, err := w.fs.Create(dir, name, 0o644, 0, 0)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	o.ino = a.Ino
	w.objs = append(w.objs, o)
	return nil
}

func (w *crashWorker) write(o *crashObj, off int64, n int) error {
	seed := w.rng.Uint64()
	w.logf("write %d %d %d %d", o.id, off, n, seed)
	p := crashData(seed, n)
	if _, err := w.fs.WriteAt(o.ino, p, off); err != nil {
		return fmt.Errorf("write %s (obj %d) at %d: %w", o.path, o.id, off, err)
	}
	o.content = crashApplyWrite(o.content, p, off)
	return nil
}

func (w *crashWorker) truncate(o *crashObj, size int64) error {
	w.logf("trunc %d %d", o.id, size)
	if _, err := w.fs.Setattr(o.ino, SetAttr{SetSize: true, Size: uint64(size)}); err != nil {
		return fmt.Errorf("truncate %s (obj %d) to %d: %w", o.path, o.id, size, err)
	}
	o.content = crashApplyTrunc(o.content, size)
	return nil
}

func (w *crashWorker) setxattr(o *crashObj) error {
	seed, n := w.rng.Uint64(), 1+w.rng.IntN(200)
	w.logf("xattr %d %d %d", o.id, seed, n)
	if err := w.fs.Setxattr(o.ino, "user.crash", crashData(seed, n), 0); err != nil {
		return fmt.Errorf("setxattr %s (obj %d): %w", o.path, o.id, err)
	}
	return nil
}

func (w *crashWorker) rename(o *crashObj) error {
	to := w.randomPath()
	if to == o.path {
		return nil
	}
	w.logf("rename %d %s", o.id, to)
	od, on := w.dirOf(o.path)
	nd, nn := w.dirOf(to)
	if err := w.fs.Rename(od, on, nd, nn, 0); err != nil {
		return fmt.Errorf("rename %s to %s: %w", o.path, to, err)
	}
	if victim := w.objAt(to); victim != nil {
		w.drop(victim)
	}
	o.path = to
	return nil
}

func (w *crashWorker) unlink(o *crashObj) error {
	w.logf("unlink %d", o.id)
	dir, name := w.dirOf(o.path)
	if err := w.fs.Unlink(dir, name); err != nil {
		return fmt.Errorf("unlink %s: %w", o.path, err)
	}
	w.drop(o)
	return nil
}

func (w *crashWorker) fsync(o *crashObj) error {
	if err := w.fs.Fsync(o.ino, false); err != nil {
		return fmt.Errorf("fsync %s: %w", o.path, err)
	}
	w.logf("sync %d %s %s", o.id, o.path, crashHash(o.content))
	return w.log.Sync()
}

// tmpDir makes or removes an empty directory, which moves directory
// blocks and inodes in and out of use.
func (w *crashWorker) tmpDir() error {
	base := w.dirs[fmt.Sprintf("r%d", w.run)]
	if w.tmp > 0 && w.rng.IntN(2) == 0 {
		name := fmt.Sprintf("t%d", w.rng.IntN(w.tmp))
		err := w.fs.Rmdir(base, name)
		if errors.Is(err, syscall.ENOENT) {
			return nil
		}
		return err
	}
	_, err := w.fs.Mkdir(base, fmt.Sprintf("t%d", w.tmp), 0o700, 0, 0)
	w.tmp++
	return err
}

// openUnlinked keeps o open, unlinks it, writes to and fsyncs the
// orphan, and sometimes releases it: a crash leaves an orphan inode that
// the next open must free.
//
// The write is logged like any other: a kill before the fsync's commit
// may undo the unlink (and a shrinking truncate before it) yet keep the
// write's data in a block the file still has, written home before the
// commit as ordered data is. The file is then back at its path with those
// bytes in it.
func (w *crashWorker) openUnlinked(o *crashObj) error {
	if err := w.fs.Open(o.ino); err != nil {
		return fmt.Errorf("open %s: %w", o.path, err)
	}
	if err := w.unlink(o); err != nil {
		return err
	}
	seed, n, off := w.rng.Uint64(), w.size(), int64(len(o.content))
	w.logf("write %d %d %d %d", o.id, off, n, seed)
	p := crashData(seed, n)
	if _, err := w.fs.WriteAt(o.ino, p, off); err != nil {
		return fmt.Errorf("write orphan obj %d: %w", o.id, err)
	}
	if err := w.fs.Fsync(o.ino, false); err != nil {
		return fmt.Errorf("fsync orphan obj %d: %w", o.id, err)
	}
	if w.rng.IntN(2) == 0 {
		return nil // stays open until the process dies
	}
	return w.fs.Release(o.ino)
}

// crashApplyWrite returns content after writing p at off.
func crashApplyWrite(content, p []byte, off int64) []byte {
	end := off + int64(len(p))
	if end > int64(len(content)) {
		content = append(content, make([]byte, end-int64(len(content)))...)
	}
	copy(content[off:], p)
	return content
}

// crashApplyTrunc returns content truncated or extended with zeros.
func crashApplyTrunc(content []byte, size int64) []byte {
	if size <= int64(len(content)) {
		return content[:size:size]
	}
	return append(content, make([]byte, size-int64(len(content)))...)
}
