// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// stage2 enters the container: it pivots into the union in its own mount
// namespace, then starts the payload and supervises it as its reaper.
// With unshare it was started in stage 1's namespaces and enters new ones
// itself, on this thread (see stage2Unshare).
func stage2(fw *forwarder, fds string, unshare bool) int {
	sio, err := openStage(2, fds)
	if err != nil {
		return sio.fail(err)
	}
	p, log := sio.plan, sio.log
	p.inherit = sio.files // the caller's descriptors (inherit_linux.go)
	if unshare {
		if err := stage2Unshare(p.Spec); err != nil {
			return sio.fail(err)
		}
	}
	logIDs(log, "mount namespace")

	var loader *hostLoader
	if p.Spec.Seccomp != nil {
		loader = openHostLoader(log) // before the pivot hides the host
	}
	procfd, err := enter(p, log)
	if err != nil {
		loader.Close()
		return sio.fail(err)
	}
	cwd, err := workDir(p, log)
	if err != nil {
		return sio.fail(err)
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return sio.fail(&os.SyscallError{Syscall: "prctl(PR_SET_CHILD_SUBREAPER)", Err: err})
	}

	// An instance ends on the first of these, once its payload is gone
	// too (the payload gets the signal forwarded).
	var stopc chan os.Signal
	if p.Spec.Instance {
		stopc = make(chan os.Signal, 1)
		signal.Notify(stopc, instanceStopSignals...)
	}
	applyLimits(p.Limits, log) // a joined command's caller's (rlimit_linux.go)
	sup := &supervisor{log: log, procfd: procfd, loader: loader}
	proc, err := sup.start(p, cwd)
	startupOver(log)
	if tempProc(p.Spec) {
		if uerr := unix.Unmount("/proc", unix.MNT_DETACH); uerr != nil && err == nil {
			_ = proc.Kill()
			err = &os.PathError{Op: "umount", Path: "/proc", Err: uerr}
		}
	}
	if err != nil {
		return sio.fail(err)
	}
	sio.h.started()
	fw.target(proc, p.TTYSignals)
	status, sig := sup.wait(proc.Pid)
	log.Debug("payload exited", "status", status)
	if sig != 0 {
		sio.h.killed(sig)
	}
	if stopc != nil {
		log.Debug("instance payload exited, waiting for a stop signal", "status", status)
		sup.waitSignal(stopc)
	}
	fw.stopIgnoring()
	sup.killLeftovers()
	log.Debug("no process left")
	return status
}

// stage2Unshare moves the calling thread into new mount (and UTS, IPC,
// network) namespaces and locks the goroutine to it for good: the pivot,
// the mounts and the payload (forked from this thread) all happen in
// them, while the runtime's other threads, which only signal and wait,
// stay where they were. Go starts new threads from a template thread, not
// from a locked one, so none inherits these namespaces.
func stage2Unshare(spec *Spec) error {
	flags := stage2Cloneflags(spec)
	if flags&unix.CLONE_NEWPID != 0 {
		return fmt.Errorf("%w: a PID namespace cannot be unshared", errStage)
	}
	runtime.LockOSThread()
	if err := unix.Unshare(int(flags) | unix.CLONE_FS); err != nil {
		return &os.SyscallError{Syscall: "unshare", Err: err}
	}
	return nil
}

// enter makes the namespace-specific mounts, sets the host name and
// pivots into p.Final. Without a PID namespace of our own, it returns a
// /proc directory fd that stays valid after the pivot, to find leftover
// processes even when the container has no /proc; -1 otherwise.
func enter(p *plan, log *slog.Logger) (int, error) {
	spec := p.Spec
	// The host's /proc lists the host's PID namespace: with one of our own
	// the supervisor does without (see killNamespace).
	procfd := -1
	if !spec.PID {
		fd, err := unix.Open("/proc", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: "/proc", Err: err}
		}
		procfd = fd
	}
	if spec.PID || tempProc(spec) {
		if err := mountProc(p, log); err != nil {
			return -1, err
		}
	}

	if spec.IPC {
		// The rbound host /dev/mqueue shows the host's queues.
		if r, err := resolveIn(p.Final, "/dev/mqueue"); err == nil {
			mq := filepath.Join(p.Final, r)
			if _, err := os.Stat(mq); err == nil {
				err := mount("mqueue", mq, "mqueue",
					unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
				log.Debug("mqueue", "path", mq, "error", err)
			}
		}
	}
	if spec.Hostname != "" {
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			return -1, &os.SyscallError{Syscall: "sethostname", Err: err}
		}
	}
	if err := pivotRoot(p.Final); err != nil {
		return -1, err
	}
	log.Debug("pivoted", "root", p.Final)
	return procfd, nil
}

// mountProc mounts the container's /proc: a new procfs for a new PID
// namespace, else the host's. The kernel allows a new procfs because this
// mount namespace still sees the host's /proc in full
// (mnt_already_visible); after the pivot it would not.
func mountProc(p *plan, log *slog.Logger) error {
	r, err := resolveIn(p.Final, "/proc")
	if err != nil {
		return err
	}
	target := filepath.Join(p.Final, r)
	if !p.Spec.PID {
		return bindMount("/proc", target, attrBind)
	}
	err = mount("proc", target, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	if err != nil {
		return err
	}
	return rebindProc(p, r, log)
}

// rebindProc makes, over the new procfs of a PID namespace, the user's
// binds below /proc (as LXCFS users bind their meminfo and cpuinfo),
// which stage 1 leaves to it: Apptainer mounts the user's binds after its
// /proc, and resolved before it they went through the image's /proc.
func rebindProc(p *plan, procDir string, log *slog.Logger) error {
	for _, b := range p.Spec.Binds {
		if !underProc(b.Dst) {
			continue
		}
		r, err := resolveIn(p.Final, b.Dst)
		if errors.Is(err, errProcEntry) {
			return procEntryError(b.Dst, "binds")
		}
		if err != nil {
			return fmt.Errorf("mount destination %s [binds]: %w", b.Dst, unwrapPath(err))
		}
		if !strings.HasPrefix(r, procDir+"/") {
			return fmt.Errorf("mount destination %s [binds]: it leads out of /proc, to %s",
				b.Dst, r)
		}
		if _, err := os.Lstat(filepath.Join(p.Final, r)); err != nil {
			// As stage 1 skips a destination it cannot make.
			log.Warn(fmt.Sprintf("Skipping mount %s [binds]: %s doesn't exist in container",
				b.Src, r))
			continue
		}
		if err := bindMount(b.Src, filepath.Join(p.Final, r), b.attr()); err != nil {
			return fmt.Errorf("bind %s to %s [binds]: %w", b.Src, r, err)
		}
	}
	return nil
}

// tempProc says /proc is mounted only while the payload starts: without
// --fakeroot, Go writes the payload's uid_map through /proc/<pid> in this
// mount namespace, after the pivot. The payload may glimpse it between
// its exec and the unmount that follows StartProcess; --no-mount proc is
// a preference, not an isolation boundary.
func tempProc(spec *Spec) bool {
	return spec.skips("proc", "/proc") && !spec.Fakeroot
}

// pivotRoot makes root the root directory of this mount namespace and
// detaches the old root.
//
// pivot_root(".", ".") stacks the old root on top of the new one at "/";
// unmounting "." then removes the old root (with every host mount below
// it, locked ones included, in one MNT_DETACH) and uncovers the new one.
// This avoids a put_old directory inside a read-only union (see
// pivot_root(2), and runc's pivotRoot, which credits LXC for the idiom).
func pivotRoot(root string) error {
	if err := unix.Chdir(root); err != nil {
		return &os.PathError{Op: "chdir", Path: root, Err: err}
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return &os.PathError{Op: "pivot_root", Path: root, Err: err}
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return &os.PathError{Op: "umount", Path: "old root", Err: err}
	}
	if err := unix.Chdir("/"); err != nil {
		return &os.PathError{Op: "chdir", Path: "/", Err: err}
	}
	return nil
}

// workDir picks the payload's working directory in the container
// (COMPAT 7.6): the requested one, else home, else / with a warning;
// failing to use a --pwd is fatal.
func workDir(p *plan, log *slog.Logger) (string, error) {
	want := p.Spec.Cwd
	if want == "" {
		want = p.Home
	}
	err := isDir(want)
	if err == nil {
		return want, nil
	}
	if p.Spec.CwdExplicit {
		return "", fmt.Errorf("failed to set working directory: %w", err)
	}
	fallback := "/"
	if p.Home != "" && isDir(p.Home) == nil {
		fallback = p.Home
	}
	log.Warn(fmt.Sprintf("cannot use working directory %s in the container, using %s",
		want, fallback), "error", err)
	return fallback, nil
}

func isDir(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return &os.PathError{Op: "chdir", Path: path, Err: unix.ENOTDIR}
	}
	if err := unix.Access(path, unix.X_OK); err != nil {
		return &os.PathError{Op: "chdir", Path: path, Err: err}
	}
	return nil
}
