// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// forwardedSignals are the signals each stage passes on to the next one
// and finally to the payload. SIGTSTP, SIGTTIN and SIGTTOU keep their
// default action (stop) in every stage, so job control works unchanged.
var forwardedSignals = []os.Signal{
	syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP,
	syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2,
}

// jobSignals are forwarded as well when no terminal signals the payload
// itself (a batch system's or another shell's kill): SIGTSTP stops the
// command, and husk with it, as Apptainer's master; SIGCONT resumes it.
// With a terminal they keep their default actions in every stage, and the
// terminal stops and resumes the whole process group.
var jobSignals = []os.Signal{syscall.SIGTSTP, syscall.SIGCONT}

// ttyGenerated reports whether a terminal sends sig to its whole
// foreground process group (^C, ^\, hangup).
func ttyGenerated(sig os.Signal) bool {
	return sig == syscall.SIGINT || sig == syscall.SIGQUIT || sig == syscall.SIGHUP
}

// terminalSignalsUs reports whether stdin, stdout or stderr is a terminal
// whose foreground process group is ours. The stages and the payload share
// husk's process group, so the terminal already delivers ^C to all of
// them; forwarding it too would deliver it twice (COMPAT 7.7,
// Apptainer's checkSignalPropagation).
//
// Apptainer then forwards nothing at all. husk still forwards the signals
// a terminal never generates (SIGTERM, SIGUSR1, SIGUSR2), so `kill <pid>`
// from another shell reaches the payload in both cases.
func terminalSignalsUs() bool {
	pgrp := unix.Getpgrp()
	for fd := 0; fd <= 2; fd++ {
		fg, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP)
		if err == nil && fg == pgrp {
			return true
		}
	}
	return false
}

// forwarder relays signals received by this process to a target process.
// Signals arriving before the target is known are held and delivered
// when it is.
type forwarder struct {
	ch   chan os.Signal
	done chan struct{}
	got  atomic.Uint64 // the signals received, as bits 1<<N

	mu         sync.Mutex
	master     bool // stage 0's: it stops itself after passing SIGTSTP on
	proc       *os.Process
	stage      bool // proc is a stage of husk, not the payload
	ttySignals bool
	jobs       bool        // jobSignals are caught and forwarded
	pending    []os.Signal // received before there was a target
	held       []os.Signal // for a stage not ready for them yet, in order
	flushing   bool        // a goroutine delivers held
}

// startForwarding catches the forwarded signals from now on. Call it
// before starting the next stage so that no signal is lost in between.
func startForwarding() *forwarder {
	f := &forwarder{ch: make(chan os.Signal, 16), done: make(chan struct{})}
	signal.Notify(f.ch, forwardedSignals...)
	go f.loop()
	return f
}

func (f *forwarder) loop() {
	for {
		select {
		case sig := <-f.ch:
			if s, ok := sig.(syscall.Signal); ok && s > 0 && s < 64 {
				f.got.Or(1 << s)
			}
			f.mu.Lock()
			switch {
			case f.proc == nil:
				f.pending = append(f.pending, sig)
			case f.ttySignals && ttyGenerated(sig):
				// The terminal signalled the payload itself.
			default:
				f.deliver(sig)
			}
			f.mu.Unlock()
		case <-f.done:
			return
		}
	}
}

// userStop is the signal that killed the next stage, ps, when this
// process got it too, else 0. Such a stage died of the user's ^C or kill
// (the terminal signals the whole process group) in its first
// milliseconds, before it could catch signals: the user stopped the
// container while it started, which is no failure of husk's.
// The id-map helpers stage 0 runs can die of it too, in the moment
// before they leave husk's process group.
//
// A signal sent to the whole group can kill the stage before it reaches
// this process (the kernel signals a group one process at a time, and
// this process's handler runs when a thread of it next runs): for a
// signal this process catches, it waits up to 100 ms for it. A TERM to
// the group at 12 ms of a --fakeroot start was once reported as husk's
// supervisor killed (TestE2EFakerootSignalDuringStartup, in CI).
func (f *forwarder) userStop(ps *os.ProcessState) syscall.Signal {
	if ps == nil {
		return 0
	}
	sig := killedBy(ps)
	if sig <= 0 || sig >= 64 {
		return 0
	}
	for wait := 0; ; wait++ {
		if f.got.Load()&(1<<sig) != 0 {
			return sig
		}
		if wait == 20 || !slices.Contains(forwardedSignals, os.Signal(sig)) {
			return 0
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// early returns the first signal received while there was no target yet,
// or 0.
func (f *forwarder) early() syscall.Signal {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, sig := range f.pending {
		if s, ok := sig.(syscall.Signal); ok {
			return s
		}
	}
	return 0
}

// target sets the process that receives the signals and delivers those
// held so far. ttySignals is [plan.TTYSignals]. A stage of husk as the
// target gets a signal only once it is ready for it (stageReady).
func (f *forwarder) target(p *os.Process, ttySignals bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.proc, f.ttySignals = p, ttySignals
	if !ttySignals {
		f.catchJobsLocked()
	}
	for _, sig := range f.pending {
		if !(ttySignals && ttyGenerated(sig)) {
			f.deliver(sig)
		}
	}
	f.pending = nil
}

// setMaster makes f stage 0's forwarder; jobs says no terminal signals
// the payload, so SIGTSTP and SIGCONT are caught from now on (before,
// the kernel drops a SIGTSTP to husk in an orphaned process group).
func (f *forwarder) setMaster(jobs bool) {
	f.mu.Lock()
	f.master = true
	if jobs {
		f.catchJobsLocked()
	}
	f.mu.Unlock()
}

// catchJobsLocked catches jobSignals. Preconditions: f.mu held.
func (f *forwarder) catchJobsLocked() {
	if !f.jobs {
		f.jobs = true
		signal.Notify(f.ch, jobSignals...)
	}
}

// targetStage is target for a stage process.
func (f *forwarder) targetStage(p *os.Process, ttySignals bool) {
	f.mu.Lock()
	f.stage = true
	f.mu.Unlock()
	f.target(p, ttySignals)
}

// deliver sends sig to the target. Preconditions: f.mu held.
//
// A stage gets a signal only once it is ready for it (stageReady); until
// then signals are held and sent in order by a goroutine, so neither the
// signal loop nor target waits. A payload that leaves SIGTSTP to its
// default action gets SIGSTOP instead: in an orphaned process group (a
// batch job's, a script run with setsid) the kernel discards a SIGTSTP
// that would stop a process, since no shell could resume it, but husk
// resumes it on SIGCONT.
func (f *forwarder) deliver(sig os.Signal) {
	switch {
	case !f.stage:
		if sig == syscall.SIGTSTP && !handles(f.proc.Pid, syscall.SIGTSTP) {
			sig = syscall.SIGSTOP
		}
		_ = f.proc.Signal(sig)
		switch sig {
		case syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT:
			// A stopped payload would keep the signal pending, and a
			// SIGTERM meant to end the container would end nothing
			// (a shell's kill does the same for a stopped job).
			_ = f.proc.Signal(syscall.SIGCONT)
		}
	case len(f.held) == 0 && stageReady(f.proc.Pid, sig):
		f.sendStage(f.proc, sig)
	default:
		f.held = append(f.held, sig)
		if !f.flushing {
			f.flushing = true
			go f.flush()
		}
	}
}

// flush delivers the held signals in order, each once the stage is
// ready for it or, at the latest, after stageWait.
func (f *forwarder) flush() {
	for {
		f.mu.Lock()
		if len(f.held) == 0 {
			f.flushing = false
			f.mu.Unlock()
			return
		}
		sig, p := f.held[0], f.proc
		f.mu.Unlock()
		for deadline := time.Now().Add(stageWait); time.Now().Before(deadline); {
			if stageReady(p.Pid, sig) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		f.mu.Lock()
		f.held = f.held[1:]
		f.sendStage(p, sig)
		f.mu.Unlock()
	}
}

// sendStage sends sig to stage p. Stage 0 stops itself once it has passed
// a SIGTSTP on, not before: stopped, it could pass on nothing, and the
// command would run on while husk looked stopped.
// Preconditions: f.mu held.
func (f *forwarder) sendStage(p *os.Process, sig os.Signal) {
	_ = p.Signal(sig)
	if sig == syscall.SIGTSTP && f.master {
		_ = syscall.Kill(os.Getpid(), syscall.SIGSTOP)
	}
}

// stageWait bounds how long a signal waits for a stage to get ready.
const stageWait = 2 * time.Second

// handles reports whether process pid catches or ignores sig.
func handles(pid int, sig syscall.Signal) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "SigCgt" && k != "SigIgn") {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err == nil && mask&(1<<(sig-1)) != 0 {
			return true
		}
	}
	return false
}

// stageReady reports whether stage process pid can take sig. Before it
// catches the forwarded signals a SIGTERM or SIGINT would kill it in the
// Go runtime's start-up, and husk would report its own supervisor
// killed; a stage 1 that re-executes itself for --fakeroot's id maps
// would lose one it had caught. A stage names itself husk-stageN (Main)
// once neither can happen; until then it is "exe". SIGTSTP must wait
// until the stage catches it too (target), or in an orphaned process
// group the kernel would drop it.
func stageReady(pid int, sig os.Signal) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return true // gone: nothing to wait for
	}
	if !strings.HasPrefix(string(b), "husk-stage") {
		return false
	}
	return sig != syscall.SIGTSTP || handles(pid, syscall.SIGTSTP)
}

// stop ends forwarding and restores the default signal handling (for
// stage 0, which returns to the CLI).
// gotStop says whether this process has received a signal that stops a
// container (instanceStopSignals).
func (f *forwarder) gotStop() bool {
	got := f.got.Load()
	for _, s := range instanceStopSignals {
		if got&(1<<uint(s.(syscall.Signal))) != 0 {
			return true
		}
	}
	return false
}

func (f *forwarder) stop() {
	signal.Stop(f.ch)
	close(f.done)
}

// stopIgnoring ends forwarding and ignores the signals from now on, so
// that a late ^C cannot kill a stage while it tears the container down.
func (f *forwarder) stopIgnoring() {
	signal.Ignore(forwardedSignals...)
	close(f.done)
}
