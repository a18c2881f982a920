// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// sessionSize bounds the session tmpfs (Apptainer's "sessiondir max
// size"): it holds passwd, group, and with --contain the home and /tmp.
const sessionSize = "64m"

// session is stage 1's tmpfs, mounted on the directory stage 0 made.
type session struct{ dir string }

func (s *session) path(name string) string { return filepath.Join(s.dir, name) }

// stage1State is stage 1: root of the new user namespace, alone in the
// new mount namespace, and the FUSE server of the union.
type stage1State struct {
	io      *stageIO
	log     *slog.Logger
	plan    *plan
	sess    *session
	final   string
	mounted Mounted
	// sessMounted says the session tmpfs is mounted.
	sessMounted bool
	// binds are the bind mounts made so far, in order.
	binds []madeBind
	// joins serves `exec instance://` joins of an instance.
	joins *joinServer
}

// stage1 sets the container up, runs stage 2 and tears the container
// down. It returns stage 2's status, or 255 when setup or teardown failed.
func stage1(m Mounter, fw *forwarder, fds string) int {
	sio, err := openStage(1, fds)
	if err != nil {
		return sio.fail(err)
	}
	st := &stage1State{io: sio, log: sio.log, plan: sio.plan,
		sess: &session{dir: sio.plan.Session}}
	st.final = st.sess.path("final")
	logIDs(st.log, "user+mount namespace")

	status := setupFailed
	err = st.setup(m)
	if err == nil {
		status, err = st.runStage2(fw)
	}
	fw.stopIgnoring()
	if st.joins != nil {
		st.joins.stop()
	}
	if terr := st.teardown(); terr != nil && err == nil {
		err = terr
	}
	if err != nil {
		return sio.fail(err)
	}
	return status
}

// setup builds the container's file system tree at st.final.
func (st *stage1State) setup(m Mounter) error {
	if m == nil {
		return errors.New("sandbox: no Mounter registered with sandbox.Main")
	}
	// Stay off the host directories we may unmount or remove later.
	if err := os.Chdir("/"); err != nil {
		return err
	}

	// Nothing mounted from here on may propagate back to the host: the
	// new mount namespace's mounts are copies of the host's and may still
	// be shared with them.
	if err := mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return err
	}
	if err := mount("tmpfs", st.sess.dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV,
		"size="+sessionSize+",mode=0700"); err != nil {
		return err
	}
	st.sessMounted = true
	if err := st.makeSessionDirs(); err != nil {
		return err
	}
	st.log.Debug("session tmpfs mounted", "dir", st.sess.dir)

	spec := st.plan.Spec
	mounted, err := callMount(m, spec, st.io.files, st.final)
	if err != nil {
		return fmt.Errorf("mounting the container: %w", explainMountError(err))
	}
	st.mounted = mounted
	st.log.Debug("union mounted", "target", st.final)

	for _, hm := range defaultMounts(st.plan, st.sess) {
		if err := st.bindInto(hm); err != nil {
			return err
		}
	}
	st.log.Debug("binds mounted", "count", len(st.binds))
	if err := st.identityMounts(); err != nil {
		return err
	}
	st.log.Debug("passwd and group bound")
	// Stage 2 mounts /proc itself with --pid or --no-mount proc (see
	// tempProc); the mount point must exist.
	if spec.PID || tempProc(spec) {
		if err := st.ensureDir("/proc"); err != nil {
			return fmt.Errorf("creating /proc in the container: %w", err)
		}
	}
	return nil
}

// makeSessionDirs creates the final mount point and, with --contain, the
// private home, /tmp, /var/tmp and /dev.
func (st *stage1State) makeSessionDirs() error {
	if err := os.Mkdir(st.final, 0o755); err != nil {
		return err
	}
	if !st.plan.Spec.Contain {
		return nil
	}
	if err := os.Mkdir(st.sess.path("home"), 0o700); err != nil {
		return err
	}
	for _, d := range []string{"tmp", "var_tmp"} {
		if err := os.Mkdir(st.sess.path(d), 0o777); err != nil {
			return err
		}
		if err := os.Chmod(st.sess.path(d), 0o1777); err != nil {
			return err
		}
	}
	if !st.plan.Spec.skips("dev", "/dev") {
		return stageDev(st.sess.path("dev"), !st.plan.Spec.skips("devpts", "/dev/pts"))
	}
	return nil
}

// ensureDir makes sure directory dst exists in the container.
func (st *stage1State) ensureDir(dst string) error {
	r, err := resolveIn(st.final, dst)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(filepath.Join(st.final, r)); errors.Is(err, os.ErrNotExist) {
		return st.mountpoint(r, true)
	}
	return err
}

// runStage2 starts stage 2 in new mount (and PID, UTS, IPC) namespaces
// and waits for it.
func (st *stage1State) runStage2(fw *forwarder) (int, error) {
	spec := st.plan.Spec
	st.plan.Final = st.final
	_, st.plan.Home = spec.homeSrcDst()

	specR, specW, err := os.Pipe()
	if err != nil {
		return setupFailed, err
	}
	defer specR.Close()
	defer specW.Close()

	cmd := stageCommand(2, nil, specR, st.io.logW, nil)
	flags := stage2Cloneflags(spec)
	// Without its FUSE server, stage 2 could only fail: it dies with us.
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Pdeathsig: syscall.SIGKILL}
	runtime.LockOSThread() // Pdeathsig is per thread, see run_linux.go
	defer runtime.UnlockOSThread()

	if err := cmd.Start(); err != nil {
		return setupFailed, fmt.Errorf("starting stage 2: %w", err)
	}
	st.log.Debug("stage 2 started", "pid", cmd.Process.Pid)
	fw.target(cmd.Process, st.plan.TTYSignals)
	if st.io.listen != nil {
		// Before stage 2 can report the payload started: stage 0 learns
		// the pid first.
		_ = st.io.h.send(record{Level: slog.LevelDebug, Pid: cmd.Process.Pid})
		st.joins = startJoinServer(st, st.io.listen)
	}
	specR.Close()
	if err := json.NewEncoder(specW).Encode(st.plan); err != nil {
		_ = cmd.Process.Kill()
	}
	specW.Close()

	err = cmd.Wait()
	status := exitStatus(cmd.ProcessState)
	st.log.Debug("stage 2 exited", "status", status, "wait", err)
	if cmd.ProcessState == nil {
		return setupFailed, fmt.Errorf("waiting for stage 2: %w", err)
	}
	return status, nil
}

// teardown unmounts what stage 1 mounted, has the Mounter sync and close
// the union, and removes the session directory. It runs when stage 2
// and everything it started are gone, so nothing writes any more.
func (st *stage1State) teardown() error {
	var errs []error
	if st.mounted != nil {
		if err := unmountUnder(st.final); err != nil {
			errs = append(errs, err)
		}
		st.log.Debug("binds unmounted")
		if err := st.mounted.Unmount(); err != nil {
			errs = append(errs, fmt.Errorf("unmounting the container: %w", err))
		}
		st.log.Debug("union unmounted")
	}
	if st.sessMounted {
		if err := unix.Unmount(st.sess.dir, unix.MNT_DETACH); err != nil {
			errs = append(errs, &os.PathError{Op: "umount", Path: st.sess.dir, Err: err})
		}
	}
	// Stage 0 removes it too; doing it here covers a killed stage 0.
	if err := os.Remove(st.sess.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	st.log.Debug("session removed")
	return errors.Join(errs...)
}

// callMount calls the Mounter, turning a panic into an error so that the
// teardown still runs.
func callMount(m Mounter, spec *Spec, files []*os.File, target string) (
	mounted Mounted, err error) {
	defer func() {
		if r := recover(); r != nil {
			mounted, err = nil, fmt.Errorf("sandbox: Mounter panicked: %v", r)
		}
	}()
	return m.Mount(spec, files, target)
}

// stage2Cloneflags are the namespaces stage 2 starts in: always its own
// mount namespace (it pivots into the union), and the PID, UTS and IPC
// namespaces the spec asks for.
func stage2Cloneflags(spec *Spec) uintptr {
	flags := uintptr(syscall.CLONE_NEWNS)
	if spec.PID {
		flags |= syscall.CLONE_NEWPID
	}
	if spec.Hostname != "" || spec.UTS {
		flags |= syscall.CLONE_NEWUTS
	}
	if spec.IPC {
		flags |= syscall.CLONE_NEWIPC
	}
	if spec.Net {
		flags |= syscall.CLONE_NEWNET // --network none, see payload_linux.go
	}
	return flags
}
