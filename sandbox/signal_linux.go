// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"fmt"
	"os"
	"os/signal"
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
	jobs       bool // jobSignals are caught and forwarded
	pending    []os.Signal
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
				if sig == syscall.SIGTSTP && f.master {
					_ = syscall.Kill(os.Getpid(), syscall.SIGSTOP)
				}
			}
			f.mu.Unlock()
		case <-f.done:
			return
		}
	}
}

// received reports whether this process has received sig since
// startForwarding.
func (f *forwarder) received(sig syscall.Signal) bool {
	return sig > 0 && sig < 64 && f.got.Load()&(1<<sig) != 0
}

// target sets the process that receives the signals and delivers those
// held so far. ttySignals is [plan.TTYSignals]. A stage of husk as the
// target gets a signal only once it handles them (awaitHandlers).
func (f *forwarder) target(p *os.Process, ttySignals bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.proc, f.ttySignals = p, ttySignals
	if !ttySignals && !f.jobs {
		f.jobs = true
		signal.Notify(f.ch, jobSignals...)
	}
	for _, sig := range f.pending {
		if !(ttySignals && ttyGenerated(sig)) {
			f.deliver(sig)
		}
	}
	f.pending = nil
}

// setMaster makes f stage 0's forwarder.
func (f *forwarder) setMaster() {
	f.mu.Lock()
	f.master = true
	f.mu.Unlock()
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
// A payload that leaves SIGTSTP to its default action gets SIGSTOP
// instead: in an orphaned process group (a batch job's, a script run
// with setsid) the kernel discards a SIGTSTP that would stop a process,
// since no shell could resume it, but husk resumes it on SIGCONT.
func (f *forwarder) deliver(sig os.Signal) {
	if f.stage {
		awaitHandlers(f.proc.Pid)
	} else if sig == syscall.SIGTSTP && !handles(f.proc.Pid, syscall.SIGTSTP) {
		sig = syscall.SIGSTOP
	}
	_ = f.proc.Signal(sig)
}

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

// awaitHandlers waits, for a while at most, until stage process pid
// catches the forwarded signals. Until then a SIGTERM or SIGINT would
// kill it in the Go runtime's start-up and husk would report its own
// supervisor killed: the signal that meant to stop the command ended the
// container with a misleading error. A stage names itself husk-stageN
// (Main) right after startForwarding; until then it is "exe".
func awaitHandlers(pid int) {
	comm := fmt.Sprintf("/proc/%d/comm", pid)
	for range 2000 {
		b, err := os.ReadFile(comm)
		if err != nil || strings.HasPrefix(string(b), "husk-stage") {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// stop ends forwarding and restores the default signal handling (for
// stage 0, which returns to the CLI).
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
