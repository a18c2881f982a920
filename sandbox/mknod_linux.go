// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Device nodes in --fakeroot containers (issue 4).
//
// The kernel lets only CAP_MKNOD in the initial user namespace make char
// and block devices, and refuses before FUSE sees the call. With
// --fakeroot, stage 1 installs a seccomp filter on the thread that
// forks each stage 2 (seccomp_linux.go): the container's mknod and
// mknodat of devices wait for stage 1, which reads the call from /proc,
// decides, and makes the node through the union's Go API
// ([DeviceMaker]) without the kernel. It does so only where the kernel
// would for real root on an overlayfs:
//
//   - the caller is in the container's user namespace (stage 1's; not a
//     nested one) and has CAP_MKNOD there;
//   - the parent directory, resolved as the caller resolves it (its root,
//     working directory or dirfd, symbolic links inside the container),
//     is on the union's FUSE mount, writable, and the caller may create
//     in it (write and search permission by mode bits, or
//     CAP_DAC_OVERRIDE);
//   - the node gets the caller's fsuid and fsgid and its umask.
//
// Everything else is handed back to the kernel (SECCOMP_USER_NOTIF_FLAG_
// CONTINUE), which runs the call as if there were no filter: its own
// errors come in its own order (ENOENT, ENAMETOOLONG, EEXIST, EACCES,
// EROFS), and then EPERM. A kernel without user notification (before
// 5.0) keeps today's EPERM; before 5.5 (no CONTINUE) refused calls get
// EPERM from stage 1.
//
// TODO: POSIX ACLs of the parent are not consulted for the permission
// check, and search permission on the path's other directories is not
// checked for callers without CAP_DAC_OVERRIDE or CAP_DAC_READ_SEARCH.

// devices serves the listeners of the mknod filters of one stage 1.
type devices struct {
	log *slog.Logger
	// userns is stage 1's user namespace (the readlink of ns/user).
	userns string
	// wake is an eventfd that stop makes readable to end every loop.
	wake int

	// ready is closed once maker and dev are set, or stage 1 gave up.
	ready     chan struct{}
	readyOnce sync.Once
	maker     DeviceMaker // nil: device nodes cannot be made
	dev       uint64      // st_dev of the union

	mu      sync.Mutex
	stopped bool
	wg      sync.WaitGroup
}

// newDevices prepares device-node support for spec: nil (nothing to do)
// without Fakeroot.
func newDevices(spec *Spec, log *slog.Logger) *devices {
	if !spec.Fakeroot {
		return nil
	}
	ns, err := os.Readlink("/proc/self/ns/user")
	if err != nil {
		log.Debug("device nodes cannot be made", "error", err)
		return nil
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		log.Debug("device nodes cannot be made", "error", err)
		return nil
	}
	return &devices{log: log, userns: ns, wake: wake, ready: make(chan struct{})}
}

// install puts the mknod filter on the calling thread, which is locked
// and about to fork a stage 2 (see installMknodFilter: the thread ends
// with its goroutine). It returns the listener for serve, or -1.
func (d *devices) install() int {
	if d == nil {
		return -1
	}
	fd, err := installMknodFilter()
	if err != nil {
		d.log.Debug("device nodes cannot be made", "error", err)
		return -1
	}
	return fd
}

// setTarget says where the container's devices go: m (when it is a
// DeviceMaker) mounted at target.
func (d *devices) setTarget(m Mounted, target string) {
	if d == nil {
		return
	}
	if dm, ok := m.(DeviceMaker); ok {
		var st unix.Stat_t
		if err := unix.Stat(target, &st); err != nil {
			d.log.Debug("device nodes cannot be made", "error", err)
		} else {
			d.maker, d.dev = dm, st.Dev
		}
	}
	d.readyOnce.Do(func() { close(d.ready) })
}

// serve answers the notifications of listener fd (from install) in the
// background until every process with the filter is gone or stop is
// called; it then closes fd.
func (d *devices) serve(fd int) {
	if d == nil || fd < 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		unix.Close(fd)
		return
	}
	d.wg.Add(1)
	go d.loop(fd)
}

// stop ends every loop and waits for the answers under way. Stage 1
// calls it after stage 2 is gone and before the union is unmounted.
func (d *devices) stop() {
	if d == nil {
		return
	}
	d.mu.Lock()
	d.stopped = true
	d.mu.Unlock()
	d.readyOnce.Do(func() { close(d.ready) })
	var one [8]byte
	one[0] = 1
	_, _ = unix.Write(d.wake, one[:])
	d.wg.Wait()
	unix.Close(d.wake)
}

func (d *devices) loop(fd int) {
	defer d.wg.Done()
	var answers sync.WaitGroup
	defer func() {
		answers.Wait()
		unix.Close(fd)
	}()
	pfds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(d.wake),
		Events: unix.POLLIN}}
	for {
		pfds[0].Revents, pfds[1].Revents = 0, 0
		if _, err := unix.Poll(pfds, -1); err != nil {
			if err == unix.EINTR {
				continue
			}
			d.log.Debug("mknod listener", "error", err)
			return
		}
		switch {
		case pfds[1].Revents != 0:
			return
		case pfds[0].Revents&unix.POLLIN != 0:
			n := new(seccompNotif)
			if err := recvNotif(fd, n); err != nil {
				if err == unix.ENOENT || err == unix.EINTR {
					continue // the caller died or was interrupted
				}
				d.log.Debug("mknod listener", "error", err)
				return
			}
			answers.Add(1)
			go func() {
				defer answers.Done()
				d.answer(fd, n)
			}()
		case pfds[0].Revents != 0:
			return // POLLHUP: no process has the filter any more
		}
	}
}

// answer decides notification n and sends the answer.
func (d *devices) answer(fd int, n *seccompNotif) {
	errno, cont := d.mknod(fd, n)
	err := sendNotif(fd, n.ID, errno, cont)
	if err == unix.EINVAL && cont {
		// Before Linux 5.5 the kernel cannot run the call itself.
		err = sendNotif(fd, n.ID, unix.EPERM, false)
	}
	if err != nil && err != unix.ENOENT {
		d.log.Debug("mknod answer", "pid", n.Pid, "error", err)
	}
}

// mknodCall is an intercepted mknod or mknodat.
type mknodCall struct {
	pid   int
	dirfd int32 // AT_FDCWD for mknod
	addr  uint64
	path  string // read from addr
	mode  uint32
	dev   uint32
}

// decodeCall reads the arguments of notification n (not yet the path).
func decodeCall(n *seccompNotif) (mknodCall, bool) {
	c := mknodCall{pid: int(n.Pid), dirfd: unix.AT_FDCWD}
	for _, a := range nativeArches() {
		if a.audit != n.Data.Arch || (n.Data.Nr != a.mknod && n.Data.Nr != a.mknodat) {
			continue
		}
		dirArg, pathArg, modeArg, devArg := mknodArgs(n.Data.Nr == a.mknodat)
		if dirArg >= 0 {
			c.dirfd = int32(uint32(n.Data.Args[dirArg]))
		}
		c.mode = uint32(n.Data.Args[modeArg]) & 0xffff // umode_t
		c.dev = uint32(n.Data.Args[devArg])
		c.addr = n.Data.Args[pathArg]
		return c, true
	}
	return c, false
}

// mknod handles notification n: the errno to answer, or cont to let the
// kernel run the call (and refuse it).
func (d *devices) mknod(lfd int, n *seccompNotif) (errno unix.Errno, cont bool) {
	<-d.ready
	if d.maker == nil {
		return 0, true
	}
	c, ok := decodeCall(n)
	if !ok {
		return 0, true
	}
	proc := "/proc/" + strconv.Itoa(c.pid)
	cred, err := readCred(proc)
	if err != nil || !cred.has(unix.CAP_MKNOD) {
		return 0, true
	}
	if ns, err := os.Readlink(proc + "/ns/user"); err != nil || ns != d.userns {
		return 0, true // a nested user namespace: no CAP_MKNOD in the container's
	}
	if c.path, err = readString(proc+"/mem", c.addr); err != nil {
		return 0, true // EFAULT, ENAMETOOLONG: the kernel says it
	}
	c.path = cred.selfPath(c.path)
	parent, name, err := resolveParent(proc, c)
	if err != nil {
		return 0, true
	}
	defer unix.Close(parent)
	// The pid named the caller while we read its /proc files.
	if !notifValid(lfd, n.ID) {
		return 0, true
	}
	var st unix.Stat_t
	var sfs unix.Statfs_t
	if unix.Fstat(parent, &st) != nil || st.Dev != d.dev ||
		unix.Fstatfs(parent, &sfs) != nil || sfs.Flags&unix.ST_RDONLY != 0 ||
		!cred.mayCreateIn(&st) {
		return 0, true
	}
	mode := c.mode&unix.S_IFMT | c.mode&07777&^cred.umask
	err = d.maker.MknodAt(st.Ino, name, mode, c.dev, cred.fsuid, cred.fsgid)
	d.log.Debug("mknod", "pid", c.pid, "path", c.path, "mode", fmt.Sprintf("%o", mode),
		"dev", fmt.Sprintf("%d,%d", unix.Major(uint64(c.dev)), unix.Minor(uint64(c.dev))),
		"error", err)
	if err == nil {
		return 0, false
	}
	var e unix.Errno
	if !errors.As(err, &e) {
		e = unix.EIO
	}
	return e, false
}

// readString reads the NUL-terminated string at addr from mem (a
// /proc/PID/mem), at most PATH_MAX bytes, a page at a time so that it
// never reads past the mapping that holds it.
func readString(mem string, addr uint64) (string, error) {
	f, err := os.Open(mem)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var buf []byte
	page := uint64(os.Getpagesize())
	for len(buf) < unix.PathMax {
		chunk := make([]byte, page-(addr+uint64(len(buf)))%page)
		n, err := f.ReadAt(chunk, int64(addr)+int64(len(buf)))
		if i := bytes.IndexByte(chunk[:n], 0); i >= 0 {
			if len(buf)+i >= unix.PathMax {
				break // the kernel's getname counts the NUL
			}
			return string(append(buf, chunk[:i]...)), nil
		}
		if err != nil {
			return "", err
		}
		buf = append(buf, chunk[:n]...)
	}
	return "", unix.ENAMETOOLONG
}

// resolveParent opens (O_PATH) the directory the call's path names the
// last component in, resolved as the caller would: absolute paths and
// absolute symbolic links from the caller's root, relative ones from its
// working directory or dirfd. The walk runs on a thread of its own,
// chrooted to the caller's root, which ends when done. It fails for what
// the kernel must answer itself: an empty path, a trailing slash, a last
// component "." or "..", a missing or non-directory parent.
func resolveParent(proc string, c mknodCall) (int, string, error) {
	p := c.path
	if p == "" || strings.HasSuffix(p, "/") {
		return -1, "", unix.ENOENT
	}
	dir, name := "", p
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		dir, name = p[:i], p[i+1:]
		if dir == "" {
			dir = "/"
		}
	}
	if name == "." || name == ".." {
		return -1, "", unix.EEXIST
	}
	const flags = unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC
	root, err := unix.Open(proc+"/root", flags, 0)
	if err != nil {
		return -1, "", err
	}
	defer unix.Close(root)
	base := root
	if !strings.HasPrefix(p, "/") {
		from := proc + "/cwd"
		if c.dirfd != unix.AT_FDCWD {
			from = proc + "/fd/" + strconv.Itoa(int(c.dirfd))
		}
		if base, err = unix.Open(from, flags, 0); err != nil {
			return -1, "", err
		}
		defer unix.Close(base)
	}
	type result struct {
		fd  int
		err error
	}
	done := make(chan result, 1)
	offMainThread(func() {
		fd, err := openInRoot(root, base, dir)
		done <- result{fd, err}
	})
	r := <-done
	return r.fd, name, r.err
}

// offMainThread runs fn in a new goroutine locked to a thread that is not
// the process's main thread, and never unlocked: the thread ends with the
// goroutine, whatever fn changed in it. Go cannot end the main thread; a
// goroutine that exits locked to it parks it for good, with its changes,
// and a chroot left there would pin the union (and show /proc/self/
// mountinfo from the container's root).
func offMainThread(fn func()) {
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			fn()
			return
		}
		// Holding the main thread, the next goroutine runs elsewhere.
		done := make(chan struct{})
		offMainThread(func() { fn(); close(done) })
		<-done
		runtime.UnlockOSThread()
	}()
}

// openInRoot, on a locked thread it may change for good, makes root the
// thread's root directory and opens dir from base ("": base itself).
func openInRoot(root, base int, dir string) (int, error) {
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return -1, &os.SyscallError{Syscall: "unshare(CLONE_FS)", Err: err}
	}
	if err := unix.Fchdir(root); err != nil {
		return -1, &os.SyscallError{Syscall: "fchdir", Err: err}
	}
	if err := unix.Chroot("."); err != nil {
		return -1, &os.SyscallError{Syscall: "chroot", Err: err}
	}
	if dir == "" {
		dir = "."
	}
	return unix.Openat(base, dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}

// procCred is what decides a caller's mknod, from /proc/PID/status: its
// ids and capabilities as stage 1 sees them, and its umask.
type procCred struct {
	fsuid, fsgid uint32
	groups       []uint32
	capEff       uint64
	umask        uint32
	// tgid and tid are the caller's process and thread ids in its own
	// (innermost) PID namespace, whose numbers the container's /proc uses.
	tgid, tid string
}

func (c *procCred) has(capability int) bool { return c.capEff&(1<<capability) != 0 }

// selfPath rewrites a path through /proc/self or /proc/thread-self to the
// caller's own ids: resolved by stage 1, those links would name stage 1.
// TODO: a symbolic link to /proc/self met during the walk still does.
func (c *procCred) selfPath(p string) string {
	for _, l := range []struct{ link, to string }{
		{"/proc/self", "/proc/" + c.tgid},
		{"/proc/thread-self", "/proc/" + c.tgid + "/task/" + c.tid},
	} {
		rest, ok := strings.CutPrefix(p, l.link)
		if ok && (rest == "" || rest[0] == '/') && c.tgid != "" && c.tid != "" {
			return l.to + rest
		}
	}
	return p
}

// readCred parses proc/status.
func readCred(proc string) (*procCred, error) {
	b, err := os.ReadFile(proc + "/status")
	if err != nil {
		return nil, err
	}
	c := &procCred{umask: 0o022}
	seen := 0
	for line := range strings.Lines(string(b)) {
		key, val, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		f := strings.Fields(val)
		var err error
		switch key {
		case "Uid", "Gid":
			if len(f) != 4 {
				return nil, fmt.Errorf("sandbox: %s/status: %s: %q", proc, key, val)
			}
			id, perr := strconv.ParseUint(f[3], 10, 32)
			err = perr
			if key == "Uid" {
				c.fsuid = uint32(id)
			} else {
				c.fsgid = uint32(id)
			}
			seen++
		case "Groups":
			for _, g := range f {
				id, perr := strconv.ParseUint(g, 10, 32)
				if perr != nil {
					err = perr
				}
				c.groups = append(c.groups, uint32(id))
			}
		case "CapEff":
			if len(f) == 1 {
				c.capEff, err = strconv.ParseUint(f[0], 16, 64)
				seen++
			}
		case "NStgid", "NSpid":
			if len(f) > 0 {
				if key == "NStgid" {
					c.tgid = f[len(f)-1]
				} else {
					c.tid = f[len(f)-1]
				}
			}
		case "Umask":
			if len(f) == 1 {
				var u uint64
				u, err = strconv.ParseUint(f[0], 8, 32)
				c.umask = uint32(u) & 0o777
			}
		}
		if err != nil {
			return nil, fmt.Errorf("sandbox: %s/status: %s: %w", proc, key, err)
		}
	}
	if seen != 3 {
		return nil, fmt.Errorf("sandbox: %s/status: no Uid, Gid or CapEff", proc)
	}
	return c, nil
}

// mayCreateIn reports whether the caller may add a name to directory st:
// write and search permission by its mode bits, as generic_permission
// decides without ACLs, or CAP_DAC_OVERRIDE.
func (c *procCred) mayCreateIn(st *unix.Stat_t) bool {
	if c.has(unix.CAP_DAC_OVERRIDE) {
		return true
	}
	need := uint32(3) // -wx
	if c.has(unix.CAP_DAC_READ_SEARCH) {
		need = 2
	}
	perm := st.Mode
	switch {
	case st.Uid == c.fsuid:
		perm >>= 6
	case st.Gid == c.fsgid || slices.Contains(c.groups, st.Gid):
		perm >>= 3
	}
	return perm&need == need
}
