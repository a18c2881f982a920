package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/husk-project/husk/sandbox"
)

// --sharens (Apptainer's shared namespace mode): the containers that
// processes of one parent start with the same flags share one container.
// The first one runs its command in a new container that also serves
// joins, recorded as instance sharens_instance_<ppid>; the others wait
// until it runs and join it as `exec instance://` does.
//
// A lock file (<configdir>/instances/sharens/<host>/<user>/NAME.lock, out
// of the way of `instance list`) orders them, as Apptainer's /dev/shm
// file does: the first holds it exclusively until its container runs,
// then shared; the others wait for a shared lock.

// sharensName is the hidden instance of this process's parent.
func sharensName() string {
	return fmt.Sprintf("sharens_instance_%d", os.Getppid())
}

// sharensLock returns the lock file path of a --sharens group, creating
// its directory.
func sharensLock(name string) (string, error) {
	cd, err := configDir()
	if err != nil {
		return "", err
	}
	host, err := os.Hostname()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cd, "instances", "sharens", host, userName())
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	return filepath.Join(dir, name+".lock"), nil
}

// runSharens runs an action with --sharens. A process that meets the
// group's container as it ends (its last command gone, the connection
// closed before the command started) starts over, and then leads a group
// of its own: MPI had lost such a rank.
func runSharens(g *globals, command string, f *ActionFlags, img string, args []string) error {
	for try := 0; ; try++ {
		err := sharensOnce(g, command, f, img, args)
		if !errors.Is(err, sandbox.ErrNotJoined) && err != errGroupEnded {
			return err
		}
		if try == 20 {
			return fmt.Errorf("first process with --sharens has already exited, could not "+
				"execute process (pid %d)", os.Getpid())
		}
		g.Log.Debug("the --sharens group ended as this process joined: starting over")
		time.Sleep(100 * time.Millisecond)
	}
}

// errGroupEnded: the group's first process has ended (its record is gone)
// but may still hold the lock a new first process takes.
var errGroupEnded = errors.New("the --sharens group has ended")

// sharensOnce joins the group, or starts it when there is none.
func sharensOnce(g *globals, command string, f *ActionFlags, img string, args []string) error {
	name := sharensName()
	ip, err := pathsFor(name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(ip.Dir), 0o700); err != nil {
		return err
	}
	lockPath, err := sharensLock(name)
	if err != nil {
		return err
	}
	lock, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	fd := int(lock.Fd())
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err == nil {
		if !namesFile(lockPath, lock) {
			return errGroupEnded // removed by the last group's end
		}
		return firstSharens(g, command, f, img, args, name, ip, lock)
	}
	// Wait until the first process's container runs, then join it.
	if err := unix.Flock(fd, unix.LOCK_SH); err != nil {
		return &os.PathError{Op: "flock", Path: lock.Name(), Err: err}
	}
	if !namesFile(lockPath, lock) {
		return errGroupEnded
	}
	if _, alive, err := readRecord(ip.Record); err != nil || !alive {
		return errGroupEnded
	}
	// The processes of a group give the same container flags, made for
	// whichever comes first: no warning that the others' go unused.
	g.Given = nil
	return joinInstance(g, command, f, name, args)
}

// firstSharens runs the container of the first process, serving joins.
func firstSharens(g *globals, command string, f *ActionFlags, img string, args []string,
	name string, ip instancePaths, lock *os.File) error {
	os.RemoveAll(ip.Dir)
	if err := os.Mkdir(ip.Dir, 0o700); err != nil {
		return err
	}
	defer os.RemoveAll(ip.Dir)
	plan, spec, err := prepareAction(g, command, f, img, "", args)
	if err != nil {
		return err
	}
	defer plan.Close()
	// The record path holds the parent's pid and may be too long for a
	// socket address (108 bytes).
	sockDir, err := os.MkdirTemp("", "husk-sharens-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(sockDir)
	ip.Socket = filepath.Join(sockDir, "s")
	lf, err := listenJoins(ip.Socket, "--sharens socket")
	if err != nil {
		return err
	}
	defer lf.Close()
	rec := newRecord(name, img, ip, spec, f.Contain)
	rec.SharensMod = true
	var werr error
	code, err := sandbox.RunShared(context.Background(), spec, plan.Files, lf, g.Log,
		func(pid int) {
			rec.Pid = pid
			if werr = writeRecord(ip.Record, rec); werr != nil {
				return
			}
			// Release the others.
			_, _ = lock.WriteAt([]byte{1}, 0)
			_ = unix.Flock(int(lock.Fd()), unix.LOCK_SH)
		})
	os.Remove(ip.Record)
	_ = lock.Truncate(0)
	// The lock file goes with the group unless another process holds it
	// (one per parent process had piled up); one that opened it meanwhile
	// finds its path gone once it has the lock, and starts over.
	if unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
		os.Remove(lock.Name())
	}
	if err == nil && werr != nil {
		err = werr
	}
	g.Code = code
	return setupError(err)
}

// namesFile says whether path still names the open file f.
func namesFile(path string, f *os.File) bool {
	var a, b unix.Stat_t
	if unix.Fstat(int(f.Fd()), &a) != nil || unix.Stat(path, &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// sharensAlive says whether pid is a husk process, the first one of a
// --sharens group (which has no instance title).
func sharensAlive(pid int) bool {
	self, err := os.Readlink("/proc/self/exe")
	if err != nil || pid <= 0 {
		return false
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return err == nil && exe == self && syscall.Kill(pid, 0) == nil
}
