// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

const (
	retAllow = unix.SECCOMP_RET_ALLOW
	retErrno = unix.SECCOMP_RET_ERRNO
	retKill  = unix.SECCOMP_RET_KILL_PROCESS
)

// bpfCallData is the kernel's struct seccomp_data for one call, laid out
// for x/net/bpf's virtual machine: it loads 32-bit words big-endian, so
// each word is stored big-endian at its little-endian (amd64) place.
func bpfCallData(archID uint32, nr int, args ...uint64) []byte {
	b := make([]byte, 64)
	be := binary.BigEndian
	be.PutUint32(b[0:], uint32(nr))
	be.PutUint32(b[4:], archID)
	for i, a := range args {
		be.PutUint32(b[16+8*i:], uint32(a))
		be.PutUint32(b[16+8*i+4:], uint32(a>>32))
	}
	return b
}

// TestSeccompCompile runs compiled profiles in x/net/bpf's virtual
// machine against calls, as the kernel would.
func TestSeccompCompile(t *testing.T) {
	native, err := arch.GetInfo("")
	if err != nil {
		t.Fatal(err)
	}
	nr := func(name string) int { return native.SyscallNames[name] }
	id := uint32(native.ID)
	type call struct {
		arch uint32
		name string
		args []uint64
		want uint32
	}
	for _, tc := range []struct {
		name, profile string
		keep          uint64
		calls         []call
	}{
		{"deny mkdir", `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
			{"names":["mkdir","mkdirat","no_such_call"],"action":"SCMP_ACT_ERRNO"}]}`, 0,
			[]call{{id, "mkdir", nil, retErrno | 1}, {id, "mkdirat", nil, retErrno | 1},
				{id, "read", nil, retAllow},
				{uint32(arch.I386.ID), "read", nil, retErrno | uint32(unix.ENOSYS)}}},
		{"default errno and args", `{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,
			"syscalls":[
			{"names":["socket"],"action":"SCMP_ACT_ERRNO","errnoRet":13,
			 "args":[{"index":0,"value":2,"op":"SCMP_CMP_EQ"}]},
			{"names":["socket","read"],"action":"SCMP_ACT_ALLOW"},
			{"names":["clone"],"action":"SCMP_ACT_ALLOW",
			 "args":[{"index":0,"value":2114060288,"op":"SCMP_CMP_MASKED_EQ"}]},
			{"names":["personality"],"action":"SCMP_ACT_ALLOW",
			 "args":[{"index":0,"value":0,"op":"SCMP_CMP_EQ"},
			         {"index":0,"value":8,"op":"SCMP_CMP_EQ"}]}]}`, 0,
			[]call{{id, "socket", []uint64{2}, retErrno | 13},
				{id, "socket", []uint64{1}, retAllow},
				{id, "read", nil, retAllow},
				{id, "write", nil, retErrno | 38},
				{id, "clone", []uint64{uint64(unix.SIGCHLD)}, retAllow},
				{id, "clone", []uint64{unix.CLONE_NEWUSER}, retErrno | 38},
				{id, "personality", []uint64{8}, retAllow},
				{id, "personality", []uint64{0}, retAllow},
				{id, "personality", []uint64{1}, retErrno | 38},
				{uint32(arch.I386.ID), "read", nil, retErrno | 38}}},
		{"comparisons", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
			{"names":["read"],"action":"SCMP_ACT_ALLOW",
			 "args":[{"index":0,"value":5,"op":"SCMP_CMP_NE"}]},
			{"names":["write"],"action":"SCMP_ACT_ALLOW",
			 "args":[{"index":0,"value":3,"op":"SCMP_CMP_LT"}]},
			{"names":["close"],"action":"SCMP_ACT_ALLOW",
			 "args":[{"index":0,"value":3,"op":"SCMP_CMP_LE"}]},
			{"names":["dup"],"action":"SCMP_ACT_ALLOW",
			 "args":[{"index":0,"value":3,"op":"SCMP_CMP_GT"}]},
			{"names":["fsync"],"action":"SCMP_ACT_ALLOW",
			 "args":[{"index":0,"value":3,"op":"SCMP_CMP_GE"}]},
			{"names":["ioctl"],"action":"SCMP_ACT_ALLOW",
			 "args":[{"index":1,"value":4,"valueTwo":4,"op":"SCMP_CMP_MASKED_EQ"}]}]}`, 0,
			[]call{{id, "read", []uint64{5}, retErrno | 1}, {id, "read", []uint64{4}, retAllow},
				{id, "write", []uint64{2}, retAllow}, {id, "write", []uint64{3}, retErrno | 1},
				{id, "close", []uint64{3}, retAllow}, {id, "close", []uint64{4}, retErrno | 1},
				{id, "dup", []uint64{4}, retAllow}, {id, "dup", []uint64{3}, retErrno | 1},
				{id, "fsync", []uint64{3}, retAllow}, {id, "fsync", []uint64{2}, retErrno | 1},
				{id, "ioctl", []uint64{0, 6}, retAllow},
				{id, "ioctl", []uint64{0, 2}, retErrno | 1}}},
		{"actions", `{"defaultAction":"SCMP_ACT_LOG","syscalls":[
			{"names":["kill"],"action":"SCMP_ACT_KILL_THREAD"},
			{"names":["tkill"],"action":"SCMP_ACT_TRAP"},
			{"names":["getpid"],"action":"SCMP_ACT_TRACE","errnoRet":5},
			{"names":["gettid"],"action":"SCMP_ACT_TRACE"}]}`, 0,
			[]call{{id, "kill", nil, unix.SECCOMP_RET_KILL_THREAD},
				{id, "tkill", nil, unix.SECCOMP_RET_TRAP},
				{id, "getpid", nil, unix.SECCOMP_RET_TRACE | 5},
				{id, "gettid", nil, unix.SECCOMP_RET_TRACE},
				{id, "read", nil, unix.SECCOMP_RET_LOG}}},
		{"includes and excludes", `{"defaultAction":"SCMP_ACT_KILL_PROCESS","syscalls":[
			{"names":["mount"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}},
			{"names":["reboot"],"action":"SCMP_ACT_ALLOW","excludes":{"caps":["CAP_SYS_ADMIN"]}},
			{"names":["read"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"3.0"}},
			{"names":["write"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"99.0"}}]}`,
			1 << 21,
			[]call{{id, "mount", nil, retAllow}, {id, "reboot", nil, retKill},
				{id, "read", nil, retAllow}, {id, "write", nil, retKill}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &SeccompProfile{}
			path := filepath.Join(t.TempDir(), "p.json")
			if err := os.WriteFile(path, []byte(tc.profile), 0o644); err != nil {
				t.Fatal(err)
			}
			if p, err = ReadSeccompProfile(path); err != nil {
				t.Fatal(err)
			}
			prog, err := p.compile(tc.keep, false)
			if err != nil {
				t.Fatal(err)
			}
			vm, err := bpf.NewVM(prog)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range tc.calls {
				got, err := vm.Run(bpfCallData(c.arch, nr(c.name), c.args...))
				if err != nil {
					t.Fatal(err)
				}
				if uint32(got) != c.want {
					t.Errorf("%s(%v) on arch %#x: got %#x, want %#x", c.name, c.args,
						c.arch, got, c.want)
				}
			}
		})
	}
}

// TestSeccompProfileErrors: what husk cannot apply is refused up front,
// naming the file and the rule.
func TestSeccompProfileErrors(t *testing.T) {
	for _, tc := range []struct{ profile, want string }{
		{`{"syscalls":[]}`, "no defaultAction"},
		{`{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/agent.sock"}`,
			"listenerPath"},
		{`{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_X"]}`,
			`unknown flag "SECCOMP_FILTER_FLAG_X"`},
		{`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"action":"SCMP_ACT_ALLOW"}]}`,
			"syscalls[0] (): no names"},
		{`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["kill"],
			"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_XX"}]}]}`,
			`syscalls[0] (kill): unknown op "SCMP_CMP_XX"`},
		{`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["kill"],
			"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":3,"valueTwo":1,
			"op":"SCMP_CMP_MASKED_EQ"}]}]}`, "SCMP_CMP_MASKED_EQ of mask 0x3 with 0x1"},
		{`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["kill"],
			"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_FLY"]}}]}`,
			`unknown capability "CAP_FLY"`},
		{`{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":70000}`,
			"errnoRet 70000 is out of range"},
		{"[1,", "line 1: unexpected end of JSON input"},
		{"[]", "line 1: the profile must be a JSON object, not an array"},
		{`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":{}}`,
			"line 1: syscalls must be an array, not an object"},
		{`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[` +
			strings.Repeat(`{"names":["kill"],"action":"SCMP_ACT_LOG"},`, 1500) +
			`{"names":["kill"],"action":"SCMP_ACT_LOG"}]}`, "more than the kernel's 4096"},
	} {
		path := filepath.Join(t.TempDir(), "p.json")
		if err := os.WriteFile(path, []byte(tc.profile), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := ReadSeccompProfile(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) ||
			!strings.HasPrefix(err.Error(), "seccomp profile "+path+": ") {
			t.Errorf("%s: got %v, want %q", tc.profile, err, tc.want)
		}
	}
}

// checkShimNeeds runs the compiled filter on execve: a profile that
// would stop the shim from starting the command is named with the
// action, one that allows it (by default or by a rule) passes.
func TestSeccompShimNeeds(t *testing.T) {
	for _, tc := range []struct{ profile, want string }{
		{`{"defaultAction":"SCMP_ACT_ALLOW"}`, ""},
		{`{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
			{"names":["execve","write"],"action":"SCMP_ACT_ALLOW"}]}`, ""},
		{`{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
			{"names":["execve"],"action":"SCMP_ACT_LOG"}]}`, ""},
		{`{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[]}`,
			"it denies execve (SCMP_ACT_ERRNO)"},
		{`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
			{"names":["execve"],"action":"SCMP_ACT_KILL"}]}`, "it denies execve (SCMP_ACT_KILL)"},
		{`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
			{"names":["execve"],"action":"SCMP_ACT_TRACE"}]}`, "SCMP_ACT_TRACE, with no tracer"},
		{`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],
			"action":"SCMP_ACT_ERRNO"},{"names":["execve"],"action":"SCMP_ACT_TRAP"}]}`,
			"it denies execve (SCMP_ACT_TRAP)"},
	} {
		var p SeccompProfile
		if err := json.Unmarshal([]byte(tc.profile), &p); err != nil {
			t.Fatal(err)
		}
		prog, err := p.compile(0, false)
		if err != nil {
			t.Fatal(err)
		}
		err = checkShimNeeds(prog)
		if tc.want == "" && err != nil || tc.want != "" &&
			(err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: got %v, want %q", tc.profile, err, tc.want)
		}
	}
}

// TestSeccompShimUnchecked: a profile put in a Spec without
// ReadSeccompProfile is checked before it is compiled, and compiling an
// unknown capability does not panic.
func TestSeccompShimUnchecked(t *testing.T) {
	var p SeccompProfile
	if err := json.Unmarshal([]byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
		{"names":["mount"],"action":"SCMP_ACT_ERRNO","includes":{"caps":["CAP_FLY"]}},
		{"names":["umount2"],"action":"SCMP_ACT_ERRNO","excludes":{"caps":["CAP_FLY"]}}]}`),
		&p); err != nil {
		t.Fatal(err)
	}
	p.File = "hand.json"
	if _, err := p.compile(1<<21, false); err != nil {
		t.Fatal(err)
	}
	_, _, _, _, err := seccompShim(&Spec{Seccomp: &p}, "/bin/true", []string{"true"}, nil, nil,
		3)
	want := `seccomp profile hand.json: syscalls[0] (mount): unknown capability "CAP_FLY"`
	if err == nil || err.Error() != want {
		t.Errorf("seccompShim: %v, want %s", err, want)
	}
}
