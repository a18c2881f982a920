// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// forwardedSignals are the signals each stage passes on to the next one
// and finally to the payload. SIGTSTP, SIGTTIN and SIGTTOU keep their
// default action (stop) in every stage, so job control works unchanged.
var forwardedSignals = []os.Signal{
	syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP,
	syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2,
}

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

	mu         sync.Mutex
	proc       *os.Process
	ttySignals bool
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
			f.mu.Lock()
			switch {
			case f.proc == nil:
				f.pending = append(f.pending, sig)
			case f.ttySignals && ttyGenerated(sig):
				// The terminal signalled the payload itself.
			default:
				_ = f.proc.Signal(sig)
			}
			f.mu.Unlock()
		case <-f.done:
			return
		}
	}
}

// target sets the process that receives the signals and delivers those
// held so far. ttySignals is [plan.TTYSignals].
func (f *forwarder) target(p *os.Process, ttySignals bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.proc, f.ttySignals = p, ttySignals
	for _, sig := range f.pending {
		if !(ttySignals && ttyGenerated(sig)) {
			_ = p.Signal(sig)
		}
	}
	f.pending = nil
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
