// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestMknodFilter installs the mknod filter on a thread of the test
// process and checks which calls reach the listener, what they carry
// (arguments, the path read from /proc/PID/mem), and that the answers
// work: an errno, or CONTINUE, which lets the kernel make the node (the
// test runs as root).
func TestMknodFilter(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("run as root: the filter needs CAP_SYS_ADMIN")
	}
	dir := t.TempDir()
	type call struct {
		old    bool // mknod(2) rather than mknodat(2)
		name   string
		mode   uint32
		dev    int
		notify bool
		cont   bool // answer CONTINUE (else EXDEV)
		want   syscall.Errno
	}
	calls := []call{
		{name: "c", mode: unix.S_IFCHR | 0o600, dev: int(unix.Mkdev(1, 3)), notify: true,
			want: unix.EXDEV},
		{name: "b00", mode: unix.S_IFBLK | 0o600, notify: true, want: unix.EXDEV},
		{old: true, name: "oldc", mode: unix.S_IFCHR | 0o644, dev: int(unix.Mkdev(4095, 1<<19)),
			notify: true, want: unix.EXDEV},
		{name: "cont", mode: unix.S_IFCHR | 0o600, dev: int(unix.Mkdev(1, 5)), notify: true,
			cont: true},
		{name: "wh", mode: unix.S_IFCHR | 0o600},
		{name: "fifo", mode: unix.S_IFIFO | 0o600},
		{old: true, name: "reg", mode: unix.S_IFREG | 0o600},
		// Bits above umode_t are ignored by the kernel and the filter.
		{name: "hi", mode: 1<<16 | unix.S_IFSOCK | 0o600},
	}

	next, results := make(chan call), make(chan syscall.Errno)
	lfdc := make(chan int, 1)
	go func() {
		// installMknodFilter keeps the thread locked: it ends with us.
		runtime.LockOSThread()
		fd, err := installMknodFilter()
		if err != nil {
			t.Errorf("installMknodFilter: %v", err)
		}
		lfdc <- fd
		for c := range next {
			p, _ := unix.BytePtrFromString(filepath.Join(dir, c.name))
			var errno syscall.Errno
			if c.old {
				_, _, errno = unix.Syscall(unix.SYS_MKNOD, uintptr(unsafe.Pointer(p)),
					uintptr(c.mode), uintptr(c.dev))
			} else {
				atfd := unix.AT_FDCWD
				_, _, errno = unix.Syscall6(unix.SYS_MKNODAT, uintptr(atfd),
					uintptr(unsafe.Pointer(p)), uintptr(c.mode), uintptr(c.dev), 0, 0)
			}
			results <- errno
		}
	}()
	defer close(next)
	lfd := <-lfdc
	if lfd < 0 {
		return
	}
	defer unix.Close(lfd)

	for _, c := range calls {
		next <- c
		pfd := []unix.PollFd{{Fd: int32(lfd), Events: unix.POLLIN}}
		timeout := 10 * time.Second
		if !c.notify {
			timeout = 200 * time.Millisecond
		}
		n, err := unix.Poll(pfd, int(timeout/time.Millisecond))
		if err != nil {
			t.Fatalf("%s: poll: %v", c.name, err)
		}
		if (n == 1) != c.notify {
			t.Fatalf("%s: notified %v, want %v", c.name, n == 1, c.notify)
		}
		if c.notify {
			var nt seccompNotif
			must(t, recvNotif(lfd, &nt))
			mc, ok := decodeCall(&nt)
			if !ok || mc.mode != c.mode || mc.dev != uint32(c.dev) ||
				mc.dirfd != unix.AT_FDCWD {
				t.Errorf("%s: decoded %+v (ok %v)", c.name, mc, ok)
			}
			path, err := readString("/proc/"+strconv.Itoa(int(nt.Pid))+"/mem", mc.addr)
			if err != nil || path != filepath.Join(dir, c.name) {
				t.Errorf("%s: path %q, %v", c.name, path, err)
			}
			if !notifValid(lfd, nt.ID) {
				t.Errorf("%s: notification not valid", c.name)
			}
			must(t, sendNotif(lfd, nt.ID, unix.EXDEV, c.cont))
		}
		if got := <-results; got != c.want {
			t.Errorf("%s: errno %v, want %v", c.name, got, c.want)
		}
	}
	var st unix.Stat_t
	must(t, unix.Lstat(filepath.Join(dir, "cont"), &st))
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 5) {
		t.Errorf("CONTINUE: mode %o rdev %#x", st.Mode, st.Rdev)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestMayCreateIn: write and search permission on the parent by mode
// bits, owner, group, supplementary groups and capabilities.
func TestMayCreateIn(t *testing.T) {
	const dacOverride, readSearch = 1 << unix.CAP_DAC_OVERRIDE, 1 << unix.CAP_DAC_READ_SEARCH
	for _, c := range []struct {
		mode, uid, gid uint32
		cred           procCred
		want           bool
	}{
		{0o755, 0, 0, procCred{fsuid: 0}, true},
		{0o555, 0, 0, procCred{fsuid: 0}, false},
		{0o555, 0, 0, procCred{fsuid: 0, capEff: dacOverride}, true},
		{0o755, 0, 0, procCred{fsuid: 42}, false},
		{0o775, 0, 7, procCred{fsuid: 42, fsgid: 7}, true},
		{0o775, 0, 7, procCred{fsuid: 42, fsgid: 8, groups: []uint32{9, 7}}, true},
		{0o757, 0, 7, procCred{fsuid: 42, fsgid: 7}, false},
		{0o773, 0, 7, procCred{fsuid: 42}, true},
		{0o772, 0, 7, procCred{fsuid: 42}, false},
		{0o772, 0, 7, procCred{fsuid: 42, capEff: readSearch}, true},
		{0o300, 42, 7, procCred{fsuid: 42}, true},
	} {
		st := unix.Stat_t{Mode: unix.S_IFDIR | c.mode, Uid: c.uid, Gid: c.gid}
		if got := c.cred.mayCreateIn(&st); got != c.want {
			t.Errorf("dir %o %d:%d, cred %+v: %v, want %v", c.mode, c.uid, c.gid, c.cred,
				got, c.want)
		}
	}
}

// TestReadCred reads this process's status as stage 1 reads a caller's.
func TestReadCred(t *testing.T) {
	old := syscall.Umask(0o027)
	defer syscall.Umask(old)
	c, err := readCred("/proc/self")
	must(t, err)
	if c.fsuid != uint32(os.Geteuid()) || c.fsgid != uint32(os.Getegid()) ||
		c.umask != 0o027 {
		t.Errorf("readCred: %+v", c)
	}
	if os.Getuid() == 0 && !c.has(unix.CAP_MKNOD) {
		t.Errorf("root without CAP_MKNOD: %+v", c)
	}
	pid := strconv.Itoa(os.Getpid())
	if c.tgid != pid {
		t.Errorf("tgid %q, want %s", c.tgid, pid)
	}
	for in, want := range map[string]string{
		"/proc/self/root/x":        "/proc/" + pid + "/root/x",
		"/proc/self":               "/proc/" + pid,
		"/proc/selfish/x":          "/proc/selfish/x",
		"/proc/thread-self/cwd/x":  "/proc/" + pid + "/task/" + c.tid + "/cwd/x",
		"proc/self/x":              "proc/self/x",
		"/tmp/proc/self/root/dev0": "/tmp/proc/self/root/dev0",
	} {
		if got := c.selfPath(in); got != want {
			t.Errorf("selfPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestReadString reads NUL-terminated strings from this process's memory
// as stage 1 reads a caller's path: across pages, and ENAMETOOLONG from
// PATH_MAX bytes with the NUL on, as the kernel's getname.
func TestReadString(t *testing.T) {
	page := os.Getpagesize()
	buf := make([]byte, 4*page)
	base := uintptr(unsafe.Pointer(&buf[0]))
	for _, c := range []struct {
		off, n int
		ok     bool
	}{
		{0, 0, true}, {page - 3, 10, true}, {page - 1, unix.PathMax - 1, true},
		{17, unix.PathMax, false}, {page, unix.PathMax + 5, false},
	} {
		clear(buf)
		for i := 0; i < c.n; i++ {
			buf[c.off+i] = 'a' + byte(i%26)
		}
		got, err := readString("/proc/self/mem", uint64(base)+uint64(c.off))
		switch {
		case c.ok && (err != nil || got != string(buf[c.off:c.off+c.n])):
			t.Errorf("off %d len %d: %d bytes, %v", c.off, c.n, len(got), err)
		case !c.ok && err != unix.ENAMETOOLONG:
			t.Errorf("off %d len %d: %v, want ENAMETOOLONG", c.off, c.n, err)
		}
	}
	runtime.KeepAlive(buf)
}

// TestOffMainThread: fn never runs on the main thread, even when the
// goroutine offMainThread starts lands there, and the process's root
// stays where it was after a chroot in fn.
func TestOffMainThread(t *testing.T) {
	for i := 0; i < 50; i++ {
		tid := make(chan int, 1)
		offMainThread(func() {
			if err := unix.Unshare(unix.CLONE_FS); err != nil {
				t.Error(err)
			} else if err := unix.Chroot("/proc"); err != nil {
				t.Error(err)
			}
			tid <- unix.Gettid()
		})
		if <-tid == unix.Getpid() {
			t.Fatal("fn ran on the main thread")
		}
	}
	if root, err := os.Readlink("/proc/self/root"); err != nil || root != "/" {
		t.Errorf("process root %q, %v", root, err)
	}
}
