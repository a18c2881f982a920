// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// sessionDirs lists the husk-* session directories in dir.
func sessionDirs(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "husk-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A husk killed with SIGKILL along with its stages leaves its session
// directory; the next run removes it, and never a live instance's.
func TestStaleSessionSweep(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	chown(t, tmp)
	env := []string{"TMPDIR=" + tmp, "HUSK_CONFIGDIR=" + filepath.Join(dir, "cfg")}
	h := func(args ...string) result {
		t.Helper()
		r := huskEnv(t, dir, env, args...)
		if r.code != 0 {
			t.Fatalf("husk %s:\n%s", strings.Join(args, " "), r)
		}
		return r
	}
	h("instance", "start", img, "live")
	t.Cleanup(func() { huskEnv(t, dir, env, "instance", "stop", "live") })
	live := sessionDirs(t, tmp)
	if len(live) != 1 {
		t.Fatalf("want the instance's session directory, got %v", live)
	}

	cmd := userCmd(dir, "exec", img, "sh", "-c", "echo up; exec sleep 60")
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "up\n" {
		t.Fatalf("the container did not start: %q", line)
	}
	// husk, its stages and the payload share the process group.
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	var stale string
	for _, d := range sessionDirs(t, tmp) {
		if d != live[0] {
			stale = d
		}
	}
	if stale == "" {
		t.Fatalf("the killed run left no session directory: %v", sessionDirs(t, tmp))
	}
	// Its stages die of the SIGKILL; the sweep runs beside the next run's
	// container, so that run lasts until the sweep had its chance.
	waitFor(t, func() bool {
		h("exec", img, "true")
		_, err := os.Lstat(stale)
		return os.IsNotExist(err)
	}, "the stale session directory to be removed")
	if _, err := os.Lstat(live[0]); err != nil {
		t.Fatalf("the live instance's session directory was removed: %v", err)
	}
	if r := h("exec", "instance://live", "cat", "/etc/os-release"); !strings.Contains(
		r.stdout, "bookworm") {
		t.Errorf("the instance no longer works:\n%s", r)
	}
}

// TestSessionDirRemoved: a session directory removed on the host while
// its container runs (an rmdir by a cleaner of temporary files, which
// detaches everything mounted below it in the container's namespace)
// costs neither the command's status nor the overlay's data: husk warns
// and exits with the command's status (it said 255, "unmounting the
// container: no such file or directory"). A running instance then says
// why it takes no more commands (it said "mount proc ...: no such file").
func TestSessionDirRemoved(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	ov := overlayImg(t, dir)
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	chown(t, tmp)
	env := []string{"TMPDIR=" + tmp, "HUSK_CONFIGDIR=" + filepath.Join(dir, "cfg")}
	removeSession := func() {
		t.Helper()
		dirs := sessionDirs(t, tmp)
		if len(dirs) != 1 {
			t.Fatalf("want one session directory, got %v", dirs)
		}
		if err := os.Remove(dirs[0]); err != nil {
			t.Fatal(err)
		}
	}

	// runRemoved runs a command with flags whose session directory is
	// removed while it runs, then lets it write and exit 7; it returns
	// the exit code and stderr.
	runRemoved := func(tag string, flags ...string) (int, string) {
		t.Helper()
		args := append(append([]string{"exec", "-B", dir + ":/w"}, flags...), img, "sh", "-c",
			"touch /w/up"+tag+"; i=0; while [ ! -f /w/gone"+tag+" ] && [ $i -lt 600 ]; do "+
				"sleep 0.1; i=$((i+1)); done; echo kept > /kept; exit 7")
		cmd := userCmd(dir, args...)
		cmd.Env = append(cmd.Env, env...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFile(t, filepath.Join(dir, "up"+tag))
		removeSession()
		if err := os.WriteFile(filepath.Join(dir, "gone"+tag), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		return cmd.ProcessState.ExitCode(), stderr.String()
	}

	code, stderr := runRemoved("1", "--overlay", ov)
	if code != 7 || !strings.Contains(stderr, "was removed while the container ran") {
		t.Errorf("exit %d, want 7 and a warning:\n%s", code, stderr)
	}
	fsckClean(t, ov, 0)
	if r := huskEnv(t, dir, env, "exec", "--overlay", ov, img, "cat", "/kept"); r.stdout !=
		"kept\n" {
		t.Errorf("the overlay lost what the container wrote: %s", r)
	}
	// The same with a tmpfs upper, which lies in the session directory.
	if code, stderr := runRemoved("2", "--writable-tmpfs"); code != 7 {
		t.Errorf("--writable-tmpfs: exit %d, want 7:\n%s", code, stderr)
	}

	if r := huskEnv(t, dir, env, "instance", "start", img, "gone"); r.code != 0 {
		t.Fatalf("instance start: %s", r)
	}
	t.Cleanup(func() { huskEnv(t, dir, env, "instance", "stop", "gone") })
	removeSession()
	fatalLine(t, huskEnv(t, dir, env, "exec", "instance://gone", "true"),
		"session directory", "was removed on the host", "stop it and start it again")
	if r := huskEnv(t, dir, env, "instance", "stop", "gone"); r.code != 0 {
		t.Errorf("instance stop: %s", r)
	}
}
