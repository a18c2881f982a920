// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"strconv"
	"strings"
	"testing"
)

// TestIdentity: the payload runs as the caller's own uid (not 0), and as
// 0 with Fakeroot.
func TestIdentity(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name     string
		fakeroot bool
		want     string
	}{
		{"user", false, "65534 65534"},
		{"fakeroot", true, "0 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := e.spec("sh", "-c", "echo $(id -u) $(id -g)")
			s.Fakeroot = tc.fakeroot
			res := e.run(s)
			if res.Err != "" || res.Status != 0 {
				t.Fatalf("status %d, error %q, stderr:\n%s", res.Status, res.Err, res.Stderr)
			}
			if got := strings.TrimSpace(res.Stdout); got != tc.want {
				t.Errorf("id -u, id -g = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestExitStatus: exit codes pass through; death by signal N is 128+N.
func TestExitStatus(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		script string
		want   int
	}{
		{"exit 0", 0},
		{"exit 3", 3},
		{"exit 255", 255},
		{"kill -KILL $$", 128 + 9},
		{"kill -TERM $$", 128 + 15},
	} {
		t.Run(tc.script, func(t *testing.T) {
			res := e.run(e.spec("sh", "-c", tc.script))
			if res.Err != "" {
				t.Fatalf("error %q, stderr:\n%s", res.Err, res.Stderr)
			}
			if res.Status != tc.want {
				t.Errorf("status %d, want %d; stderr:\n%s", res.Status, tc.want, res.Stderr)
			}
		})
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return n
}
