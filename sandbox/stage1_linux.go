// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/husk-project/husk/internal/detach"
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
	// guard aborts the union's FUSE connection should stage 1 die
	// (guard_linux.go); nil without one, or until guardWG is done.
	guard     atomic.Pointer[os.Process]
	guardWG   sync.WaitGroup
	guardDone chan struct{} // closed once the guard is reaped
	// stage2 is stage 2 once started (see startStage2Early).
	stage2 *stage2Proc
	// fuse are the --fusemount mounts and programs (fusemount_linux.go).
	fuse fuseMountSet
	// devices makes device nodes for --fakeroot (mknod_linux.go); nil
	// without.
	devices *devices
	// refused says the kernel refused the union's FUSE mount, which
	// fusermount3 may still make (see mountRefused).
	refused bool
	// reaperKilled is the signal stage 2 died of, if it was killed: the
	// container's processes are then this process's (orphans_linux.go).
	reaperKilled syscall.Signal
	// ppid is stage 0's pid, this process's parent until it dies.
	ppid int
}

// stage1 sets the container up, runs stage 2 and tears the container
// down. It returns stage 2's status, or 255 when setup or teardown failed.
func stage1(m Mounter, fw *forwarder, fds string) int {
	sio, err := openStage(1, fds)
	if err != nil {
		return sio.fail(err)
	}
	st := &stage1State{io: sio, log: sio.log, plan: sio.plan,
		sess: &session{dir: sio.plan.Session}, ppid: os.Getppid()}
	// The caller's descriptors come after the image files (inherit_linux.go).
	if n := len(st.plan.Inherited); n > 0 {
		if n > len(sio.files) {
			return sio.fail(fmt.Errorf("%w: %d inherited descriptors, %d files", errStage,
				n, len(sio.files)))
		}
		k := len(sio.files) - n
		st.plan.inherit, sio.files = sio.files[k:], sio.files[:k]
	}
	st.final = st.sess.path("final")
	logIDs(st.log, "user+mount namespace")
	st.devices = newDevices(sio.plan.Spec, st.log)

	if st.plan.HostUnion == "" {
		st.startGuard() // its start overlaps stage 2's and the session's
	}
	if err := becomeSubreaper(); err != nil {
		st.log.Debug("processes outliving a killed stage 2 will not be killed", "error", err)
	}
	status := setupFailed
	st.startStage2Early()
	err = st.setup(m)
	if err == nil {
		startupOver(st.log)
		status, err = st.runStage2(fw)
		if err == nil && st.joins != nil && !st.plan.Spec.Instance && !fw.gotStop() {
			st.joins.drain() // --sharens: the group's others go on
		}
	} else {
		st.abandonStage2()
	}
	fw.stopIgnoring()
	if st.joins != nil {
		st.joins.stop()
	}
	st.devices.stop()
	if terr := st.teardown(); terr != nil && err == nil {
		err = terr
	}
	if err != nil {
		status = sio.fail(err)
		if st.refused {
			status = mountRefusedStatus
		}
	}
	return status
}

// setup builds the container's file system tree at st.final.
func (st *stage1State) setup(m Mounter) error {
	if m == nil && st.plan.HostUnion == "" {
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
	var mounted Mounted
	var err error
	if st.plan.HostUnion != "" {
		// fusermount3 mode: stage 3 mounted and serves the union.
		mounted, err = bindHostUnion(st.plan, st.final)
	} else {
		// Stage 1 calls into the union from its mount on: the guard
		// must be there by then (a SIGKILL in the gap hung 1 in 2).
		st.guardWG.Wait()
		mounted, err = callMount(m, spec, st.io.files, st.final)
		st.refused = err != nil && mountRefused(err)
	}
	if err != nil {
		return fmt.Errorf("mounting the container: %w", explainMountError(err))
	}
	st.mounted = mounted
	st.devices.setTarget(mounted, st.final)
	st.log.Debug("union mounted", "target", st.final)

	// The binds look their mount points up in the union, and make the
	// missing ones there: see package detach.
	if detach.Run(func() { err = st.bindAll() }); err != nil {
		return err
	}
	return st.startFuseMounts() // fusemount_linux.go
}

// bindAll mounts the binds, passwd and group, and makes the mount point
// of the container's /proc if stage 2 mounts it.
func (st *stage1State) bindAll() error {
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
	if spec := st.plan.Spec; spec.PID || tempProc(spec) {
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
		// os.FileMode has its own sticky bit: 0o1000 would be dropped.
		if err := os.Chmod(st.sess.path(d), 0o777|os.ModeSticky); err != nil {
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

// stage2Proc is stage 2, started and reaped by a goroutine of its own
// whose thread stays locked while stage 2 runs: the parent-death signal
// belongs to the thread that forked (see run_linux.go).
type stage2Proc struct {
	cmd   *exec.Cmd
	specW *os.File // the plan goes here
	// started is closed once cmd.Start returned startErr; done once cmd.Wait
	// returned waitErr.
	started, done     chan struct{}
	startErr, waitErr error
}

// startStage2 starts stage 2 with the given namespaces (clone flags)
// without waiting for the fork and exec.
func (st *stage1State) startStage2(flags uintptr, unshare bool) (*stage2Proc, error) {
	specR, specW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := stageCommand(2, st.plan.inherit, specR, st.io.logW, nil)
	if unshare {
		cmd.Env = append(cmd.Env, unshareEnv+"=1")
	}
	// Without its FUSE server, stage 2 could only fail: it dies with us.
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Pdeathsig: syscall.SIGKILL}
	p := &stage2Proc{cmd: cmd, specW: specW, started: make(chan struct{}),
		done: make(chan struct{})}
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer close(p.done)
		lfd := st.devices.install() // this thread ends with the goroutine
		p.startErr = cmd.Start()
		st.devices.serve(lfd)
		specR.Close()
		close(p.started)
		if p.startErr == nil {
			st.log.Debug("stage 2 started", "pid", cmd.Process.Pid, "early", unshare)
			p.waitErr = cmd.Wait()
		}
	}()
	return p, nil
}

// startStage2Early starts stage 2 before the container is set up, in
// stage 1's own namespaces, so that its exec and Go start-up overlap the
// union mount and the binds. It waits for the plan, which stage 1 sends
// once the tree is complete, and then unshares its namespaces on the
// thread that pivots and starts the payload (stage2Unshare). A new PID
// namespace cannot be entered that way (the supervisor must be its PID
// 1), and an instance's stage 2 is looked up by its pid: both start stage
// 2 after the setup, in new namespaces. If the early start fails, stage 2
// is started late.
func (st *stage1State) startStage2Early() {
	if st.plan.Spec.PID || st.io.listen != nil {
		return
	}
	p, err := st.startStage2(0, true)
	if err == nil {
		st.stage2 = p
	}
}

// abandonStage2 kills an early stage 2 that will get no plan because the
// setup failed; it dies quietly (SIGKILL while it waits for the plan).
func (st *stage1State) abandonStage2() {
	p := st.stage2
	if p == nil {
		return
	}
	<-p.started
	if p.startErr == nil {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
	p.specW.Close()
	st.stage2 = nil
}

// runStage2 starts stage 2 in new mount (and PID, UTS, IPC) namespaces,
// unless it was started early, sends it the plan and waits for it.
func (st *stage1State) runStage2(fw *forwarder) (int, error) {
	spec := st.plan.Spec
	st.plan.Final = st.final
	_, st.plan.Home = spec.homeSrcDst()

	if p := st.stage2; p != nil {
		<-p.started
		if p.startErr != nil {
			st.log.Debug("starting stage 2 early failed, starting it now", "error", p.startErr)
			p.specW.Close()
			st.stage2 = nil
		}
	}
	if st.stage2 == nil {
		p, err := st.startStage2(stage2Cloneflags(spec), false)
		if err != nil {
			return setupFailed, err
		}
		<-p.started
		if p.startErr != nil {
			p.specW.Close()
			return setupFailed, fmt.Errorf("starting stage 2: %w", p.startErr)
		}
		st.stage2 = p
	}
	p := st.stage2
	cmd, specW := p.cmd, p.specW
	closeFiles(st.plan.inherit) // stage 2 has them
	st.plan.inherit = nil
	defer specW.Close()

	fw.targetStage(cmd.Process, st.plan.TTYSignals)
	defer watchParent(st.ppid, cmd.Process.Pid)()
	if st.io.listen != nil {
		// Before stage 2 can report the payload started: stage 0 learns
		// the pid first.
		_ = st.io.h.send(record{Level: slog.LevelDebug, Pid: cmd.Process.Pid})
		st.joins = startJoinServer(st, st.io.listen, cmd.Process.Pid)
	}
	if err := json.NewEncoder(specW).Encode(st.plan); err != nil {
		_ = cmd.Process.Kill()
	}
	specW.Close()

	<-p.done
	status := exitStatus(cmd.ProcessState)
	st.log.Debug("stage 2 exited", "status", status, "wait", p.waitErr)
	if cmd.ProcessState == nil {
		return setupFailed, fmt.Errorf("waiting for stage 2: %w", p.waitErr)
	}
	if sig := killedBy(cmd.ProcessState); sig != 0 {
		// Stage 2 exits with the payload's status, 128+N for its death
		// by signal N; dying of one itself, it killed nothing.
		st.reaperKilled = sig
		// Stage 2 dies of these only in its first milliseconds, before it
		// catches them, and only the user sends them (to husk's group,
		// or through stage 1, which waits a while for stage 2 to be
		// ready): a stop, not a failure. Stage 1 may not have got the
		// signal itself: one caught before its --fakeroot re-execution is
		// gone from its forwarder.
		if sig == syscall.SIGINT || sig == syscall.SIGTERM || sig == syscall.SIGHUP ||
			sig == syscall.SIGQUIT || fw.userStop(cmd.ProcessState) != 0 {
			st.log.Debug("stage 2 killed by the user's signal", "signal", sig)
			st.io.h.killed(sig)
			return 128 + int(sig), nil
		}
		return setupFailed, reaperKilled(sig)
	}
	return status, nil
}

// teardown unmounts what stage 1 mounted, has the Mounter sync and close
// the union, and removes the session directory. It runs when stage 2
// and everything it started are gone, so nothing writes any more.
func (st *stage1State) teardown() error {
	var errs []error
	if err := st.stopFuseMounts(); err != nil { // fusemount_linux.go
		errs = append(errs, err)
	}
	if st.reaperKilled != 0 {
		// Before the unmounts, which would wait for them.
		n := killChildren(st.guardPid())
		st.log.Debug("container processes killed after stage 2", "count", n)
	}
	if st.mounted != nil {
		var err error
		if detach.Run(func() { err = unmountUnder(st.final) }); err != nil {
			errs = append(errs, err)
		}
		st.log.Debug("binds unmounted")
		if err := st.mounted.Unmount(); err != nil {
			errs = append(errs, fmt.Errorf("unmounting the container: %w", err))
		}
		st.log.Debug("union unmounted")
	}
	st.stopGuard()
	if st.sessMounted {
		err := unix.Unmount(st.sess.dir, unix.MNT_DETACH)
		if errors.Is(err, unix.ENOENT) {
			// Removed from the host, which detached everything below it
			// here; the union was still synced as it stopped.
			st.log.Warn(fmt.Sprintf("the session directory %s was removed while the "+
				"container ran (a cleaner of temporary files?)", st.sess.dir))
			err = nil
		}
		if err != nil {
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
