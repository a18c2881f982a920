// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// defaultPath is used when the payload's environment has no PATH.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// startPayload starts the payload in the container: as the user's own
// uid and gid in a nested user namespace, or as root of stage 1's
// namespace with --fakeroot.
//
// It locks the calling goroutine to its thread for good: no_new_privs and
// the payload's parent-death signal both belong to this thread.
func startPayload(p *plan, cwd string, loader *hostLoader) (*os.Process, error) {
	spec := p.Spec
	env := withPWD(spec.Env, cwd)
	path, err := lookPath(spec.Args[0], envPath(env), cwd)
	if err != nil {
		return nil, err
	}

	attr := &os.ProcAttr{
		Dir:   cwd,
		Env:   env,
		Files: payloadFiles(p.Inherited, p.inherit),
		Sys:   &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	}
	if !spec.Fakeroot {
		attr.Sys.Cloneflags = syscall.CLONE_NEWUSER
		userMapping(spec.UID, spec.GID).apply(attr.Sys)
	}

	runtime.LockOSThread()
	// As Apptainer does by default: setuid files cannot raise privileges
	// (they could not map to anything useful anyway).
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return nil, &os.SyscallError{Syscall: "prctl(PR_SET_NO_NEW_PRIVS)", Err: err}
	}
	syscall.Umask(spec.Umask)
	if err := preparePayload(spec, attr.Sys); err != nil { // payload_linux.go
		return nil, err
	}

	argv := append([]string{spec.Args[0]}, spec.Args[1:]...)
	// With a seccomp profile, a shim loads it and execs path.
	var extra []*os.File
	path, argv, attr.Env, extra, err = seccompShim(spec, path, argv, attr.Env, loader,
		len(attr.Files))
	if err != nil {
		return nil, err
	}
	attr.Files = append(attr.Files, extra...)
	proc, err := os.StartProcess(path, argv, attr)
	if errors.Is(err, syscall.ENOEXEC) {
		// No #! line: run it with the shell, as execvp(3) and Apptainer do.
		argv = append([]string{"/bin/sh", path}, spec.Args[1:]...)
		proc, err = os.StartProcess("/bin/sh", argv, attr)
	}
	if err != nil {
		return nil, execError(spec.Args[0], path, cwd, err)
	}
	return proc, nil
}

// lookPath finds file on pathList (inside the container, after the
// pivot), as execvp(3) would. Names with a slash are used as they are.
func lookPath(file, pathList, cwd string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	var denied error
	for _, dir := range filepath.SplitList(pathList) {
		if dir == "" {
			dir = "."
		}
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(cwd, dir)
		}
		path := filepath.Join(dir, file)
		fi, err := os.Stat(path)
		if err != nil || fi.IsDir() {
			continue
		}
		if fi.Mode()&0o111 == 0 {
			denied = fmt.Errorf("exec %s failed: %s is not executable", file, path)
			continue
		}
		return path, nil
	}
	if denied != nil {
		return "", denied
	}
	return "", fmt.Errorf("exec %s failed: executable file not found in $PATH "+
		"(%s) in the container", file, pathList)
}

// execError words a failed execve(2) for the user; for ENOENT it says
// whether the command itself or what it needs is missing.
func execError(name, path, cwd string, err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return fmt.Errorf("exec %s failed: %w", name, err)
	}
	if errno != syscall.ENOENT {
		return fmt.Errorf("exec %s failed: %w", name, errno)
	}
	full := path
	if !filepath.IsAbs(full) {
		full = filepath.Join(cwd, full)
	}
	if _, serr := os.Stat(full); serr != nil {
		return fmt.Errorf("exec %s failed: %w: %s does not exist in the container",
			name, errno, path)
	}
	return fmt.Errorf("exec %s failed: %w: its interpreter or a shared library is "+
		"likely missing in the image", name, errno)
}

// envPath is the PATH of env, or the default path.
func envPath(env []string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], "PATH="); ok {
			return v
		}
	}
	return defaultPath
}

// withPWD updates a PWD variable in env to the directory actually used,
// so that shells do not trust a stale one.
func withPWD(env []string, cwd string) []string {
	out := append([]string(nil), env...)
	for i, kv := range out {
		if strings.HasPrefix(kv, "PWD=") {
			out[i] = "PWD=" + cwd
		}
	}
	return out
}
