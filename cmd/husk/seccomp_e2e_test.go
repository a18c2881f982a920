// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/elastic/go-seccomp-bpf/arch"
)

// writeProfile writes a seccomp profile for the test user to read.
func writeProfile(t *testing.T, dir, name string, profile any) string {
	t.Helper()
	var b []byte
	if s, ok := profile.(string); ok {
		b = []byte(s)
	} else {
		var err error
		if b, err = json.MarshalIndent(profile, "", "  "); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A profile that denies mkdir with EPERM: mkdir fails with "Operation not
// permitted", everything else works, with and without --fakeroot.
func TestSeccompProfileDeniesMkdir(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	prof := writeProfile(t, dir, "deny-mkdir.json", `{
  "defaultAction": "SCMP_ACT_ALLOW",
  "syscalls": [
    {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
     "comment": "Docker-style comments are ignored"}
  ]
}`)
	for _, extra := range [][]string{nil, {"--fakeroot"}} {
		args := append([]string{"exec"}, extra...)
		args = append(args, "--security", "seccomp:"+prof, img, "sh", "-c",
			"mkdir /tmp/x; echo mkdir=$?; touch /tmp/y && echo touch=$?; "+
				"python3 -c 'print(sum(range(10)))'")
		r := husk(t, dir, args...)
		if r.code != 0 || !strings.Contains(r.stderr, "Operation not permitted") ||
			r.stdout != "mkdir=1\ntouch=0\n45\n" {
			t.Errorf("%v: want mkdir denied, the rest working:\n%s", extra, r)
		}
	}
	// HUSK_SECURITY sets it too.
	cmd := userCmd(dir, "exec", img, "mkdir", "/tmp/z")
	cmd.Env = append(cmd.Env, "HUSK_SECURITY=seccomp:"+prof)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Operation not permitted") {
		t.Errorf("HUSK_SECURITY=seccomp:: mkdir: %v\n%s", err, out)
	}
}

// A default-deny profile with a long allow list (long BPF jumps, a
// default errno other than EPERM) and an argument condition: socket(2)
// is denied for AF_INET only.
func TestSeccompProfileAllowList(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	native, err := arch.GetInfo("")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for n := range native.SyscallNames {
		if n != "mkdir" && n != "mkdirat" && n != "socket" {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	type arg struct {
		Index uint   `json:"index"`
		Value uint64 `json:"value"`
		Op    string `json:"op"`
	}
	type rule struct {
		Names    []string `json:"names"`
		Action   string   `json:"action"`
		ErrnoRet *uint    `json:"errnoRet,omitempty"`
		Args     []arg    `json:"args,omitempty"`
	}
	eacces := uint(13)
	prof := writeProfile(t, dir, "allow.json", map[string]any{
		"defaultAction":   "SCMP_ACT_ERRNO",
		"defaultErrnoRet": 38, // ENOSYS
		"architectures":   []string{"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"},
		"syscalls": []rule{
			{Names: names, Action: "SCMP_ACT_ALLOW"},
			{Names: []string{"socket"}, Action: "SCMP_ACT_ERRNO", ErrnoRet: &eacces,
				Args: []arg{{Index: 0, Value: 2, Op: "SCMP_CMP_EQ"}}},
			{Names: []string{"socket"}, Action: "SCMP_ACT_ALLOW"},
		},
	})
	r := husk(t, dir, "exec", "--security", "seccomp:"+prof, img, "python3", "-c", `
import os, socket
try:
    os.mkdir("/tmp/x")
except OSError as e:
    print("mkdir", e.strerror)
socket.socket(socket.AF_UNIX).close()
print("unix ok")
try:
    socket.socket(socket.AF_INET)
except OSError as e:
    print("inet", e.strerror)
`)
	want := "mkdir Function not implemented\nunix ok\ninet Permission denied\n"
	if r.code != 0 || r.stdout != want {
		t.Errorf("want\n%s\ngot:\n%s", want, r)
	}
}

// Profiles husk cannot read or apply fail with one line naming the file.
func TestSeccompProfileErrors(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	for _, tc := range []struct{ name, profile, want string }{
		{"syntax.json", "{\"defaultAction\": \"SCMP_ACT_ALLOW\",\n \"syscalls\": [,]}",
			"line 2: invalid character ','"},
		{"type.json", `{"defaultAction": 1}`,
			"line 1: defaultAction must be a string, not a number"},
		{"array.json", `[]`, "line 1: the profile must be a JSON object, not an array"},
		{"noexec.json", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[]}`,
			"it denies execve (SCMP_ACT_ERRNO), which husk needs to start the command"},
		{"killexec.json", `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
			{"names": ["execve"], "action": "SCMP_ACT_KILL_PROCESS"}]}`,
			"it denies execve (SCMP_ACT_KILL_PROCESS)"},
		{"action.json", `{"defaultAction": "SCMP_ACT_MAYBE"}`,
			`defaultAction: unknown action "SCMP_ACT_MAYBE"`},
		{"notify.json", `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
			{"names": ["mknod"], "action": "SCMP_ACT_NOTIFY"}]}`,
			"syscalls[0] (mknod): SCMP_ACT_NOTIFY: husk has no seccomp agent"},
		{"op.json", `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
			{"names": ["kill"], "action": "SCMP_ACT_ERRNO",
			 "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]}`,
			"syscalls[0] (kill): argument index 7"},
		{"none.json", "", "none.json: no such file or directory"},
	} {
		p := filepath.Join(dir, tc.name)
		if tc.profile != "" {
			p = writeProfile(t, dir, tc.name, tc.profile)
		}
		r := husk(t, dir, "exec", "--security", "seccomp:"+p, img, "true")
		fatalLine(t, r, "seccomp profile", tc.want)
	}
}

// A profile that forbids new user namespaces (clone with CLONE_NEWUSER,
// unshare), as Docker's does without CAP_SYS_ADMIN, confines the payload
// but not husk's own start of it in a user namespace: the filter is
// loaded by a shim between stage 2's fork and the payload's exec.
func TestSeccompProfileNoNamespaces(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	prof := writeProfile(t, dir, "nons.json", `{
  "defaultAction": "SCMP_ACT_ALLOW",
  "syscalls": [
    {"names": ["unshare", "setns"], "action": "SCMP_ACT_ERRNO"},
    {"names": ["clone"], "action": "SCMP_ACT_ERRNO",
     "args": [{"index": 0, "value": 268435456, "valueTwo": 268435456,
               "op": "SCMP_CMP_MASKED_EQ"}]},
    {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
  ]
}`)
	r := husk(t, dir, "exec", "--security", "seccomp:"+prof, img, "sh", "-c",
		"unshare -U true || echo denied; python3 -c 'import threading; "+
			"t = threading.Thread(target=print, args=(\"thread\",)); t.start(); t.join()'")
	if r.code != 0 || r.stdout != "denied\nthread\n" ||
		!strings.Contains(r.stderr, "Operation not permitted") {
		t.Errorf("want unshare denied, threads working:\n%s", r)
	}
}

// An image without glibc (a static program alone, as in a scratch or
// Alpine image) runs under a profile: husk's shim, dynamically linked in
// a cgo build, starts from the host's interpreter and libc, not the
// image's, before it loads the filter.
func TestSeccompProfileStaticImage(t *testing.T) {
	setup(t)
	dir := workDir(t)
	src := filepath.Join(dir, "static")
	if err := os.MkdirAll(filepath.Join(src, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(dir, "hello.go")
	if err := os.WriteFile(prog, []byte(`package main

import "os"

func main() {
	if err := os.Mkdir("/tmp/denied", 0o755); err != nil {
		println("mkdir denied")
		return
	}
	println("mkdir allowed")
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(src, "bin", "hello"), prog)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the static program: %v\n%s", err, out)
	}
	for _, d := range []string{"tmp", "proc", "dev", "sys"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(dir, "static.sqfs")
	tool(t, "mksquashfs", src, img, "-noappend", "-quiet")
	chown(t, img)
	prof := writeProfile(t, dir, "deny-mkdir.json", `{"defaultAction": "SCMP_ACT_ALLOW",
  "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}`)
	for _, extra := range [][]string{nil, {"--fakeroot"}} {
		args := append([]string{"exec"}, extra...)
		args = append(args, "--security", "seccomp:"+prof, img, "/bin/hello")
		r := husk(t, dir, args...)
		if r.code != 0 || !strings.Contains(r.stderr, "mkdir denied") {
			t.Errorf("%v: want the static program run, its mkdir denied:\n%s", extra, r)
		}
	}
}
