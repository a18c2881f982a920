// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Instances (COMPAT §8). [RunInstance] is [Run] for a container that stays
// up after its payload exits; its stage 1 also serves joins on a unix
// socket. A joining husk ([Join]) connects, passes its stdin, stdout,
// stderr and the descriptors its caller left open above them (see
// PassInheritedFDs) with SCM_RIGHTS and sends a [JoinRequest]; stage 1
// starts a new stage 2 in a copy of its mount namespace (the same union,
// served by the same FUSE server: nothing opens the images twice), relays
// the signals the client sends and answers with the stage's log records
// and the exit status. Go cannot setns(2) into a user namespace from a
// multithreaded process, which is why the instance's own stage 1 starts
// the process.

// instanceStopSignals end an instance's stage 2.
var instanceStopSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP,
	syscall.SIGQUIT}

// joinGrace is how long joined processes get after SIGTERM when the
// instance stops.
const joinGrace = 5 * time.Second

// RunInstance runs spec as an instance: like [Run], but the container stays
// up after the payload exits, until its stage 2 (pid) gets SIGINT, SIGTERM,
// SIGHUP or SIGQUIT. listen is a listening unix socket (see
// net.UnixListener.File) on which stage 1 serves [Join] requests. started
// is called once the payload runs, with the host pid of the stage to
// signal to stop the instance. RunInstance returns when the instance has
// stopped and its union is synced and unmounted.
func RunInstance(ctx context.Context, spec *Spec, files []*os.File, listen *os.File,
	log *slog.Logger, started func(pid int)) (int, error) {
	s := *spec
	s.Instance = true
	return run(ctx, &s, files, listen, log, started)
}

// JoinRequest is a command to run in a running instance.
type JoinRequest struct {
	// Args and Env are the payload's argv and environment, as Spec.Args
	// and Spec.Env.
	Args RawStrings
	Env  RawStrings
	// Cwd is the working directory in the container; empty means the
	// instance's home. CwdExplicit makes failing to enter it fatal.
	Cwd         string
	CwdExplicit bool
	Umask       int
	// TTYSignals is set by Join (always false: see there).
	TTYSignals bool
	// Caps, when set, replaces the instance's capabilities for this
	// command.
	Caps *Caps
	// Inherited are the numbers the caller's descriptors above stderr
	// get in the command (set by Join): they follow stdin, stdout and
	// stderr in the SCM_RIGHTS message, in this order.
	Inherited []int
	// Limits are the caller's resource limits (set by Join), which the
	// command takes on as far as the instance's hard limits allow.
	Limits []Rlimit
}

// Join runs req in the instance whose stage 1 listens on socket, with this
// process's stdin, stdout and stderr, and returns its status as [Run]
// does. SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are
// forwarded to it.
func Join(ctx context.Context, socket string, req JoinRequest, log *slog.Logger) (int, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(req.Args) == 0 {
		return setupFailed, errors.New("sandbox: no command to run")
	}
	// The joined stage 2 runs under this caller's limits (callerLimits).
	if err := checkTasks(); err != nil {
		return setupFailed, err
	}
	if req.Caps != nil {
		if err := req.Caps.validate(); err != nil {
			return setupFailed, err
		}
	}
	// The joined command runs in the instance's session, not in the
	// terminal's foreground process group: a ^C reaches only this
	// process, so every signal is forwarded.
	req.TTYSignals = false
	// Catch the signals before the instance can start the command: one
	// arriving between the request and signal.Notify would kill this
	// process instead of reaching the command. Those caught before the
	// request is sent wait in sigc and follow it.
	sigc := make(chan os.Signal, 16)
	signal.Notify(sigc, forwardedSignals...)
	defer signal.Stop(sigc)
	addr, dialed, err := SocketPath(socket)
	if err != nil {
		return setupFailed, fmt.Errorf("connecting to the instance: %w", err)
	}
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: addr, Net: "unix"})
	dialed()
	if err != nil {
		return setupFailed, fmt.Errorf("connecting to the instance: %w", err)
	}
	defer conn.Close()

	req.Limits = callerLimits()
	inherit := takeInherited(log)
	fds := []int{0, 1, 2}
	req.Inherited = nil
	for _, fd := range inherit {
		if len(fds) == maxJoinFDs {
			log.Warn(fmt.Sprintf("descriptor %d and those above it are not passed to the "+
				"instance: one message carries at most %d", fd.num, maxJoinFDs))
			break
		}
		// The raw number, not File.Fd, which would clear O_NONBLOCK of
		// the open file the caller shares.
		if rawFD(fd.f, func(n int) { fds = append(fds, n) }) == nil {
			req.Inherited = append(req.Inherited, fd.num)
		}
	}
	rights := unix.UnixRights(fds...)
	_, _, err = conn.WriteMsgUnix([]byte{0}, rights, nil)
	// The message holds the open files now, and the instance gets its
	// own copies: a pipe's reader must see its end when the command
	// closes it, not when this process exits.
	for _, fd := range inherit {
		fd.f.Close()
	}
	if err != nil {
		return setupFailed, fmt.Errorf("sending stdio to the instance: %w", err)
	}
	b, err := json.Marshal(req)
	if err != nil {
		return setupFailed, err
	}
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return setupFailed, fmt.Errorf("sending the command to the instance: %w", err)
	}

	// Signals travel as their numbers, one per line. An instance that
	// has said nothing yet may never read them (its stage 1 could not
	// accept the connection): a signal that would end this process then
	// ends the wait for it after joinAnswer.
	done := make(chan struct{})
	defer close(done)
	heard := make(chan struct{})
	var gaveUp atomic.Int32
	var wmu sync.Mutex
	send := func(sig syscall.Signal) {
		wmu.Lock()
		defer wmu.Unlock()
		_, _ = fmt.Fprintf(conn, "%d\n", int(sig))
	}
	giveUp := func(sig syscall.Signal) {
		select {
		case <-heard:
		case <-done:
		case <-time.After(joinAnswer):
			gaveUp.Store(int32(sig))
			conn.Close() // ends relay below
		}
	}
	go func() {
		for {
			select {
			case sig := <-sigc:
				send(sig.(syscall.Signal))
				if s := sig.(syscall.Signal); s == syscall.SIGINT || s == syscall.SIGTERM ||
					s == syscall.SIGHUP {
					go giveUp(s)
				}
			case <-ctx.Done():
				send(syscall.SIGTERM)
				return
			case <-done:
				return
			}
		}
	}()

	rep := relay(&firstRead{r: conn, heard: heard}, log)
	if sig := syscall.Signal(gaveUp.Load()); sig != 0 {
		return 128 + int(sig), fmt.Errorf("the instance did not answer; gave up on %v", sig)
	}
	switch {
	case rep.fatal != nil:
		return setupFailed, rep.fatal
	case rep.exit == nil && !rep.started:
		return setupFailed, ErrNotJoined
	case rep.exit == nil:
		return setupFailed, errors.New("the instance ended the connection before the " +
			"command finished (was it stopped?)")
	}
	return rep.status(*rep.exit), nil
}

// ErrNotJoined is Join's error when the instance ended the connection
// before it started the command (it was stopping): nothing ran, and the
// caller may start over.
var ErrNotJoined = errors.New("the instance ended the connection before it started the " +
	"command (was it stopping?)")

// maxJoinFDs is the most descriptors one SCM_RIGHTS message carries
// (the kernel's SCM_MAX_FD): stdin, stdout, stderr and the caller's.
const maxJoinFDs = 253

// rawFD calls f with the descriptor of file without changing its mode.
func rawFD(file *os.File, f func(fd int)) error {
	rc, err := file.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(fd uintptr) { f(int(fd)) })
}

// acceptRetry is the pause after a failed accept.
const acceptRetry = 100 * time.Millisecond

// joinAnswer is how long a joining client that is told to end waits for
// an instance that has not answered at all.
const joinAnswer = 3 * time.Second

// firstRead is r, closing heard at the first byte read from it.
type firstRead struct {
	r     io.Reader
	heard chan struct{}
	once  sync.Once
}

func (f *firstRead) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if n > 0 {
		f.once.Do(func() { close(f.heard) })
	}
	return n, err
}

// joinServer is stage 1's side of joins.
type joinServer struct {
	st *stage1State
	l  net.Listener

	mu      sync.Mutex
	closed  bool
	running map[*os.Process]bool
	wg      sync.WaitGroup
	// active counts the joins being served; each end pokes ended.
	active int
	ended  chan struct{}
	// netns is the instance's network namespace with Spec.Net, which
	// joined commands enter (netns_linux.go); nil otherwise.
	netns *os.File
}

func startJoinServer(st *stage1State, f *os.File, stage2 int) *joinServer {
	js := &joinServer{st: st, running: map[*os.Process]bool{}, ended: make(chan struct{}, 1)}
	if st.plan.Spec.Net {
		ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", stage2))
		if err != nil {
			st.log.Warn("instance: joined commands get their own network namespace",
				"error", err)
		}
		js.netns = ns
	}
	l, err := net.FileListener(f)
	f.Close()
	if err != nil {
		st.log.Warn("instance: cannot serve joins", "error", err)
		return js
	}
	js.l = l
	go js.accept()
	return js
}

// accept serves joins until the listener is closed. Other errors (no
// descriptor left, say) are passed: a join refused now must not end the
// instance's joins for good.
func (js *joinServer) accept() {
	warned := false
	for {
		c, err := js.l.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			if !warned {
				js.st.log.Warn("instance: cannot accept a join", "error", err)
				warned = true
			}
			time.Sleep(acceptRetry)
			continue
		}
		js.mu.Lock()
		if js.closed {
			js.mu.Unlock()
			c.Close()
			return
		}
		js.wg.Add(1)
		js.active++
		js.mu.Unlock()
		go func() {
			defer js.wg.Done()
			defer js.served()
			defer c.Close()
			if err := js.serve(c.(*net.UnixConn)); err != nil {
				js.st.log.Debug("join failed", "error", err)
			}
		}()
	}
}

// served counts a join's end.
func (js *joinServer) served() {
	js.mu.Lock()
	js.active--
	js.mu.Unlock()
	select {
	case js.ended <- struct{}{}:
	default:
	}
}

// drain waits until no joined command runs, serving new joins meanwhile,
// or until stage 1 gets a signal that stops a container. A --sharens
// group's first command may end before the others (MPI ranks end a few
// tenths of a second apart); its container stays until they have ended,
// where the others were sent SIGTERM and ended with 143.
func (js *joinServer) drain() {
	stopc := make(chan os.Signal, 1)
	signal.Notify(stopc, instanceStopSignals...)
	defer signal.Stop(stopc)
	// Stage 0 gone (husk killed): nobody waits for the group any more.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		js.mu.Lock()
		n := js.active
		js.mu.Unlock()
		if n == 0 {
			return
		}
		js.st.log.Debug("waiting for joined commands", "count", n)
		select {
		case <-js.ended:
		case <-tick.C:
			if os.Getppid() != js.st.ppid {
				js.st.log.Debug("joined commands stopped: husk is gone")
				return
			}
		case sig := <-stopc:
			js.st.log.Debug("joined commands stopped", "signal", sig)
			return
		}
	}
}

// stop refuses new joins, asks the running ones to end (SIGTERM, then
// SIGKILL after joinGrace) and waits for them, so that nothing writes to
// the union while it is synced.
func (js *joinServer) stop() {
	defer func() {
		if js.netns != nil {
			js.netns.Close()
		}
	}()
	js.mu.Lock()
	js.closed = true
	if js.l != nil {
		js.l.Close()
	}
	for p := range js.running {
		_ = p.Signal(syscall.SIGTERM)
	}
	js.mu.Unlock()
	done := make(chan struct{})
	go func() { js.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(joinGrace):
	}
	js.mu.Lock()
	for p := range js.running {
		_ = p.Kill()
	}
	js.mu.Unlock()
	<-done
}

// serve runs one join: read the stdio fds and the request, start a stage
// 2, relay signals, report the status.
func (js *joinServer) serve(c *net.UnixConn) error {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(maxJoinFDs*4))
	_, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return err
	}
	files, err := parseRights(oob[:oobn])
	if err != nil {
		return err
	}
	defer closeFiles(files) // stage 2 has its own copies once started
	if flags&unix.MSG_CTRUNC != 0 || len(files) < 3 {
		return fmt.Errorf("join: %d descriptors arrived, want stdio and the caller's",
			len(files))
	}
	r := bufio.NewReader(c)
	line, err := r.ReadBytes('\n')
	if err != nil {
		return err
	}
	var req JoinRequest
	if err := json.Unmarshal(line, &req); err != nil {
		return err
	}
	if len(req.Inherited) != len(files)-3 {
		return fmt.Errorf("join: %d descriptors arrived for %d numbers", len(files)-3,
			len(req.Inherited))
	}
	stdio, inherit := files[:3], files[3:]
	// The instance's limit on open files may be lower than the caller's:
	// a descriptor above what the command can have is left out, as Run
	// leaves it out (inherit_linux.go), and the caller is told.
	if max := noFileMax(req.Limits); max > 0 {
		var nums []int
		var kept []*os.File
		for i, num := range req.Inherited {
			if placeable(num, len(req.Inherited), max) {
				nums, kept = append(nums, num), append(kept, inherit[i])
				continue
			}
			b, _ := json.Marshal(record{Level: slog.LevelWarn, Msg: tooHigh(num, max)})
			_, _ = c.Write(append(b, '\n'))
		}
		req.Inherited, inherit = nums, kept
	}

	// The stage's log records go to the client as they come.
	logR, logW, err := os.Pipe()
	if err != nil {
		return err
	}
	var wmu sync.Mutex
	copied := make(chan struct{})
	started := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(logR)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		seen := false
		for sc.Scan() {
			if !seen && isStartedRecord(sc.Bytes()) {
				seen = true
				close(started)
			}
			wmu.Lock()
			_, _ = c.Write(append(sc.Bytes(), '\n'))
			wmu.Unlock()
		}
		logR.Close()
	}()

	status, serr := js.runStage2(c, r, &req, stdio, inherit, logW, started)
	<-copied
	if serr != nil {
		b, _ := json.Marshal(record{Level: slog.LevelError, Msg: serr.Error(), Fatal: true})
		_, _ = c.Write(append(b, '\n'))
		return serr
	}
	b, _ := json.Marshal(record{Level: slog.LevelDebug, Exit: &status})
	_, err = c.Write(append(b, '\n'))
	return err
}

// runStage2 starts the stage 2 of a join, relays the client's signals to
// it and waits for it. started is closed when stage 2 reports that the
// payload runs.
func (js *joinServer) runStage2(c *net.UnixConn, r *bufio.Reader, req *JoinRequest,
	stdio, inherit []*os.File, logW *os.File, started <-chan struct{}) (int, error) {
	defer logW.Close()
	st := js.st
	if _, err := os.Lstat(st.final); errors.Is(err, os.ErrNotExist) {
		// Removing it on the host detached the container's tree here.
		return setupFailed, fmt.Errorf("the container's session directory %s was removed "+
			"on the host (a cleaner of temporary files?): it can start no more commands; "+
			"stop it and start it again", st.sess.dir)
	}
	p := *st.plan
	spec := *p.Spec
	spec.Args, spec.Env, spec.Umask = req.Args, req.Env, req.Umask
	spec.Cwd, spec.CwdExplicit = req.Cwd, req.CwdExplicit
	spec.Instance = false
	if js.netns != nil {
		spec.Net = false // it joins the instance's, see enterNetns
	}
	if req.Caps != nil {
		spec.Caps = *req.Caps
	}
	p.Spec, p.TTYSignals = &spec, req.TTYSignals
	p.Inherited, p.inherit, p.Limits = req.Inherited, nil, req.Limits

	specR, specW, err := os.Pipe()
	if err != nil {
		return setupFailed, err
	}
	defer specR.Close()
	defer specW.Close()
	cmd := stageCommand(2, inherit, specR, logW, nil)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio[0], stdio[1], stdio[2]
	flags := stage2Cloneflags(&spec)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Pdeathsig: syscall.SIGKILL}

	runtime.LockOSThread() // Pdeathsig is per thread, see run_linux.go
	defer runtime.UnlockOSThread()
	lfd := st.devices.install() // this thread ends with the goroutine
	js.mu.Lock()
	if js.closed {
		js.mu.Unlock()
		return setupFailed, errors.New("the instance is stopping")
	}
	if js.netns != nil {
		err = enterNetns(js.netns)
	}
	if err == nil {
		err = cmd.Start()
	}
	if err == nil {
		js.running[cmd.Process] = true
	}
	js.mu.Unlock()
	st.devices.serve(lfd)
	closeFiles(inherit) // stage 2 has them, or failed
	if err != nil {
		return setupFailed, fmt.Errorf("starting stage 2: %w", err)
	}
	specR.Close()
	logW.Close()
	if err := json.NewEncoder(specW).Encode(&p); err != nil {
		_ = cmd.Process.Kill()
	}
	specW.Close()

	// Signals from the client; a client gone early ends the command. They
	// wait until the payload runs: a signal that reached stage 2 before
	// its Go runtime had installed its handlers (startForwarding, first
	// thing in Main) would kill it instead of reaching the command, which
	// is then reported as the command's death by that signal.
	exited := make(chan struct{})
	go func() {
		for {
			line, err := r.ReadString('\n')
			sig := syscall.SIGTERM
			if err == nil {
				n, aerr := strconv.Atoi(strings.TrimSpace(line))
				if aerr != nil || n <= 0 || n >= 65 {
					continue
				}
				sig = syscall.Signal(n)
			}
			select {
			case <-started:
				_ = cmd.Process.Signal(sig)
			case <-exited:
				return
			}
			if err != nil {
				// No client is left to end a command that ignores
				// SIGTERM: after joinGrace it is killed, and its
				// reaper then ends what it left, as after any exit.
				select {
				case <-exited:
				case <-time.After(joinGrace):
					killChildrenOf(cmd.Process.Pid)
				}
				return
			}
		}
	}()

	werr := cmd.Wait()
	close(exited)
	js.mu.Lock()
	delete(js.running, cmd.Process)
	js.mu.Unlock()
	if cmd.ProcessState == nil {
		return setupFailed, fmt.Errorf("waiting for stage 2: %w", werr)
	}
	return exitStatus(cmd.ProcessState), nil
}

// isStartedRecord reports whether line is stage 2's record saying that
// the payload runs (pipeHandler.started).
func isStartedRecord(line []byte) bool {
	if !bytes.Contains(line, []byte(`"s":true`)) {
		return false
	}
	var rec record
	return json.Unmarshal(line, &rec) == nil && rec.Started
}

// parseRights returns the fds of an SCM_RIGHTS message, close-on-exec.
func parseRights(oob []byte) ([]*os.File, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, m := range msgs {
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			return nil, err
		}
		fds = append(fds, got...)
	}
	files := make([]*os.File, len(fds))
	for i, fd := range fds {
		unix.CloseOnExec(fd)
		files[i] = os.NewFile(uintptr(fd), fmt.Sprintf("join-fd-%d", i))
	}
	return files, nil
}

// waitSignal keeps an instance's stage 2 reaping orphans until a stop
// signal arrives.
func (s *supervisor) waitSignal(stopc chan os.Signal) {
	for {
		select {
		case sig := <-stopc:
			s.log.Debug("instance stopping", "signal", sig)
			return
		case <-s.chld:
			s.reap()
		}
	}
}

// RunShared runs spec as [Run] does, and also serves [Join] requests on
// listen while the payload runs (Apptainer's --sharens): when the payload
// exits, the container ends as for Run. started is called once the
// payload runs, with the host pid of its stage 2.
func RunShared(ctx context.Context, spec *Spec, files []*os.File, listen *os.File,
	log *slog.Logger, started func(pid int)) (int, error) {
	s := *spec
	s.Instance = false
	return run(ctx, &s, files, listen, log, started)
}
