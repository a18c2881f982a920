// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMountRefusedByPolicy: a mount refused with EPERM while /dev/fuse is
// usable and the kernel recent is put down to a security policy, in one
// line, exit 255, when the fusermount3 fallback is turned off
// (fusermount_test.go tests the fallback).
func TestMountRefusedByPolicy(t *testing.T) {
	e := newEnv(t)
	dev := filepath.Join(e.dir, "fuse")
	if err := os.WriteFile(dev, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dev, 0o666); err != nil { // opened read-write by the helper
		t.Fatal(err)
	}
	s := e.spec("true")
	s.Union = unionJSON(testUnion{Fail: true, FuseDevice: dev})
	h := e.helper("run", s)
	h.cmd.Env = append(h.cmd.Env, FusermountEnv+"=0")
	res := runHelperProc(e, h)
	want := "mounting the container: the kernel refused the mount in husk's user " +
		"namespace (operation not permitted): a security policy (SELinux, AppArmor, " +
		"seccomp or a container runtime) forbids it; ask your administrator"
	if res.Status != 255 || res.Err != want {
		t.Errorf("status %d, error %q, want 255 and %q", res.Status, res.Err, want)
	}
}
