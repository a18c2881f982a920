// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The seccomp filter that hands mknod(2) of devices to stage 1 (see
// mknod_linux.go): mknod and mknodat whose mode is S_IFCHR with a device
// number other than 0 (0/0 is an overlay whiteout, which the kernel lets
// anyone make) or S_IFBLK become SECCOMP_RET_USER_NOTIF; every other call,
// and every call of another architecture, is allowed. x32 calls are not
// matched (their numbers carry __X32_SYSCALL_BIT) and keep the kernel's
// EPERM.

// seccompArch is one architecture's mknod system calls: their numbers
// (-1: none) and, by the same index, where mode and dev are.
type seccompArch struct {
	audit          uint32
	mknod, mknodat int32
}

// nativeArches are the architectures a process on this machine can call
// the kernel with: the native one and its 32-bit compat one.
func nativeArches() []seccompArch {
	switch runtime.GOARCH {
	case "amd64":
		return []seccompArch{{unix.AUDIT_ARCH_X86_64, 133, 259}, {unix.AUDIT_ARCH_I386, 14, 297}}
	case "arm64":
		return []seccompArch{{unix.AUDIT_ARCH_AARCH64, -1, 33}, {unix.AUDIT_ARCH_ARM, 14, 324}}
	}
	return nil
}

// mknodArgs says where mknod (false) or mknodat (true) has its path,
// mode and dev arguments, and the dirfd for mknodat (-1 for mknod).
func mknodArgs(at bool) (dirfd, path, mode, dev int) {
	if at {
		return 0, 1, 2, 3
	}
	return -1, 0, 1, 2
}

// Offsets in struct seccomp_data (linux/seccomp.h): nr, arch, the
// instruction pointer, then six 64-bit arguments. Only the low 32 bits of
// mode and dev count (umode_t and unsigned int in the kernel); both
// architectures are little-endian.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// bpfProg assembles a classic BPF program with symbolic jump targets.
type bpfProg struct {
	ins    []unix.SockFilter
	labels map[string]int
	// fixups are conditional jumps to patch: instruction, true and false
	// targets ("" falls through).
	fixups []bpfFixup
}

type bpfFixup struct {
	at          int
	jt, jf, jmp string
}

func (p *bpfProg) stmt(code uint16, k uint32) {
	p.ins = append(p.ins, unix.SockFilter{Code: code, K: k})
}

// jeq jumps to jt when A == k, else to jf.
func (p *bpfProg) jeq(k uint32, jt, jf string) {
	p.fixups = append(p.fixups, bpfFixup{at: len(p.ins), jt: jt, jf: jf})
	p.stmt(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, k)
}

// ja jumps to label.
func (p *bpfProg) ja(label string) {
	p.fixups = append(p.fixups, bpfFixup{at: len(p.ins), jmp: label})
	p.stmt(unix.BPF_JMP|unix.BPF_JA, 0)
}

func (p *bpfProg) label(name string) { p.labels[name] = len(p.ins) }

// assemble resolves the jumps (forward only, as BPF requires).
func (p *bpfProg) assemble() ([]unix.SockFilter, error) {
	off := func(from int, label string) (int, error) {
		if label == "" {
			return 0, nil
		}
		to, ok := p.labels[label]
		if !ok || to <= from {
			return 0, fmt.Errorf("sandbox: seccomp filter: bad jump to %q", label)
		}
		return to - from - 1, nil
	}
	for _, f := range p.fixups {
		in := &p.ins[f.at]
		if f.jmp != "" {
			o, err := off(f.at, f.jmp)
			if err != nil {
				return nil, err
			}
			in.K = uint32(o)
			continue
		}
		jt, err := off(f.at, f.jt)
		if err != nil {
			return nil, err
		}
		jf, err := off(f.at, f.jf)
		if err != nil {
			return nil, err
		}
		if jt > 255 || jf > 255 {
			return nil, errors.New("sandbox: seccomp filter: jump too far")
		}
		in.Jt, in.Jf = uint8(jt), uint8(jf)
	}
	return p.ins, nil
}

// mknodFilter builds the filter for arches.
func mknodFilter(arches []seccompArch) ([]unix.SockFilter, error) {
	p := &bpfProg{labels: map[string]int{}}
	ld := func(off uint32) { p.stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, off) }
	ld(offArch)
	for i, a := range arches {
		next := fmt.Sprintf("arch%d", i+1)
		p.jeq(a.audit, "", next)
		ld(offNr)
		if a.mknod >= 0 {
			p.jeq(uint32(a.mknod), "mknod", "")
		}
		p.jeq(uint32(a.mknodat), "mknodat", "allow")
		p.label(next)
	}
	p.ja("allow")
	for _, at := range []bool{false, true} {
		name := "mknod"
		if at {
			name = "mknodat"
		}
		_, _, mode, dev := mknodArgs(at)
		p.label(name)
		ld(uint32(offArgs + 8*mode))
		p.stmt(unix.BPF_ALU|unix.BPF_AND|unix.BPF_K, unix.S_IFMT)
		p.jeq(unix.S_IFBLK, "notify", "")
		p.jeq(unix.S_IFCHR, "", "allow")
		ld(uint32(offArgs + 8*dev))
		p.jeq(0, "allow", "notify")
	}
	p.label("notify")
	p.stmt(unix.BPF_RET|unix.BPF_K, unix.SECCOMP_RET_USER_NOTIF)
	p.label("allow")
	p.stmt(unix.BPF_RET|unix.BPF_K, unix.SECCOMP_RET_ALLOW)
	return p.assemble()
}

// errNoNotify says the kernel cannot hand system calls to a supervisor
// (before Linux 5.0, or seccomp disabled).
var errNoNotify = errors.New("seccomp user notification not available")

// installMknodFilter installs the filter on the calling thread, which
// must be locked to its goroutine, and returns the listener fd
// (close-on-exec). Children forked from this thread inherit the filter,
// so the thread must never run another goroutine: installMknodFilter
// locks it once more, and the thread exits with its goroutine (Go ends a
// thread whose goroutine returns while locked). The caller needs
// CAP_SYS_ADMIN in its user namespace (or no_new_privs).
func installMknodFilter() (int, error) {
	arches := nativeArches()
	if arches == nil {
		return -1, fmt.Errorf("%w on %s", errNoNotify, runtime.GOARCH)
	}
	ins, err := mknodFilter(arches)
	if err != nil {
		return -1, err
	}
	prog := unix.SockFprog{Len: uint16(len(ins)), Filter: &ins[0]}
	runtime.LockOSThread()
	// Since Linux 6.0 the caller of a received notification ignores
	// non-fatal signals until the answer: a signal would otherwise
	// restart mknod after the node was made, and it would fail EEXIST.
	flags := []uintptr{unix.SECCOMP_FILTER_FLAG_NEW_LISTENER |
		unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, unix.SECCOMP_FILTER_FLAG_NEW_LISTENER}
	for _, fl := range flags {
		fd, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, fl,
			uintptr(unsafe.Pointer(&prog)))
		runtime.KeepAlive(ins)
		if errno == 0 {
			return int(fd), nil
		}
		if errno != unix.EINVAL {
			return -1, fmt.Errorf("%w: %v", errNoNotify, &os.SyscallError{Syscall: "seccomp",
				Err: errno})
		}
	}
	return -1, fmt.Errorf("%w: %v", errNoNotify, &os.SyscallError{Syscall: "seccomp",
		Err: unix.EINVAL})
}

// seccompData is struct seccomp_data.
type seccompData struct {
	Nr   int32
	Arch uint32
	IP   uint64
	Args [6]uint64
}

// seccompNotif is struct seccomp_notif (SECCOMP_IOCTL_NOTIF_RECV).
type seccompNotif struct {
	ID    uint64
	Pid   uint32
	Flags uint32
	Data  seccompData
}

// seccompNotifResp is struct seccomp_notif_resp (SECCOMP_IOCTL_NOTIF_SEND).
type seccompNotifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

// notifIDValid is SECCOMP_IOCTL_NOTIF_ID_VALID, _IOW('!', 2, __u64): the
// same on every architecture husk builds for.
const notifIDValid = 0x40082102

// recvNotif receives one notification (blocking).
func recvNotif(fd int, n *seccompNotif) error {
	*n = seccompNotif{}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SECCOMP_IOCTL_NOTIF_RECV,
		uintptr(unsafe.Pointer(n)))
	if errno != 0 {
		return errno
	}
	return nil
}

// notifValid reports whether notification id still waits for an answer:
// its process has not died, so its pid still names it.
func notifValid(fd int, id uint64) bool {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), notifIDValid,
		uintptr(unsafe.Pointer(&id)))
	return errno == 0
}

// sendNotif answers notification id: errno (0: success), or let the
// kernel run the call itself (cont).
func sendNotif(fd int, id uint64, errno unix.Errno, cont bool) error {
	r := seccompNotifResp{ID: id}
	if cont {
		r.Flags = unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE
	} else if errno != 0 {
		r.Error = -int32(errno)
	}
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SECCOMP_IOCTL_NOTIF_SEND,
		uintptr(unsafe.Pointer(&r)))
	if e != 0 {
		return e
	}
	return nil
}
