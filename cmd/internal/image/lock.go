package image

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// lockKey names one section of one file within this process.
type lockKey struct {
	dev, ino uint64
	off      int64
}

// held records the sections this process has locked, and how. OFD locks
// taken on two open file descriptions of the same file conflict with each
// other, so a second use inside one process must be caught here first to
// get Apptainer's "by this process" message.
var held = struct {
	sync.Mutex
	m map[lockKey]bool // true: write lock
}{m: map[lockKey]bool{}}

// Lock takes a non-blocking open-file-description lock over sec in
// img.File: a write lock when write is set, else a read lock (COMPAT §5).
// Only ext3 sections are locked; other sections return nil. The lock lasts
// as long as img.File's open file description, which the sandbox inherits.
// A filesystem without lock support (ENOLCK, ENOSYS, EOPNOTSUPP) is
// tolerated, with a debug message on log.
func Lock(img *Image, sec Section, write bool, log *slog.Logger) error {
	if sec.FS != FSExt3 || img.File == nil {
		return nil
	}
	l := lockReq{img: img, f: img.File, off: sec.Offset, n: sec.Size, write: write,
		what: "ext3 partition from", section: fmt.Sprintf(" section \"%d\"", sec.ID)}
	return l.take(log)
}

// lockReq is a lock Lock or LockDir takes for img on f.
type lockReq struct {
	img      *Image
	f        *os.File
	off, n   int64
	write    bool
	what     string // "ext3 partition from": the errors say what was locked
	section  string // for the debug message: ` section "2"`
	busyHint string // added to the error when another process holds it
}

// take takes the lock, refusing a second use in this process that
// conflicts with the first (OFD locks of one process conflict with each
// other, and Apptainer says "by this process"), and records it in img.
func (l lockReq) take(log *slog.Logger) error {
	path := l.img.Path
	wrap := func(msg string) error {
		return fmt.Errorf("while locking %s %s: %s", l.what, path, msg)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(l.f.Fd()), &st); err != nil {
		return wrap(err.Error())
	}
	key := lockKey{st.Dev, st.Ino, l.off}
	use := map[bool]string{false: "reading", true: "writing"}
	held.Lock()
	defer held.Unlock()
	if prev, ok := held.m[key]; ok && (prev || l.write) {
		return wrap(fmt.Sprintf("can't open %s for %s, already used for %s by this process",
			path, use[l.write], use[prev]))
	}
	switch err := ofdLock(l.f, l.write, l.off, l.n); {
	case err == nil:
	case errors.Is(err, errLocked):
		if l.write {
			return wrap(fmt.Sprintf("can't open %s for writing, currently in use by another "+
				"process%s", path, l.busyHint))
		}
		return wrap(fmt.Sprintf("can't open %s for reading, currently in use for writing by "+
			"another process", path))
	case errors.Is(err, unix.ENOLCK), errors.Is(err, unix.ENOSYS),
		errors.Is(err, unix.EOPNOTSUPP):
		if log != nil {
			log.Debug(fmt.Sprintf("Could not set lock on %s%s, underlying filesystem seems "+
				"to not support lock", path, l.section))
		}
	default:
		return wrap(err.Error())
	}
	held.m[key] = held.m[key] || l.write
	l.img.locks = append(l.img.locks, key)
	return nil
}

// DirLockName is the lock file of a directory overlay, in its work/.
const DirLockName = ".husk.lock"

// LockDir locks the directory overlay img for as long as img's lock file
// stays open (DirLockFile): for writing when write is set, else for
// reading, as Lock does for ext3 images. Apptainer locks no directory, but
// a directory upper serves one writable container at a time: each husk
// keeps what it knows of its upper (sizes, names) in the kernel's caches,
// and a trial's three containers appending to one file through a shared
// directory kept 301 of 900 lines, with no error. The lock is an OFD lock
// on work/.husk.lock, which works over NFS where flock(2) of a directory
// does not; it is made mode 0666, for directories shared by a group. A
// tree used read-only that is no overlay (no upper/) is not locked; a
// reader that cannot make the file (a directory it may not write) and a
// filesystem without locks go on unlocked, with a debug message on log.
func LockDir(img *Image, write bool, log *slog.Logger) error {
	if img.Kind != KindDir || img.dirLock != nil {
		return nil
	}
	if !write {
		if st, err := os.Stat(filepath.Join(img.Path, "upper")); err != nil || !st.IsDir() {
			return nil // a plain tree, used as it is: no overlay's to lock
		}
	}
	wrap := func(err error) error {
		return fmt.Errorf("while locking overlay directory %s: %w", img.Path, err)
	}
	// A reader makes work/ and the lock file too when it may, so that a
	// writer starting with it finds the lock taken.
	work := filepath.Join(img.Path, "work")
	if err := os.Mkdir(work, 0o755); err != nil && !errors.Is(err, os.ErrExist) && write {
		return wrap(err)
	}
	path := filepath.Join(work, DirLockName)
	flag := os.O_RDONLY
	if write {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(path, flag|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o666)
	if err == nil {
		// Anyone who may use the directory may lock it: one shared by a
		// group is used by several users in turn (umask took the bits).
		f.Chmod(0o666)
	} else if errors.Is(err, os.ErrExist) {
		f, err = os.OpenFile(path, flag|unix.O_NOFOLLOW, 0)
	}
	if err != nil {
		if write && errors.Is(err, os.ErrPermission) {
			return wrap(fmt.Errorf("%w (the lock file must be writable by each user "+
				"of the directory)", err))
		}
		if write {
			return wrap(err)
		}
		if log != nil {
			log.Debug("overlay directory not locked for reading", "dir", img.Path,
				"error", err)
		}
		return nil
	}
	l := lockReq{img: img, f: f, write: write, what: "overlay directory",
		busyHint: " (a directory overlay takes one writable container at a time; " +
			"share output through a bind, -B)"}
	if err := l.take(log); err != nil {
		f.Close()
		return err
	}
	img.dirLock = f
	return nil
}

// DirLockFile is the file holding img's directory lock, or nil.
func (img *Image) DirLockFile() *os.File { return img.dirLock }

// unlock forgets img's locks; closing its file releases them.
func (img *Image) unlock() {
	held.Lock()
	defer held.Unlock()
	for _, k := range img.locks {
		delete(held.m, k)
	}
	img.locks = nil
}

// LockBytes takes a write lock over n bytes of f from off (n 0: to the
// end of the file and past it) for a command that rewrites or reuses
// them: deleting a SIF object, or adding one where a deleted one lay. A
// container holds a lock on the overlay partition it uses (Lock) for as
// long as it runs, so one that fails means such bytes are in use and the
// command must not touch them. The lock lasts while f's open file
// description does; f must be open for writing.
func LockBytes(f *os.File, path string, off, n int64) error {
	switch err := ofdLock(f, true, off, n); {
	case err == nil, errors.Is(err, unix.ENOLCK):
		// ENOLCK: a filesystem without locks, where no container
		// could have locked them either (Lock tolerates it too).
		return nil
	case errors.Is(err, errLocked):
		return fmt.Errorf("%s: an overlay partition in it is in use by a running container",
			path)
	default:
		return fmt.Errorf("%s: locking: %w", path, err)
	}
}

// errLocked is ofdLock's answer when another open file description holds
// a conflicting lock.
var errLocked = errors.New("locked by another process")

// ofdLock takes a non-blocking open-file-description lock (a write lock
// with write, else a read lock) over n bytes of f from off (n 0: to the
// end and past it): errLocked when another holds a conflicting one, the
// system's error otherwise (ENOLCK where the filesystem has no locks).
func ofdLock(f *os.File, write bool, off, n int64) error {
	lk := unix.Flock_t{Type: unix.F_RDLCK, Whence: 0, Start: off, Len: n}
	if write {
		lk.Type = unix.F_WRLCK
	}
	err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
		return errLocked
	}
	return err
}
