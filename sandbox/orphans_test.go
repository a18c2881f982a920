// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	for stat, want := range map[string]int{
		"12 (sh) S 7 12 12 0 -1":              7,
		"13 (a b) c) (d) R 1 13 13 0 -1":      1,
		"14 (x)":                              -1,
		"15 (y) S notanumber 1 1":             -1,
		"no parentheses at all 1 2 3":         -1,
		"16 ()) Z 4242 0 0 0 0 0 0 0 0 0 0 0": 4242,
	} {
		got, _, ok := parseStat([]byte(stat))
		if !ok {
			got = -1
		}
		if got != want {
			t.Errorf("parseStat(%q) = %d, want %d", stat, got, want)
		}
	}
	if _, state, _ := parseStat([]byte("16 ()) Z 4242 0")); state != 'Z' {
		t.Errorf("state %q, want Z", state)
	}
}

// killChildren, in a subreaper, kills and reaps the orphans a dead child
// left to it, and their children in turn, but not the child it keeps. It
// runs in a test process of its own, whose only children are its own.
func TestKillChildren(t *testing.T) {
	if os.Getenv("HUSK_TEST_KILLCHILDREN") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillChildren$", "-test.count=1")
		cmd.Env = append(os.Environ(), "HUSK_TEST_KILLCHILDREN=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return
	}
	if err := becomeSubreaper(); err != nil {
		t.Fatal(err)
	}
	keep := exec.Command("sleep", "600")
	if err := keep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { keep.Process.Kill(); keep.Wait() }()
	pids := t.TempDir() + "/pids"
	// sh starts two sleepers (one of them with a child of its own) and
	// exits: they become this process's children.
	sh := exec.Command("sh", "-c", "sleep 600 & echo $! >> "+pids+
		"; sh -c 'sleep 600 & echo $! >> "+pids+"; wait' & echo $! >> "+pids)
	if err := sh.Run(); err != nil {
		t.Fatal(err)
	}
	var orphans []int
	for i := 0; i < 100 && len(orphans) < 3; i++ {
		time.Sleep(20 * time.Millisecond)
		b, _ := os.ReadFile(pids)
		orphans = orphans[:0]
		for _, f := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(f)
			orphans = append(orphans, pid)
		}
	}
	if len(orphans) != 3 {
		t.Fatalf("orphans %v", orphans)
	}
	// The outer sleeper and the inner sh first, then the inner sleeper.
	if n := killChildren(keep.Process.Pid); n != 3 {
		t.Errorf("killChildren killed %d, want the 3 orphans", n)
	}
	for _, pid := range orphans {
		if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("orphan %d still there (kill 0: %v)", pid, err)
		}
	}
	if err := keep.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the kept child is gone: %v", err)
	}
	if kids := childrenOf(os.Getpid(), keep.Process.Pid); len(kids) != 0 {
		t.Errorf("children left: %v", kids)
	}
}
