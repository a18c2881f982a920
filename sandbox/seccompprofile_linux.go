// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The payload gets its seccomp filter from a shim: stage 2 starts this
// binary (/proc/self/exe) with seccompStage in stageEnv, the compiled
// filter in seccompEnv and the payload's path and argv as arguments; the
// shim loads the filter on its own thread and execs the payload. The
// filter cannot be loaded in stage 2 before the fork: stage 2's clone of
// the payload (CLONE_NEWUSER, which profiles such as Docker's deny) and
// its supervisor thread would be confined by a profile meant for the
// payload.
const (
	seccompStage      = "seccomp"
	seccompEnv        = "_HUSK_SECCOMP"
	seccompPreloadEnv = "_HUSK_LD_PRELOAD" // the payload's LD_PRELOAD (hostLoader)
	// seccompFDEnv is the shim's first own descriptor: those from 3 up to
	// it are the payload's (inherit_linux.go).
	seccompFDEnv = "_HUSK_SECCOMP_FD"
)

// seccompShim returns what stage 2 starts instead of path and argv when
// the Spec has a seccomp profile: the shim, with the compiled filter in
// its environment, started through the host's loader when stage 2 has
// one (see hostLoader), and the files that must be open in it from
// descriptor fd on (the first after those the caller passes). Without a
// profile it returns its arguments unchanged.
func seccompShim(spec *Spec, path string, argv, env []string, loader *hostLoader,
	fd int) (string, []string, []string, []*os.File, error) {
	p := spec.Seccomp
	if p == nil {
		return path, argv, env, nil, nil
	}
	path, argv, env, err := seccompShimCommand(spec, path, argv, env, fd)
	if err != nil || loader == nil {
		return path, argv, env, nil, err
	}
	// The host's loader would preload the image's libraries into the
	// shim; the shim restores the variable for the payload.
	for i, e := range env {
		if v, ok := strings.CutPrefix(e, "LD_PRELOAD="); ok {
			env[i] = seccompPreloadEnv + "=" + v
		}
	}
	path, argv, files := loader.command(argv[1:], fd)
	return path, argv, env, files, nil
}

// seccompShimCommand is seccompShim starting the shim as /proc/self/exe.
// The shim's own descriptors start at fd; those below are the payload's.
func seccompShimCommand(spec *Spec, path string, argv, env []string, fd int) (string,
	[]string, []string, error) {
	p := spec.Seccomp
	// A Spec need not come from ReadSeccompProfile.
	if err := p.check(); err != nil {
		return "", nil, nil, fmt.Errorf("seccomp profile %s: %w", p.File, err)
	}
	prog, err := p.compile(spec.Caps.keep(spec.Fakeroot), false)
	if err != nil {
		return "", nil, nil, fmt.Errorf("seccomp profile %s: %w", p.File, err)
	}
	if err := checkShimNeeds(prog); err != nil {
		return "", nil, nil, fmt.Errorf("seccomp profile %s: %w", p.File, err)
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return "", nil, nil, fmt.Errorf("seccomp profile %s: assembling: %w", p.File, err)
	}
	var flags uint32
	if slices.Contains(p.Flags, "SECCOMP_FILTER_FLAG_LOG") {
		flags |= unix.SECCOMP_FILTER_FLAG_LOG
	}
	if slices.Contains(p.Flags, "SECCOMP_FILTER_FLAG_SPEC_ALLOW") {
		flags |= unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW
	}
	b := binary.LittleEndian.AppendUint32(nil, flags)
	for _, r := range raw {
		b = binary.LittleEndian.AppendUint16(b, r.Op)
		b = append(b, r.Jt, r.Jf)
		b = binary.LittleEndian.AppendUint32(b, r.K)
	}
	// After the pivot, /proc is the container's: --no-mount proc leaves
	// none with --fakeroot.
	if _, err := os.Stat("/proc/self/exe"); err != nil {
		return "", nil, nil, fmt.Errorf("seccomp profile %s: its loader needs /proc in "+
			"the container (%w)", p.File, err)
	}
	shimEnv := append(slices.Clone(env), stageEnv+"="+seccompStage,
		seccompEnv+"="+base64.StdEncoding.EncodeToString(b),
		seccompFDEnv+"="+strconv.Itoa(fd))
	shimArgv := append([]string{"husk-seccomp", path}, argv...)
	return "/proc/self/exe", shimArgv, shimEnv, nil
}

// seccompExec is the shim's main (see seccompShim): it loads the filter
// and execs the payload, with the shell for a file without #! line as
// startPayload does. Only errors return; [Main] exits with the status.
func seccompExec() int {
	data := os.Getenv(seccompEnv)
	os.Unsetenv(seccompEnv)
	os.Unsetenv(stageEnv)
	if v, ok := os.LookupEnv(seccompPreloadEnv); ok {
		os.Unsetenv(seccompPreloadEnv)
		os.Setenv("LD_PRELOAD", v)
	}
	// The host loader's files (after the payload's) are not the payload's.
	own, err := strconv.Atoi(os.Getenv(seccompFDEnv))
	os.Unsetenv(seccompFDEnv)
	if err != nil || own < 3 {
		own = 3
	}
	if err := unix.CloseRange(uint(own), ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		closeOnExecFrom(own)
	}
	if len(os.Args) < 3 {
		fmt.Fprintf(os.Stderr, "FATAL:   %v: seccomp shim without a command\n", errStage)
		return setupFailed
	}
	path, argv := os.Args[1], os.Args[2:]
	// The filter belongs to this thread, which must also be the one that
	// execs: the other threads of the Go runtime end with the exec.
	runtime.LockOSThread()
	if err := loadFilter(data); err != nil {
		fmt.Fprintf(os.Stderr, "FATAL:   %v\n", err)
		return setupFailed
	}
	env := os.Environ()
	err = unix.Exec(path, argv, env)
	if errors.Is(err, unix.ENOEXEC) {
		err = unix.Exec("/bin/sh", append([]string{"/bin/sh", path}, argv[1:]...), env)
	}
	cwd, _ := os.Getwd()
	hint := ""
	if errors.Is(err, unix.EPERM) {
		hint = " (does the seccomp profile allow execve?)"
	}
	fmt.Fprintf(os.Stderr, "FATAL:   %v%s\n", execError(argv[0], path, cwd, err), hint)
	return setupFailed
}

// loadFilter installs the filter seccompShim encoded on this thread.
func loadFilter(data string) error {
	b, err := base64.StdEncoding.DecodeString(data)
	if err != nil || len(b) < 12 || (len(b)-4)%8 != 0 {
		return fmt.Errorf("%w: bad seccomp filter in %s", errStage, seccompEnv)
	}
	flags := binary.LittleEndian.Uint32(b)
	filter := make([]unix.SockFilter, 0, (len(b)-4)/8)
	for i := 4; i < len(b); i += 8 {
		filter = append(filter, unix.SockFilter{Code: binary.LittleEndian.Uint16(b[i:]),
			Jt: b[i+2], Jf: b[i+3], K: binary.LittleEndian.Uint32(b[i+4:])})
	}
	// Without CAP_SYS_ADMIN the kernel requires no_new_privs, which the
	// payload has anyway (exec_linux.go).
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return &os.SyscallError{Syscall: "prctl(PR_SET_NO_NEW_PRIVS)", Err: err}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		uintptr(flags), uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(filter)
	if errno != 0 {
		return fmt.Errorf("loading the seccomp profile: %w",
			&os.SyscallError{Syscall: "seccomp", Err: errno})
	}
	return nil
}

// compile turns the profile into a BPF program for the native
// architecture. keep is the payload's capability mask, for Docker's
// includes and excludes by capability; all takes every rule regardless
// (to check a profile before the capabilities are known).
func (p *SeccompProfile) compile(keep uint64, all bool) ([]bpf.Instruction, error) {
	native, err := arch.GetInfo("")
	if err != nil {
		return nil, err
	}
	kernel, err := kernelVersion()
	if err != nil {
		return nil, err
	}
	defAction, err := seccompAction(p.DefaultAction, p.DefaultErrnoRet)
	if err != nil {
		return nil, err
	}
	// Syscalls of another ABI (i386 through int 0x80, x32) get the default
	// action, which for a profile that allows by default would bypass its
	// rules: they fail with ENOSYS then.
	// TODO: apply the rules to the profile's other architectures too.
	other := uint32(defAction)
	switch defAction &^ 0xffff {
	case seccomp.ActionAllow, seccomp.ActionLog, seccomp.ActionTrace:
		other = uint32(seccomp.ActionErrno) | uint32(unix.ENOSYS)
	}
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(native.ID), SkipTrue: 1},
		bpf.RetConstant{Val: other},
	}
	if native.ID == arch.X86_64.ID {
		prog = append(prog, bpf.LoadAbsolute{Off: 0, Size: 4},
			bpf.JumpIf{Cond: bpf.JumpLessThan, Val: uint32(arch.X32.SeccompMask), SkipTrue: 1},
			bpf.RetConstant{Val: other})
	}
	for i, r := range p.Syscalls {
		if !all && !r.applies(keep, kernel) {
			continue
		}
		seg, err := r.segment(native)
		if err != nil {
			return nil, fmt.Errorf("syscalls[%d] (%s): %w", i, r.label(), err)
		}
		prog = append(prog, seg...)
	}
	prog = append(prog, bpf.RetConstant{Val: uint32(defAction)})
	if len(prog) > bpfMaxInsns {
		return nil, fmt.Errorf("%d BPF instructions, more than the kernel's %d",
			len(prog), bpfMaxInsns)
	}
	return prog, nil
}

// bpfMaxInsns is the kernel's limit on a seccomp filter (BPF_MAXINSNS).
const bpfMaxInsns = 4096

// segment assembles one rule on its own: it loads the syscall number,
// returns the rule's action when it matches and falls through to what
// follows otherwise. The library's assembler does not reload the syscall
// number after comparing arguments, so its groups cannot follow a group
// with conditions; each rule becomes a policy of its own, whose "no
// match" returns become jumps past its end.
func (r *SeccompRule) segment(native *arch.Info) ([]bpf.Instruction, error) {
	g, err := r.group(native)
	if err != nil {
		return nil, err
	}
	if len(g.Names)+len(g.NamesWithCondtions) == 0 {
		return nil, nil
	}
	next := seccomp.ActionTrace
	if g.Action == next {
		next = seccomp.ActionLog
	}
	policy := seccomp.Policy{DefaultAction: next, Syscalls: []seccomp.SyscallGroup{g}}
	insts, err := policy.Assemble()
	if err != nil {
		return nil, err
	}
	// Drop the library's prologue (architecture check, load of the number,
	// x32 check): ours comes first, and each segment reloads the number.
	body := -1
	for i, in := range insts {
		if la, ok := in.(bpf.LoadAbsolute); ok && la.Off == 0 {
			body = i + 1
			break
		}
	}
	if body < 0 {
		return nil, errors.New("assembling: no syscall number load")
	}
	if native.ID == arch.X86_64.ID {
		body += 2
	}
	seg := append([]bpf.Instruction{bpf.LoadAbsolute{Off: 0, Size: 4}}, insts[body:]...)
	for i, in := range seg {
		if rc, ok := in.(bpf.RetConstant); ok && rc.Val == uint32(next) {
			seg[i] = bpf.Jump{Skip: uint32(len(seg) - i - 1)}
		}
	}
	return seg, nil
}

// group is the library's form of one rule: the names this architecture
// knows (others are skipped, as libseccomp does for runc), with the
// argument conditions.
func (r *SeccompRule) group(native *arch.Info) (seccomp.SyscallGroup, error) {
	action, err := seccompAction(r.Action, r.ErrnoRet)
	if err != nil {
		return seccomp.SyscallGroup{}, err
	}
	g := seccomp.SyscallGroup{Action: action}
	var names []string
	for _, n := range r.names() {
		if _, ok := native.SyscallNames[n]; ok && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	if len(r.Args) == 0 {
		g.Names = names
		return g, nil
	}
	sets, err := argConditions(r.Args)
	if err != nil {
		return g, err
	}
	for _, n := range names {
		for _, set := range sets {
			g.NamesWithCondtions = append(g.NamesWithCondtions,
				seccomp.NameWithConditions{Name: n, Conditions: set})
		}
	}
	return g, nil
}

// argConditions are the alternatives a rule's args allow: all of them
// together, or, when one argument is named twice, each on its own (as
// runc and Docker read such rules).
func argConditions(args []SeccompArg) ([]seccomp.ArgumentConditions, error) {
	seen := map[uint]bool{}
	repeated := false
	var all seccomp.ArgumentConditions
	for _, a := range args {
		c, err := argCondition(a)
		if err != nil {
			return nil, err
		}
		repeated = repeated || seen[a.Index]
		seen[a.Index] = true
		all = append(all, c)
	}
	if !repeated {
		return []seccomp.ArgumentConditions{all}, nil
	}
	sets := make([]seccomp.ArgumentConditions, len(all))
	for i, c := range all {
		sets[i] = seccomp.ArgumentConditions{c}
	}
	return sets, nil
}

// argOps are the profile's argument comparisons, as the assembler's
// operations. SCMP_CMP_MASKED_EQ, (arg & value) == valueTwo, maps to
// BitsNotSet for valueTwo 0 and to BitsSet for a single-bit mask compared
// with itself, the only forms check allows.
var argOps = map[string]seccomp.Operation{
	"SCMP_CMP_EQ":        seccomp.Equal,
	"SCMP_CMP_NE":        seccomp.NotEqual,
	"SCMP_CMP_LT":        seccomp.LessThan,
	"SCMP_CMP_LE":        seccomp.LessOrEqual,
	"SCMP_CMP_GT":        seccomp.GreaterThan,
	"SCMP_CMP_GE":        seccomp.GreaterOrEqual,
	"SCMP_CMP_MASKED_EQ": seccomp.BitsNotSet,
}

func argCondition(a SeccompArg) (seccomp.Condition, error) {
	op, ok := argOps[a.Op]
	if !ok {
		return seccomp.Condition{}, fmt.Errorf("unknown op %q", a.Op)
	}
	if a.Op == "SCMP_CMP_MASKED_EQ" && a.ValueTwo != 0 {
		op = seccomp.BitsSet
	}
	return seccomp.Condition{Argument: uint32(a.Index), Operation: op, Value: a.Value}, nil
}

// applies says whether Docker's includes and excludes keep the rule for
// a payload with capabilities keep on this kernel. A filter naming an
// unknown capability drops the rule (check refuses such profiles).
func (r *SeccompRule) applies(keep uint64, kernel [2]int) bool {
	if f := r.Includes; f != nil {
		if m, err := capMask(f.Caps); err != nil || keep&m != m {
			return false
		}
		if len(f.Arches) > 0 && !slices.ContainsFunc(f.Arches, isNativeArch) {
			return false
		}
		if f.MinKernel != "" && !kernelAtLeast(kernel, f.MinKernel) {
			return false
		}
	}
	if f := r.Excludes; f != nil {
		if m, err := capMask(f.Caps); err != nil || keep&m != 0 {
			return false
		}
		if slices.ContainsFunc(f.Arches, isNativeArch) {
			return false
		}
		if f.MinKernel != "" && kernelAtLeast(kernel, f.MinKernel) {
			return false
		}
	}
	return true
}

// isNativeArch matches Docker's (GOARCH) and libseccomp's (SCMP_ARCH_)
// architecture names against this one.
func isNativeArch(name string) bool {
	scmp := map[string]string{"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64",
		"386": "SCMP_ARCH_X86", "arm": "SCMP_ARCH_ARM", "ppc64le": "SCMP_ARCH_PPC64LE",
		"s390x": "SCMP_ARCH_S390X", "riscv64": "SCMP_ARCH_RISCV64"}
	return name == runtime.GOARCH || name == scmp[runtime.GOARCH]
}

func kernelAtLeast(kernel [2]int, min string) bool {
	v, err := parseKernelVersion(min)
	if err != nil {
		return false
	}
	return kernel[0] > v[0] || kernel[0] == v[0] && kernel[1] >= v[1]
}

func kernelVersion() ([2]int, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return [2]int{}, &os.SyscallError{Syscall: "uname", Err: err}
	}
	return parseKernelVersion(unix.ByteSliceToString(u.Release[:]))
}

// profileActions are the profile's actions this package applies, as the
// kernel's return values without data.
var profileActions = map[string]seccomp.Action{
	"SCMP_ACT_KILL":         seccomp.ActionKillThread,
	"SCMP_ACT_KILL_THREAD":  seccomp.ActionKillThread,
	"SCMP_ACT_KILL_PROCESS": seccomp.ActionKillProcess,
	"SCMP_ACT_TRAP":         seccomp.ActionTrap,
	"SCMP_ACT_ERRNO":        seccomp.ActionErrno,
	"SCMP_ACT_TRACE":        seccomp.ActionTrace,
	"SCMP_ACT_ALLOW":        seccomp.ActionAllow,
	"SCMP_ACT_LOG":          seccomp.ActionLog,
}

// seccompAction is the kernel's return value for a profile action, with
// errno as its data (EPERM when not given, as runc does).
func seccompAction(name string, errno *uint) (seccomp.Action, error) {
	data := seccomp.Action(unix.EPERM)
	if errno != nil {
		if *errno > 0xffff {
			return 0, fmt.Errorf("errnoRet %d is out of range", *errno)
		}
		data = seccomp.Action(*errno)
	}
	a, ok := profileActions[name]
	if !ok {
		return 0, checkAction(name)
	}
	if a == seccomp.ActionErrno || a == seccomp.ActionTrace && errno != nil {
		a |= data
	}
	return a, nil
}

// shimNeeds are the syscalls the shim makes once its filter is loaded:
// it execs the payload. A profile that denies them would kill the shim,
// or leave it unable to say why (write and exit_group denied as well:
// the runtime then crashes with SIGSEGV, status 139).
var shimNeeds = []string{"execve"}

// checkShimNeeds runs prog, as the kernel would, on each syscall of
// shimNeeds (native architecture, arguments 0) and reports the first one
// the profile does not allow.
func checkShimNeeds(prog []bpf.Instruction) error {
	native, err := arch.GetInfo("")
	if err != nil {
		return err
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		return nil // the kernel judges what this VM cannot run
	}
	for _, name := range shimNeeds {
		nr, ok := native.SyscallNames[name]
		if !ok {
			continue
		}
		// struct seccomp_data: nr, arch, instruction pointer, 6 arguments.
		// The VM loads words big-endian; put each where the kernel's
		// native load would find it.
		data := make([]byte, 64)
		binary.BigEndian.PutUint32(data[0:], uint32(nr))
		binary.BigEndian.PutUint32(data[4:], uint32(native.ID))
		ret, err := vm.Run(data)
		if err != nil {
			return nil
		}
		switch action := seccomp.Action(uint32(ret)) &^ 0xffff; action {
		case seccomp.ActionAllow, seccomp.ActionLog:
		default:
			return fmt.Errorf("it denies %s (%s), which husk needs to start the "+
				"command", name, actionName(action))
		}
	}
	return nil
}

// actionName is the profile's name of a kernel action.
func actionName(a seccomp.Action) string {
	switch a {
	case seccomp.ActionKillThread:
		return "SCMP_ACT_KILL"
	case seccomp.ActionKillProcess:
		return "SCMP_ACT_KILL_PROCESS"
	case seccomp.ActionTrap:
		return "SCMP_ACT_TRAP"
	case seccomp.ActionErrno:
		return "SCMP_ACT_ERRNO"
	case seccomp.ActionTrace:
		return "SCMP_ACT_TRACE, with no tracer"
	}
	return fmt.Sprintf("action %#x", uint32(a))
}

// closeOnExecFrom marks every descriptor from min on close-on-exec, for
// kernels before 5.11 without close_range(CLOSE_RANGE_CLOEXEC).
func closeOnExecFrom(min int) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd >= min {
			unix.CloseOnExec(fd)
		}
	}
}
