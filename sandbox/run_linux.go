// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Environment variables that mark a stage process. Main acts only when
// stageEnv is set, and removes both before anything else runs.
const (
	stageEnv = "_HUSK_STAGE"
	// specFDEnv holds the fd numbers of the spec pipe and the log pipe.
	specFDEnv = "_HUSK_FDS"
	// unshareEnv marks a stage 2 started in stage 1's namespaces, which
	// unshares its own once it has the plan (see startStage2Early).
	unshareEnv = "_HUSK_UNSHARE"
)

// setupFailed is the exit status for any failure before the payload runs
// (Apptainer's FATAL status, COMPAT 7.7).
const setupFailed = 255

// Run runs spec in a new container and returns the payload's status: its
// exit code, or -N when signal N killed it (a shell's $? would be 128+N,
// which a payload may also exit with: the sign tells them apart, so that
// husk dies of the signal only when the payload did, as Apptainer).
// files are the image files opened (and locked) by the caller; they are
// passed to the Mounter in stage 1, and the locks live as long as stage 1
// holds them.
//
// An error means the container could not be set up, the payload could
// not be started, or the union could not be unmounted cleanly after it
// ran; status is then 255 and the error is one line for the user.
// Signals SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 received
// while Run waits are forwarded to the payload. Cancelling ctx
// sends SIGTERM to the container; Run still waits for the union to be
// synced. log receives debug traces and warnings (nil: discard).
func Run(ctx context.Context, spec *Spec, files []*os.File, log *slog.Logger) (int, error) {
	return run(ctx, spec, files, nil, log, nil)
}

func run(ctx context.Context, spec *Spec, files []*os.File, listen *os.File,
	log *slog.Logger, onStart func(pid int)) (int, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := checkOpenFiles(); err != nil { // rlimit_linux.go
		return setupFailed, err
	}
	if err := checkTasks(); err != nil {
		return setupFailed, err
	}
	if len(files) != spec.Files {
		return setupFailed, fmt.Errorf("sandbox: spec.Files is %d but %d files given",
			spec.Files, len(files))
	}
	p, err := newPlan(spec, log)
	if err != nil {
		return setupFailed, err
	}
	if listen == nil {
		for _, fd := range takeInherited(log) {
			p.Inherited = append(p.Inherited, fd.num)
			p.inherit = append(p.inherit, fd.f)
		}
	}
	choice := fusermountSetting(p.Spec)
	status, err := runSession(ctx, p, files, listen, log, onStart,
		choice == fusermountAlways)
	var refused *refusedError
	if !errors.As(err, &refused) {
		return status, err
	}
	if err := fallBack(choice, refused, log); err != nil {
		return setupFailed, err
	}
	return runSession(ctx, p, files, listen, log, onStart, true)
}

// runSession runs the container in a new session directory, with the
// union mounted by stage 1, or through fusermount3 when hosted.
func runSession(ctx context.Context, p *plan, files []*os.File, listen *os.File,
	log *slog.Logger, onStart func(pid int), hosted bool) (int, error) {
	// The session directory is the mount point of stage 1's tmpfs. Stage 1
	// removes it when done; removing it here as well covers a stage 1 that
	// died early.
	//
	// Signals are caught from before the directory exists: one that comes
	// before stage 1 starts ends the run here (runStage1), and the
	// directory goes with it. Uncaught, it killed husk and left the
	// directory for a later run's sweep.
	fw := startForwarding()
	defer fw.stop()
	var err error
	p.Session, p.sessionLock, err = newSessionDir() // stale_linux.go
	if err != nil {
		return setupFailed, fmt.Errorf("sandbox: session directory: %w", err)
	}
	defer p.sessionLock.Close()
	defer os.Remove(p.Session) // before the lock goes
	// Off the start-up path: the sweep competes only for a little CPU.
	go sweepStale(filepath.Dir(p.Session), p.Session, log)
	if hosted {
		return runHosted(ctx, p, fw, files, listen, log, onStart)
	}
	return runStage1(ctx, p, fw, files, listen, log, onStart, nil)
}

// newPlan validates spec and completes it with what only the host knows.
func newPlan(spec *Spec, log *slog.Logger) (*plan, error) {
	s := *spec
	if log.Enabled(context.Background(), slog.LevelDebug) {
		s.Debug = true
	}
	p := &plan{Spec: &s}
	// getcwd(2), not os.Getwd, which stats "." first and fails in a
	// directory the user may not search. A directory removed since is no
	// reason to fail either, as in Apptainer: it is not bound, and the
	// command starts in the home directory.
	var err error
	if p.HostCwd, err = unix.Getwd(); err != nil {
		log.Warn(fmt.Sprintf("cannot tell the current working directory (%v): "+
			"not binding it", err))
		p.HostCwd = ""
	}
	p.User, p.Groups = hostIdentity(s.UID, s.GID, log)
	if s.Username == "" {
		s.Username = p.User.Name
	}
	if s.HomeDir == "" {
		s.HomeDir = p.User.Home
	}
	if s.HomeDir == "" && s.Home == "" && !s.Fakeroot && !s.NoHome {
		log.Warn(fmt.Sprintf("no home directory known for uid %d, not mounting one", s.UID))
		s.NoHome = true
	}
	if s.Cwd == "" && !s.Contain {
		s.Cwd = p.HostCwd
	}
	// Stage 1 works from /: relative host paths are the caller's.
	if p.HostCwd == "" {
		if err := noRelativePaths(&s); err != nil {
			return nil, err
		}
	}
	s.Binds = append([]Bind(nil), s.Binds...)
	for i := range s.Binds {
		s.Binds[i].Src = absFrom(p.HostCwd, s.Binds[i].Src)
	}
	if src, dst, ok := strings.Cut(s.Home, ":"); ok {
		s.Home = absFrom(p.HostCwd, src) + ":" + dst
	} else if s.Home != "" {
		abs := absFrom(p.HostCwd, s.Home)
		s.Home = abs + ":" + abs
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	for _, n := range s.unknownNoMount() {
		log.Warn(fmt.Sprintf("--no-mount: unknown mount %q ignored", n))
	}
	p.TTYSignals = terminalSignalsUs()
	return p, nil
}

// absFrom makes a host path absolute relative to dir.
// noRelativePaths refuses host paths of s relative to a working
// directory that is not known.
func noRelativePaths(s *Spec) error {
	paths := []string{strings.Split(s.Home, ":")[0]}
	for _, b := range s.Binds {
		paths = append(paths, b.Src)
	}
	for _, p := range paths {
		if p != "" && !filepath.IsAbs(p) {
			return fmt.Errorf("sandbox: %q is relative to the current working directory, "+
				"which is unknown (removed?)", p)
		}
	}
	return nil
}

func absFrom(dir, path string) string {
	if path == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(dir, path)
}

// runStage1 starts stage 1 in new user and mount namespaces, feeds it the
// plan, forwards signals and waits. union, in fusermount3 mode, is stage
// 1's socket to the union's server; it is closed once stage 1 has it.
func runStage1(ctx context.Context, p *plan, fw *forwarder, files []*os.File,
	listen *os.File, log *slog.Logger, onStart func(pid int), union *os.File) (int, error) {
	specR, specW, err := os.Pipe()
	if err != nil {
		return setupFailed, fmt.Errorf("sandbox: pipe: %w", err)
	}
	defer specR.Close()
	defer specW.Close()
	logR, logW, err := os.Pipe()
	if err != nil {
		return setupFailed, fmt.Errorf("sandbox: pipe: %w", err)
	}
	defer logR.Close()
	defer logW.Close()

	if len(p.Inherited) > 0 {
		// After the image files: stage 1 tells them apart by count.
		files = append(files[:len(files):len(files)], p.inherit...)
	}
	cmd := stageCommand(1, files, specR, logW, listen)
	if union != nil {
		defer union.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, union)
		p.UnionFD = 2 + len(cmd.ExtraFiles)
	}
	if p.sessionLock != nil {
		// Last, unnamed: stage 1 only keeps it open (stale_linux.go).
		cmd.ExtraFiles = append(cmd.ExtraFiles, p.sessionLock)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		// If husk is killed outright, stage 1 gets SIGTERM and tears the
		// container down cleanly: the union is still synced.
		Pdeathsig: syscall.SIGTERM,
	}
	mapping, helpers := stage1IDs(p, log)
	if helpers == nil {
		mapping.apply(cmd.SysProcAttr)
	} else {
		cmd.Env = append(cmd.Env, idmapEnv+"=wait") // see fakeroot_linux.go
	}

	// Pdeathsig fires when the thread that forked exits, not the process;
	// keep this goroutine on its thread until stage 1 is gone
	// (go.dev/issue/27505).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	fw.setMaster(!p.TTYSignals)
	if sig := fw.early(); sig != 0 {
		// Every signal forwarded ends an uncaught process: the user
		// stopped husk before it started anything.
		log.Debug("signalled before stage 1 started", "signal", sig)
		return -int(sig), nil
	}
	if err := becomeSubreaper(); err != nil {
		log.Debug("processes outliving a killed stage 1 will not be killed", "error", err)
	}
	log.Debug("starting stage 1", "session", p.Session, "map", mapping.String())
	if err := cmd.Start(); err != nil {
		if isUsernsErrno(err) {
			return setupFailed, usernsError(err)
		}
		return setupFailed, fmt.Errorf("sandbox: starting stage 1: %w", err)
	}
	fw.targetStage(cmd.Process, p.TTYSignals)
	specR.Close()
	logW.Close()
	if union != nil {
		union.Close() // stage 1's alone now: its exit closes it
	}
	if helpers != nil {
		err := helpers.write(cmd.Process.Pid, mapping)
		if err == nil {
			_, err = specW.Write([]byte{0})
		}
		if err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if sig := fw.userStop(cmd.ProcessState); sig != 0 {
				// The pipe write failed because of it.
				return -int(sig), nil
			}
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if sig := fw.userStop(ee.ProcessState); sig != 0 {
					return -int(sig), nil
				}
			}
			return setupFailed, err
		}
	}

	// Send the plan. Stage 1 reads it before doing anything else.
	relayedc := make(chan relayed, 1)
	started := onStart
	if inherit := p.inherit; len(inherit) > 0 {
		// The payload has the caller's descriptors: a pipe's reader sees
		// its end when the payload closes it, not when husk exits.
		started = func(pid int) {
			closeFiles(inherit)
			if onStart != nil {
				onStart(pid)
			}
		}
	}
	go func() { relayedc <- relayNotify(logR, log, started) }()
	if err := json.NewEncoder(specW).Encode(p); err != nil {
		_ = cmd.Process.Kill()
	}
	specW.Close()

	stop := context.AfterFunc(ctx, func() { _ = cmd.Process.Signal(syscall.SIGTERM) })
	defer stop()
	werr := cmd.Wait()
	rep := <-relayedc

	status := exitStatus(cmd.ProcessState)
	log.Debug("stage 1 exited", "status", status, "wait", werr)
	if cmd.ProcessState != nil && killedBy(cmd.ProcessState) != 0 {
		// Stage 2 died with it (its parent-death signal): what it reaped
		// passed to this process.
		n := killChildren(p.serverPid)
		log.Debug("container processes killed after stage 1", "count", n)
	}
	switch {
	case rep.fatal != nil && status == mountRefusedStatus && !rep.started:
		return setupFailed, &refusedError{err: rep.fatal}
	case rep.fatal != nil:
		return setupFailed, rep.fatal
	case cmd.ProcessState == nil:
		return setupFailed, fmt.Errorf("sandbox: wait for stage 1: %w", werr)
	case fw.userStop(cmd.ProcessState) != 0:
		return -int(fw.userStop(cmd.ProcessState)), nil
	case killedBy(cmd.ProcessState) != 0:
		// Stage 1 always exits with the payload's status (128+N for its
		// death by signal N); dying of a signal itself means husk's own
		// supervisor and FUSE server are gone, not the command.
		return setupFailed, supervisorKilled(killedBy(cmd.ProcessState))
	case !rep.started && rep.signal == 0:
		// A stage crashed (its panic is on stderr) or was killed.
		return setupFailed, fmt.Errorf("sandbox: container setup ended with status %d "+
			"before the command started", status)
	}
	return rep.status(status), nil
}

// stageCommand builds the re-execution of this binary as a stage. The
// image files become fds 3.., followed by the spec pipe, the log pipe and,
// for an instance's stage 1, the listening socket for joins.
func stageCommand(stage int, files []*os.File, spec, log, listen *os.File) *exec.Cmd {
	cmd := exec.Command("/proc/self/exe")
	cmd.Args = []string{fmt.Sprintf("husk-stage%d", stage)}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = append(append([]*os.File(nil), files...), spec, log)
	n := 3 + len(files)
	// The stages keep husk's environment (Go runtime settings, the
	// Mounter's own knobs); the payload gets Spec.Env only.
	fds := fmt.Sprintf("%d,%d", n, n+1)
	if listen != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, listen)
		fds += fmt.Sprintf(",%d", n+2)
	}
	cmd.Env = append(os.Environ(),
		fmt.Sprintf("%s=%d", stageEnv, stage),
		fmt.Sprintf("%s=%s", specFDEnv, fds))
	if _, set := os.LookupEnv("MALLOC_ARENA_MAX"); !set {
		// glibc reserves 64 MiB of address space for each thread that
		// mallocs (libdeflate's decoders): stage 1 took 2.3 GB of it, and
		// failed under a `ulimit -v` of 2 GB; with two arenas, 1.4 GB.
		cmd.Env = append(cmd.Env, "MALLOC_ARENA_MAX=2")
	}
	return cmd
}

// exitStatus converts a wait status to a shell-style exit status.
func exitStatus(ps *os.ProcessState) int {
	if ps == nil {
		return setupFailed
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok {
		return ps.ExitCode()
	}
	return waitStatus(ws)
}

// killedBy is the signal that killed the process, 0 if it exited.
func killedBy(ps *os.ProcessState) syscall.Signal {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ws.Signal()
	}
	return 0
}

// supervisorKilled is the error for stage 1 killed by sig.
func supervisorKilled(sig syscall.Signal) error {
	return fmt.Errorf("husk's container supervisor was killed by signal %s; the "+
		"container's processes were killed (an overlay is replayed from its journal on its "+
		"next use)", signalName(sig))
}

// reaperKilled is the error for stage 2 killed by sig.
func reaperKilled(sig syscall.Signal) error {
	return fmt.Errorf("husk's container reaper was killed by signal %s; the container's "+
		"processes were killed", signalName(sig))
}

// signalName is sig's name without SIG, or its number.
func signalName(sig syscall.Signal) string {
	if name := strings.TrimPrefix(unix.SignalName(sig), "SIG"); name != "" {
		return name
	}
	return strconv.Itoa(int(sig))
}

// waitStatus is the exit code, or 128+N for death by signal N.
func waitStatus(ws syscall.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	}
	return setupFailed
}

// errStage is returned by Main's helpers for problems of the stage
// protocol itself: husk and a stage disagree (mixed binaries).
var errStage = errors.New("sandbox: bad stage invocation")
