package overlay

import (
	"os"
	"os/signal"
	"syscall"
)

// removeOnSignal removes path if SIGINT, SIGTERM or SIGHUP comes before
// the returned function is called, and then lets the process die of the
// signal, as it would have. A create interrupted while it builds (an
// overlay of a few TiB takes a minute) had left its staging file, as
// large as the overlay asked for, until the next create of the same name.
func removeOnSignal(path string) (stop func()) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-c:
			os.Remove(path)
			signal.Reset(sig)
			syscall.Kill(os.Getpid(), sig.(syscall.Signal))
		case <-done:
		}
	}()
	return func() {
		signal.Stop(c)
		close(done)
	}
}
