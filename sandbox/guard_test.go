// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A stage 1 killed while one of its threads waits for an answer from its
// own FUSE server (here a lookup the server never answers, made by the
// bind into the union) does not hang: its guard aborts the connection,
// and Run returns. That thread had kept stage 1 unreapable, and husk
// waiting for it, for good (a trial: ulimit -v, or SIGKILL early on).
func TestGuardAbortsStalledStage1(t *testing.T) {
	h, stderr, pid := stalledIn(t, func(s *Spec, wd string) {
		s.Binds = []Bind{{Src: wd, Dst: "/stall/here"}}
	})
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	returnsKilled(t, h, stderr, "stage 1")
}

// A cgroup kill (Slurm's scancel, systemd stopping a unit) kills every
// process at once, the guard too, here while stage 1 waits in a bind for
// a lookup its own server never answers. Stage 1 makes its binds from a
// thread without the FUSE device (package detach), so its death still
// ends the connection and Run returns. Made on stage 1's main thread, the
// bind had kept it unreapable for good.
func TestKillAllDuringBinds(t *testing.T) {
	killAllStalled(t, func(s *Spec, wd string) {
		s.Binds = []Bind{{Src: wd, Dst: "/stall/here"}}
	})
}

// The same while stage 1 makes a --fusemount mount point in the union
// (made on stage 1's main thread, it had hung the same way).
func TestKillAllDuringFuseMountPoint(t *testing.T) {
	killAllStalled(t, func(s *Spec, _ string) {
		s.PID = true // as --fusemount implies
		s.FuseMounts = []FuseMount{{Args: []string{"/bin/true"}, Mountpoint: "/stall/fuse"}}
	})
}

// killAllStalled SIGKILLs stage 1 and its children at once (a cgroup
// kill) while stage 1 waits on a union lookup that stage makes it do.
func killAllStalled(t *testing.T, stage func(s *Spec, wd string)) {
	h, stderr, pid := stalledIn(t, stage)
	victims := append([]int{pid}, childrenOf(pid, 0)...)
	if childNamed(pid, "husk-guard") == 0 {
		t.Fatalf("no husk-guard under stage 1 (children %v)", victims[1:])
	}
	for _, v := range victims {
		// A child may have ended since it was listed (the --fusemount
		// program, /bin/true, does at once).
		if err := syscall.Kill(v, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
			t.Fatal(err)
		}
	}
	returnsKilled(t, h, stderr, "stage 1 and its children")
}

// stalledIn runs a container whose setup, which stage adds to the spec
// (wd is a host directory to bind), looks up a name in the union that the
// server never answers, and returns once stage 1 waits on it: the helper
// running it, its stderr and stage 1's pid.
func stalledIn(t *testing.T, stage func(s *Spec, wd string)) (*helperProc,
	*strings.Builder, int) {
	t.Helper()
	if err := CheckFUSE(); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	stalled := filepath.Join(e.userDir("log"), "stalled")
	s := e.spec("true")
	s.Union = unionJSON(testUnion{Tree: testTree, FUSE: true, Stall: "stall",
		StallLog: stalled})
	stage(s, e.wd)
	h := e.helper("run", s)
	var stdout, stderr strings.Builder
	h.cmd.Stdout, h.cmd.Stderr = &stdout, &stderr
	h.start()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, _ := os.ReadFile(stalled); string(b) == "stalled\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stage 1 never looked up /stall\nstderr:\n%s", &stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	pid := childNamed(h.cmd.Process.Pid, "husk-stage1")
	if pid == 0 {
		t.Fatal("no husk-stage1 under the helper")
	}
	return h, &stderr, pid
}

// returnsKilled checks that Run returns, with a failure, once what was
// killed is gone; after 30 s it aborts the stalled connection and fails.
func returnsKilled(t *testing.T, h *helperProc, stderr *strings.Builder, killed string) {
	t.Helper()
	done := make(chan result, 1)
	go func() { done <- h.wait(stderr) }()
	select {
	case res := <-done:
		if res.Status == 0 {
			t.Errorf("Run after killing %s: status 0", killed)
		}
	case <-time.After(30 * time.Second):
		abortStalledFUSE(t)
		t.Fatalf("Run did not return in 30 s after %s was killed", killed)
	}
}

// childNamed returns the pid of a child of parent named comm, or 0.
func childNamed(parent int, comm string) int {
	for _, pid := range childrenOf(parent, 0) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		if err == nil && strings.TrimSpace(string(b)) == comm {
			return pid
		}
	}
	return 0
}

// abortStalledFUSE aborts, through fusectl, the FUSE connections with
// requests waiting: what a failed guard leaves (test machines only).
func abortStalledFUSE(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("none", dir, "fusectl", 0, ""); err != nil {
		t.Logf("fusectl: %v", err)
		return
	}
	defer syscall.Unmount(dir, 0)
	conns, _ := os.ReadDir(dir)
	for _, c := range conns {
		b, _ := os.ReadFile(filepath.Join(dir, c.Name(), "waiting"))
		if n, _ := strconv.Atoi(strings.TrimSpace(string(b))); n > 0 {
			_ = os.WriteFile(filepath.Join(dir, c.Name(), "abort"), []byte("1"), 0o200)
		}
	}
}
