// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"bufio"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunAsRoot: Run also works for root itself (in the test process),
// and cancelling the context sends SIGTERM to the payload.
func TestRunAsRoot(t *testing.T) {
	e := newEnv(t)
	dir := e.userDir("out")
	// Root's own directories: ids other than 0 are not mapped for root.
	for _, d := range []string{e.tmp, dir} {
		if err := os.Chown(d, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("TMPDIR", e.tmp)
	s := e.spec("sh", "-c", `id -u > `+dir+`/id; echo ready > `+dir+`/ready
		while :; do sleep 0.05; done`)
	s.UID, s.GID, s.Username, s.HomeDir = 0, 0, "root", "/root"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			if _, err := os.Stat(filepath.Join(dir, "ready")); err == nil {
				cancel()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	status, err := Run(ctx, s, nil, slog.New(slog.DiscardHandler))
	if err != nil || status != -int(syscall.SIGTERM) {
		t.Errorf("status %d, error %v; want %d", status, err, -syscall.SIGTERM)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "id")); string(b) != "0\n" {
		t.Errorf("id -u as root: %q", b)
	}
	e.checkClean()
}

// TestHuskKilled: when husk itself is killed outright, stage 1 still
// stops the payload, unmounts the union and removes the session
// directory.
func TestHuskKilled(t *testing.T) {
	e := newEnv(t)
	log := filepath.Join(e.userDir("log"), "unmount")
	s := e.spec("sh", "-c", `trap 'exit 0' TERM; echo ready; while :; do sleep 0.05; done`)
	s.Union = unionJSON(testUnion{Tree: testTree, Log: log})
	h := e.helper("run", s)
	stdout, err := h.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	h.start()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); line != "ready\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	if err := h.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = h.cmd.Wait()
	// Stage 1 outlives husk: wait (boundedly) for it to finish.
	for i := 0; i < 500; i++ {
		if b, _ := os.ReadFile(log); len(b) > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if b, err := os.ReadFile(log); string(b) != "unmounted\n" {
		t.Fatalf("Mounted.Unmount log: %q, %v", b, err)
	}
	for i := 0; i < 100; i++ {
		if ents, _ := os.ReadDir(e.tmp); len(ents) == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.checkClean()
}

// TestContain: --contain gives private home and /tmp, a minimal /dev
// with working device files and a new devpts, and no working directory.
func TestContain(t *testing.T) {
	e := newEnv(t)
	writeFile(t, filepath.Join(e.home, "h"), "host home\n")
	s := e.spec("sh", "-c", `
		ls -A $HOME; ls -A /tmp; echo x > /tmp/f && cat /tmp/f
		echo null > /dev/null && echo devnull ok
		ls /dev; ls /dev/pts; stat -c 'mode %a %n' /tmp /var/tmp`)
	s.Contain = true
	s.Cwd = ""
	out := ok(t, e.run(s))
	if strings.Contains(out, "host home") || strings.Contains(out, "h\n") {
		t.Errorf("host home visible:\n%s", out)
	}
	// The private /tmp and /var/tmp are sticky, as Apptainer's (they were
	// 0777: os.Chmod ignores a raw 0o1000).
	for _, want := range []string{"x\n", "devnull ok\n", "null\n", "urandom\n", "ptmx\n",
		"pts\n", "shm\n", "mode 1777 /tmp\n", "mode 1777 /var/tmp\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
}

// TestForwarderTerminal: with the terminal signalling the payload itself,
// SIGINT is not forwarded a second time but SIGTERM is.
func TestForwarderTerminal(t *testing.T) {
	cmd := exec.Command("sh", "-c",
		`trap 'echo INT' INT; trap 'echo TERM; exit 0' TERM; echo ready
		while :; do sleep 0.05; done`)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	fw := startForwarding()
	defer fw.stop()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(stdout)
	if line, _ := r.ReadString('\n'); line != "ready\n" {
		t.Fatalf("first line %q", line)
	}
	fw.target(cmd.Process, true)
	_ = syscall.Kill(os.Getpid(), syscall.SIGINT)
	_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
	rest, _ := r.ReadString(0)
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if rest != "TERM\n" {
		t.Errorf("payload saw %q, want only TERM", rest)
	}
}

// TestFUSE runs the container on a real FUSE mount served by stage 1 (a
// go-fuse loopback of the test tree): the payload, in its nested user
// namespace, reads and writes through it, and the server stops cleanly.
func TestFUSE(t *testing.T) {
	if err := CheckFUSE(); err != nil {
		t.Fatalf("%v (CI must chmod 0666 /dev/fuse before the rootless tests)", err)
	}
	e := newEnv(t)
	log := filepath.Join(e.userDir("log"), "unmount")
	s := e.spec("sh", "-c", `id -u; echo written > /new; cat /new; stat -c %u /new
		cat /proc/self/mountinfo`)
	s.Union = unionJSON(testUnion{Tree: testTree, FUSE: true, Log: log})
	out := ok(t, e.run(s))
	if want := "65534\nwritten\n65534\n"; !strings.HasPrefix(out, want) {
		t.Errorf("got %q, want it to start with %q", out, want)
	}
	root := ""
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 8 && f[4] == "/" {
			root = line
		}
	}
	if !strings.Contains(root, " - fuse") {
		t.Errorf("root is not the FUSE mount: %q", root)
	}
	if b, err := os.ReadFile(log); string(b) != "unmounted\n" {
		t.Errorf("Mounted.Unmount log: %q, %v", b, err)
	}
}

// BenchmarkRunTrue measures a whole container run of `true` (three
// re-executions, the namespaces, the mounts, the teardown) as root, on
// the tmpfs test tree; Apptainer's user-namespace mode takes about 111 ms
// for the same on this kind of machine (DESIGN-NOTES.md).
func BenchmarkRunTrue(b *testing.B) {
	s := &Spec{Args: []string{"true"}, Env: []string{"PATH=/usr/bin"}, UID: 0, GID: 0,
		Username: "root", HomeDir: "/root", Umask: 0o022,
		Union: unionJSON(testUnion{Tree: testTree})}
	log := slog.New(slog.DiscardHandler)
	for b.Loop() {
		status, err := Run(context.Background(), s, nil, log)
		if err != nil || status != 0 {
			b.Fatalf("status %d, error %v", status, err)
		}
	}
}
