package fusefs

// notifyNewEntry tells the kernel that name now exists in directory p,
// which it may have cached as missing, and that p's listing and
// attributes changed.
//
// The notices are written to the FUSE device from a goroutine of their
// own, which runs on one of the server's ordinary threads: the caller may
// be on a thread of package detach (stage 1 makes its mount points from
// one), whose descriptor table does not hold the device, and a notice
// written there would be lost (EBADF) and leave the kernel's negative
// entry in place.
func notifyNewEntry(p *node, name string) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.NotifyEntry(name)
		p.NotifyContent(0, 0)
	}()
	<-done
}
