// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package main

import (
	"os"
	"strings"
	"testing"
)

// hostMountpoints are the mount points of this (the host's) namespace.
func hostMountpoints(t *testing.T, into map[string]bool) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 {
			into[f[4]] = true
		}
	}
}

// The session's own mounts (its tmpfs, the container root below it)
// do not show through the default /tmp bind nor a user bind of /tmp:
// every husk-* mount the container sees is a mount of the host's (some
// other run's), none is this run's staging.
func TestSessionMountsHidden(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	for _, args := range [][]string{{}, {"--bind", "/tmp:/mnt"}, {"--bind", "/:/host"}} {
		host := map[string]bool{}
		hostMountpoints(t, host)
		a := append(append([]string{"exec"}, args...), img, "sh", "-c",
			"awk '$5 ~ /husk-/ { print $5 }' /proc/self/mountinfo")
		r := ok(t, dir, a...)
		hostMountpoints(t, host)
		for _, mp := range strings.Fields(r.stdout) {
			h := mp
			if m, ok := strings.CutPrefix(mp, "/mnt/"); ok {
				h = "/tmp/" + m
			} else if m, ok := strings.CutPrefix(mp, "/host/"); ok {
				h = "/" + m
			}
			if !host[h] {
				t.Errorf("%v: the container sees staging mount %s:\n%s", args, mp, r.stdout)
			}
		}
	}
}
