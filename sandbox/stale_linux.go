// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Session directories and their locks.
//
// Stage 0 makes the session directory (<tmp>/husk-<digits>) and removes
// it at the end, but a husk killed with SIGKILL along with its stages
// leaves it behind, empty. From the host a live session's directory looks
// just as empty (stage 1's tmpfs on it is mounted only in stage 1's
// mount namespace), and removing it would detach that mount in the live
// container, so an age or emptiness test is not enough: liveness has to
// be known. Stage 0 therefore opens the directory and takes flock
// LOCK_EX on it; stage 1 and, in fusermount3 mode, stage 3 inherit that
// open file description (marked close-on-exec there, so it never reaches
// the payload), and the lock lasts as long as any of them does. A later
// run removes the directories of its user whose lock it can take without
// waiting.

// sessionPrefix starts the name of a session directory; os.MkdirTemp
// puts decimal digits after it.
const sessionPrefix = "husk-"

// maxSweep bounds how many stale directories one run removes, so a
// directory with thousands of them costs each run little.
const maxSweep = 64

// newSessionDir makes a session directory in os.TempDir and returns it
// with the open directory, locked. The lock is taken after mkdir, so a
// concurrent sweep may remove the new directory first: that shows as the
// path no longer naming the locked directory, and a new one is made.
func newSessionDir() (string, *os.File, error) {
	for try := 0; ; try++ {
		dir, f, err := lockNewDir()
		if err == nil || try == 5 {
			return dir, f, err
		}
		if !errors.Is(err, errSwept) {
			return "", nil, err
		}
	}
}

var errSwept = errors.New("removed by a sweep")

func lockNewDir() (string, *os.File, error) {
	dir, err := os.MkdirTemp("", sessionPrefix)
	if err != nil {
		return "", nil, err
	}
	f, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil, errSwept
	}
	if err != nil {
		os.Remove(dir)
		return "", nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		os.Remove(dir)
		return "", nil, &os.PathError{Op: "flock", Path: dir, Err: err}
	}
	if !sameDir(int(f.Fd()), dir) {
		f.Close()
		return "", nil, errSwept
	}
	return dir, f, nil
}

// sameDir says whether path still names the directory open as fd.
func sameDir(fd int, path string) bool {
	var a, b unix.Stat_t
	if unix.Fstat(fd, &a) != nil || unix.Lstat(path, &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino && a.Nlink > 0
}

// isSessionName says whether name is one newSessionDir makes.
func isSessionName(name string) bool {
	digits, ok := strings.CutPrefix(name, sessionPrefix)
	if !ok || digits == "" {
		return false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// sweepStale removes up to maxSweep stale session directories in dir:
// named as newSessionDir names them, owned by this user, empty, and
// unlocked (no stage of their run is alive), each with its fusermount3
// mount point <session>.root if that is an empty directory too. own is
// this run's session, skipped. It returns how many it removed; failures
// only skip a directory.
func sweepStale(dir, own string, log *slog.Logger) int {
	d, err := os.Open(dir)
	if err != nil {
		return 0
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return 0
	}
	n := 0
	scan := &mountScan{dir: dir, log: log}
	for _, name := range names {
		path := filepath.Join(dir, name)
		if !isSessionName(name) || path == own {
			continue
		}
		if err := removeStale(path, scan); err != nil {
			continue
		}
		n++
		if n == maxSweep {
			break
		}
	}
	if n > 0 {
		log.Debug("stale session directories removed", "dir", dir, "count", n)
	}
	return n
}

// mountScan answers which session directories are mounted somewhere,
// scanning the mount namespaces once: that costs milliseconds, so only
// once a directory passed the cheap tests (not at all in the usual case).
type mountScan struct {
	dir    string
	log    *slog.Logger
	mounts map[string]bool
}

func (m *mountScan) mounted(path string) bool {
	if m.mounts == nil {
		m.mounts = sessionMounts(m.dir)
	}
	return m.mounts[path]
}

// detachDead detaches root, fusermount3 mode's mount point of a session
// whose lock is free, if a FUSE mount there is dead: no stage of its run
// is alive, so its server (stage 3) is gone, and the mount answers
// ENOTCONN until it is unmounted. A SIGKILL of every process of the run
// at once (a cgroup kill, as Slurm's scancel does) leaves it so; stage 0,
// which would have detached it, died too.
func (m *mountScan) detachDead(root string) {
	// Forced to ask the server: the kernel answers a plain stat from the
	// attributes it kept, dead connection or not.
	var st unix.Statx_t
	err := unix.Statx(unix.AT_FDCWD, root, unix.AT_STATX_FORCE_SYNC|unix.AT_SYMLINK_NOFOLLOW,
		unix.STATX_BASIC_STATS, &st)
	if !errors.Is(err, unix.ENOTCONN) {
		return
	}
	lazyUnmount(root, m.log)
	m.mounts = nil // scanned with it
}

// removeStale removes the session directory path if it is this user's,
// empty, unlocked and not mounted, with its fusermount3 mount point
// (detached first if its server died).
func removeStale(path string, scan *mountScan) error {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return err
	}
	// An empty directory has two links; more means subdirectories.
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || int(st.Uid) != os.Getuid() || st.Nlink != 2 {
		return fmt.Errorf("%s: not an empty directory of this user", path)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|
		unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return err // a stage of its run is alive
	}
	// Holding the lock, and the name still the locked directory: no run
	// can start using it now (newSessionDir checks the same after locking).
	if !sameDir(fd, path) {
		return fmt.Errorf("%s: replaced", path)
	}
	scan.detachDead(path + ".root")
	if scan.mounted(path) {
		return fmt.Errorf("%s: mounted in a live container", path)
	}
	if err := unix.Rmdir(path); err != nil {
		return err
	}
	// fusermount3 mode's mount point; busy (and kept) if still mounted.
	_ = unix.Rmdir(path + ".root")
	return nil
}

// sessionMounts returns the session directories in dir that are mount
// points in the mount namespace of some process of this user (stage 1's
// tmpfs, stage 3's <session>.root): a second guard, for sessions of a
// husk from before the lock, which stage 1 serves as long as they live.
func sessionMounts(dir string) map[string]bool {
	found := map[string]bool{}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return found
	}
	seen := map[string]bool{}
	prefix := filepath.Join(dir, sessionPrefix)
	for _, e := range procs {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		ns, err := os.Readlink("/proc/" + e.Name() + "/ns/mnt")
		if err != nil || seen[ns] {
			continue // another user's, or gone
		}
		seen[ns] = true
		b, err := os.ReadFile("/proc/" + e.Name() + "/mountinfo")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			// id parent major:minor root mountpoint ...
			f := strings.SplitN(line, " ", 6)
			if len(f) < 5 {
				continue
			}
			// Escaped as octal: a TMPDIR with a space shows as \040.
			mp := unescapeMountinfo(f[4])
			if !strings.HasPrefix(mp, prefix) {
				continue
			}
			if i := strings.IndexByte(mp[len(prefix):], '/'); i >= 0 {
				mp = mp[:len(prefix)+i]
			}
			found[strings.TrimSuffix(mp, ".root")] = true
		}
	}
	return found
}
