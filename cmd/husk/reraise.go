package main

import (
	"os"
	"os/signal"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
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

// exit ends husk with the container's status: an exit code, or -N when
// signal N killed the payload (sandbox.Run). Then husk dies of the same
// signal, so that a calling shell or program sees a death by signal, as
// with Apptainer (COMPAT §7.7); a payload that exited 128+N on purpose
// has husk exit 128+N.
func exit(code int) {
	if code >= 0 {
		os.Exit(code)
	}
	sig := syscall.Signal(-code)
	if reraised[sig] {
		signal.Reset(sig)
		defaultAction(sig)
		syscall.Kill(os.Getpid(), sig)
		// The signal is delivered at once; this is only a fallback.
		time.Sleep(100 * time.Millisecond)
	}
	os.Exit(128 + int(sig))
}

// defaultAction gives sig the kernel's default action. signal.Reset is
// not enough: Go's runtime keeps its own handler, which exits for SIGHUP,
// SIGINT and SIGTERM but ignores SIGUSR1, SIGUSR2, SIGPIPE and SIGALRM,
// so husk exited 128+N for those instead of dying of them.
func defaultAction(sig syscall.Signal) {
	// struct sigaction, all zero: SIG_DFL, no flags, an empty mask.
	var act [4]uint64
	unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&act)),
		0, 8, 0, 0)
}
