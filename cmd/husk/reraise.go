package main

import (
	"os"
	"os/signal"
	"syscall"
	"time"
)

// reraised are the signals husk re-raises on itself when they killed the
// container, so that a calling shell sees a death by signal, as with
// Apptainer (COMPAT §7.7). Signals whose default action dumps core are
// left out: husk exits 128+N for those instead of dumping its own core.
var reraised = map[syscall.Signal]bool{
	syscall.SIGHUP: true, syscall.SIGINT: true, syscall.SIGKILL: true,
	syscall.SIGPIPE: true, syscall.SIGALRM: true, syscall.SIGTERM: true,
	syscall.SIGUSR1: true, syscall.SIGUSR2: true,
}

// exit ends husk with the container's status. The sandbox reports a death
// by signal N as 128+N, which a payload can also exit with on purpose; the
// calling shell sees the same $? either way.
func exit(code int) {
	if sig := syscall.Signal(code - 128); code > 128 && reraised[sig] {
		signal.Reset(sig)
		syscall.Kill(os.Getpid(), sig)
		// The signal is delivered at once; this is only a fallback.
		time.Sleep(100 * time.Millisecond)
	}
	os.Exit(code)
}
