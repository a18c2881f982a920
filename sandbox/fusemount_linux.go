// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/husk-project/husk/internal/detach"
)

// fuseStopGrace is how long a FUSE program gets between SIGTERM and
// SIGKILL at the end of the container.
var fuseStopGrace = 3 * time.Second

// fuseMountSet is what stage 1 mounted and started for --fusemount.
type fuseMountSet struct {
	// targets are the mount points in stage 1's tree, in mount order.
	targets []string
	procs   []*fuseProc
}

// fuseProc is a FUSE program that stays in the foreground.
type fuseProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd.Wait returned
	err  error
}

// startFuseMounts mounts and starts the Spec's FUSE programs, after the
// binds: for each, it opens /dev/fuse, mounts it at the mount point in
// the container root (creating the directory as bind targets are, so
// it never lands in a persistent overlay) and starts the program with
// the mount point replaced by /dev/fd/3, the open device. Requests made
// before the program is up wait in the kernel; if it dies, the mount
// reports ENOTCONN.
func (st *stage1State) startFuseMounts() error {
	for _, fm := range st.plan.Spec.FuseMounts {
		if err := st.startFuseMount(fm); err != nil {
			return fmt.Errorf("--fusemount %s: %w", fm.Mountpoint, err)
		}
	}
	return nil
}

func (st *stage1State) startFuseMount(fm FuseMount) error {
	// The mount point is made and resolved in the union, and so is an
	// in-container program: calls into stage 1's own mount, made where a
	// kill of every process cannot leave stage 1 unreapable (package
	// detach). The mount below then finds the path in the kernel's cache.
	var target string
	var cmd *exec.Cmd
	var err error
	detach.Run(func() {
		if err = st.ensureDir(fm.Mountpoint); err != nil {
			err = fmt.Errorf("creating the mount point: %w", err)
			return
		}
		var r string
		if r, err = resolveIn(st.final, fm.Mountpoint); err != nil {
			return
		}
		target = filepath.Join(st.final, r)
		cmd, err = st.fuseCommand(fm)
	})
	if err != nil {
		return err
	}

	dev, err := os.OpenFile(fuseDevice, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	// The program keeps its own copy; stage 1's is closed once it started
	// so that the connection ends when the program's copies do.
	defer dev.Close()
	// allow_other lets every process of the container in (a --fakeroot
	// payload may switch uids); the kernel limits it to this user
	// namespace and the ones below it.
	opts := fmt.Sprintf("fd=%d,rootmode=40000,user_id=%d,group_id=%d,allow_other",
		dev.Fd(), os.Getuid(), os.Getgid())
	name := filepath.Base(fm.Args[0])
	if err := mount(name, target, "fuse."+name, unix.MS_NOSUID|unix.MS_NODEV,
		opts); err != nil {
		return err
	}
	st.fuse.targets = append(st.fuse.targets, target)

	cmd.ExtraFiles = []*os.File{dev}
	p := &fuseProc{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// The parent-death signal belongs to the thread that forks: keep
		// it for the program's life (Go ends a thread whose goroutine
		// exits locked, as other stage 1 code does).
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := cmd.Start()
		started <- err
		if err == nil {
			p.err = cmd.Wait()
		}
		close(p.done)
	}()
	if err := <-started; err != nil {
		return err
	}
	dev.Close()
	st.log.Debug("fusemount started", "args", cmd.Args, "pid", cmd.Process.Pid,
		"target", target)
	// A daemon (fm.Daemon, or a host: program without -f) forks its
	// server and exits: waitServing names a failing status, and waits
	// for statfs after a zero one. Only a bounded wait: a foreground
	// program given as a daemon type must not hang the start.
	if err := waitServing(fm.Args[0], target, p); err != nil {
		// Its failure is the error: no second word from stopFuseMounts.
		_ = cmd.Process.Kill()
		<-p.done
		return err
	}
	st.fuse.procs = append(st.fuse.procs, p)
	return nil
}

// fuseServeWait bounds how long waitServing waits for a FUSE program
// that neither serves nor exits (it may wait for a network): past it the
// container starts and its requests wait in the kernel, as they would
// with Apptainer.
var fuseServeWait = 30 * time.Second

// waitServing waits until the FUSE program of target answers (statfs on
// the mount, which also waits for FUSE_INIT) or is gone, so that a
// program that fails at start (a missing image, bad options) fails the
// container, `instance start` included, instead of leaving an ENOTCONN
// mount point and a warning in a log. Once the program and its forked
// server are gone nobody holds the device any more and the kernel ends
// the connection: statfs then fails with ENOTCONN.
func waitServing(name, target string, p *fuseProc) error {
	answered := make(chan error, 1)
	go func() {
		var fs unix.Statfs_t
		answered <- unix.Statfs(target, &fs)
	}()
	timeout := time.NewTimer(fuseServeWait)
	defer timeout.Stop()
	done := p.done
	for {
		select {
		case err := <-answered:
			if err == nil {
				return nil
			}
			// ENOTCONN usually means the program has just exited: its
			// status says why, and is the same message whichever of the
			// two the race brought first.
			select {
			case <-p.done:
				if p.err != nil {
					return fmt.Errorf("%s exited before serving the mount: %w", name, p.err)
				}
			case <-time.After(2 * time.Second):
			}
			return fmt.Errorf("%s did not serve the mount: %w", name, err)
		case <-done:
			// Exit status 0 may be a program going to the background:
			// statfs tells.
			if p.err != nil {
				return fmt.Errorf("%s exited before serving the mount: %w", name, p.err)
			}
			done = nil
		case <-timeout.C:
			return nil
		}
	}
}

// fuseCommand prepares the program of fm with /dev/fd/3 as its last
// argument: on the host side in husk's environment and working
// directory, or chrooted into the container root with the payload's
// environment.
func (st *stage1State) fuseCommand(fm FuseMount) (*exec.Cmd, error) {
	args := append(append([]string(nil), fm.Args...), "/dev/fd/3")
	// Without its parent the FUSE server has nobody to stop it.
	attr := &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var cmd *exec.Cmd
	if fm.InContainer {
		path, err := st.containerLookPath(fm.Args[0])
		if err != nil {
			return nil, err
		}
		// Not SysProcAttr.Chroot: Go starts programs with vfork, whose
		// child shares this process's memory until its exec, and an exec
		// of a path in the union needs this process's FUSE server to
		// answer lookups and reads meanwhile; that deadlocked now and
		// then. The shim is exec'd from the host, then chroots itself.
		cmd = &exec.Cmd{Path: "/proc/self/exe",
			Args: append([]string{"husk-fusemount", st.final, path}, args...), Dir: "/",
			Env: append(slices.Clone(st.plan.Spec.Env), stageEnv+"="+chrootStage)}
	} else {
		cmd = exec.Command(args[0], args[1:]...)
		if cmd.Err != nil {
			return nil, cmd.Err
		}
		cmd.Dir = st.plan.HostCwd
	}
	cmd.SysProcAttr = attr
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd, nil
}

// containerLookPath finds name on the payload's PATH in the container
// root, resolving symbolic links inside it; the result is a path in the
// container.
func (st *stage1State) containerLookPath(name string) (string, error) {
	candidates := []string{name}
	if filepath.Base(name) == name {
		candidates = nil
		for _, dir := range filepath.SplitList(envPath(st.plan.Spec.Env)) {
			if filepath.IsAbs(dir) {
				candidates = append(candidates, filepath.Join(dir, name))
			}
		}
	} else if !filepath.IsAbs(name) {
		return "", fmt.Errorf("%s: use a command name or an absolute path in the container",
			name)
	}
	for _, c := range candidates {
		r, err := resolveIn(st.final, c)
		if err != nil {
			continue
		}
		fi, err := os.Stat(filepath.Join(st.final, r))
		if err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return c, nil
		}
	}
	return "", fmt.Errorf("%s: executable file not found in the container", name)
}

// stopFuseMounts ends the FUSE programs (SIGTERM, then SIGKILL after
// fuseStopGrace) and unmounts their mounts, before the union is
// unmounted and synced: nothing may still write through them.
func (st *stage1State) stopFuseMounts() error {
	for _, p := range st.fuse.procs {
		select {
		case <-p.done:
			// Exit status 0: it went to the background (use the -daemon
			// types for such programs).
			if p.err != nil {
				st.log.Warn(fmt.Sprintf("--fusemount: %s exited early", p.cmd.Args[0]),
					"error", p.err)
			}
			continue
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(fuseStopGrace):
			st.log.Debug("fusemount program ignores SIGTERM", "pid", p.cmd.Process.Pid)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	var errs []error
	for i := len(st.fuse.targets) - 1; i >= 0; i-- {
		t := st.fuse.targets[i]
		err := unix.Unmount(t, unix.MNT_DETACH)
		if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, &os.PathError{Op: "umount", Path: t, Err: err})
		}
	}
	st.fuse = fuseMountSet{}
	return errors.Join(errs...)
}

// chrootStage marks a re-execution of husk as the shim that starts an
// in-container --fusemount program (fuseCommand): arguments root, path,
// argv.
const chrootStage = "chroot"

// chrootExec chroots into os.Args[1] and execs os.Args[2] with argv
// os.Args[3:] and the environment it was given (without stageEnv). Only
// errors return; [Main] exits with the status.
func chrootExec() int {
	os.Unsetenv(stageEnv)
	if len(os.Args) < 4 {
		fmt.Fprintf(os.Stderr, "FATAL:   %v: chroot shim without a command\n", errStage)
		return setupFailed
	}
	root, path, argv := os.Args[1], os.Args[2], os.Args[3:]
	if err := unix.Chroot(root); err != nil {
		fmt.Fprintf(os.Stderr, "FATAL:   %v\n", &os.PathError{Op: "chroot", Path: root, Err: err})
		return setupFailed
	}
	if err := unix.Chdir("/"); err != nil {
		fmt.Fprintf(os.Stderr, "FATAL:   %v\n", &os.PathError{Op: "chdir", Path: "/", Err: err})
		return setupFailed
	}
	err := unix.Exec(path, argv, os.Environ())
	fmt.Fprintf(os.Stderr, "FATAL:   %v\n", &os.PathError{Op: "exec", Path: path, Err: err})
	return setupFailed
}
