// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"bytes"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/husk-project/husk/internal/detach"
)

// The guard. Stage 1 serves the union over FUSE and is a client of it
// too: it mounts the binds into it, makes mount points in it, and reads
// programs and large files ahead through it. Should the process die
// (SIGKILL, the OOM killer, the Go runtime aborting) while its server
// threads hold a request of its own, the thread that made the request
// waits for the answer in the kernel without end, and keeps the process's
// descriptors, the FUSE device among them, so the kernel never ends the
// connection: stage 1 cannot be reaped and husk waits for it for good
// (a trial: `ulimit -v 1800000`, 3 runs of 3; a SIGKILL in stage 1's
// first 20 ms, 1 run in 10).
//
// The guard is a small process that stage 1 starts before it mounts the
// union. It gets a signal when the thread that started it ends, which
// happens only as stage 1 dies, and then unmounts the union with
// MNT_FORCE: that aborts the FUSE connection, every request waiting on it
// fails, and what is left of stage 1 exits.
//
// A SIGKILL of every process at once (a cgroup kill, as Slurm's scancel
// does) takes the guard too. What covers that case is that stage 1 calls
// into its own mount only from threads without the FUSE device (package
// detach: the binds, --fusemount mount points, the readahead, the
// warmer), so its death alone ends the connection.

// guardStage is the value of stageEnv for the guard.
const guardStage = "guard"

// guardSignal is the guard's parent-death signal: one the Go runtime
// ignores until it is asked for, so that one arriving while the guard
// starts does not kill it (the guard then finds stage 1 gone by looking).
const guardSignal = syscall.SIGWINCH

// startGuard starts the guard of the union to be mounted at st.final;
// st.guardWG is done once it runs (or failed to start). The guard ends
// with stage 1; stage 1 stops it only once the union is unmounted
// (stopGuard).
func (st *stage1State) startGuard() {
	cmd := exec.Command("/proc/self/exe")
	cmd.Args = []string{"husk-guard", st.final, strconv.Itoa(os.Getpid())}
	cmd.Env = append(os.Environ(), stageEnv+"="+guardStage)
	cmd.Dir = "/"
	// Its own process group: a signal to husk's group (Ctrl-C, a kill
	// of the job) is not for it. No stdio: it holds no pipe open.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: guardSignal}
	st.guardWG.Add(1)
	st.guardDone = make(chan struct{})
	go func() {
		defer close(st.guardDone)
		// The parent-death signal follows this thread: it stays locked
		// until the guard is gone, so it ends only as stage 1 dies.
		runtime.LockOSThread()
		err := cmd.Start()
		if err != nil {
			st.guardWG.Done()
			st.log.Debug("no guard: a stage 1 killed at the wrong time may hang",
				"error", err)
			return
		}
		st.guard.Store(cmd.Process)
		st.guardWG.Done()
		st.log.Debug("guard started", "pid", cmd.Process.Pid)
		_ = cmd.Wait()
		runtime.UnlockOSThread()
	}()
}

// stopGuard ends the guard, once stage 1 no longer calls into the union,
// and reaps it (a guard left to husk's parent stayed a zombie).
func (st *stage1State) stopGuard() {
	if st.guardDone == nil {
		return
	}
	st.guardWG.Wait()
	if p := st.guard.Swap(nil); p != nil {
		_ = p.Kill()
	}
	select {
	case <-st.guardDone:
	case <-time.After(time.Second):
	}
}

// guardPid is the guard's pid, 0 if there is none.
func (st *stage1State) guardPid() int {
	st.guardWG.Wait()
	if p := st.guard.Load(); p != nil {
		return p.Pid
	}
	return 0
}

// guardMain is the guard process: it waits for stage 1 (pid os.Args[2]) to
// die and then unmounts the union at os.Args[1] with MNT_FORCE.
func guardMain() int {
	// No FUSE device may stay open here: holding one would keep the
	// connection up after stage 1 unmounted the union (its unmount timed
	// out when a guard started during the mount inherited the device,
	// which go-fuse opens without close-on-exec). Stage 1 now waits for
	// the guard before it mounts; this stays as the guard's own check.
	for _, fd := range detach.FUSEDevices("/proc/self/fd") {
		unix.Close(fd)
	}
	_ = os.WriteFile("/proc/self/comm", []byte("husk-guard"), 0)
	died := make(chan os.Signal, 1)
	signal.Notify(died, guardSignal)
	for _, s := range []os.Signal{syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP,
		syscall.SIGTERM, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU} {
		signal.Ignore(s)
	}
	if len(os.Args) != 3 {
		return setupFailed
	}
	dir := os.Args[1]
	pid, err := strconv.Atoi(os.Args[2])
	if err != nil {
		return setupFailed
	}
	// The signal may have come before it was asked for: look every
	// second too.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for !processGone(pid) {
		select {
		case <-died:
		case <-tick.C:
			continue
		}
		break
	}
	// EINVAL or ENOENT: stage 1 had unmounted it, or got no further.
	_ = unix.Unmount(dir, unix.MNT_FORCE)
	return 0
}

// processGone reports whether process pid has exited, or is a zombie
// (threads of it may live on, which is what the guard is for).
func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return true
	}
	return b[i+2] == 'Z' || b[i+2] == 'X'
}
