// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package main

import (
	"strings"
	"testing"
)

// --no-mount dev leaves the image's /dev, whose nodes are unusable on
// the nodev union, as with Apptainer: the launcher must not need
// /dev/null, so a command runs, empty variables are still unset, and
// only a missing command is reported as one.
func TestNoMountDev(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	r := ok(t, dir, "exec", "--no-mount", "dev", "--env", "EMPTYV=", img, "sh", "-c",
		`echo "run ${EMPTYV+set}"`)
	if r.stdout != "run \n" || r.stderr != "" {
		t.Errorf("--no-mount dev:\n%s", r)
	}
	fatalLine(t, husk(t, dir, "exec", "--no-mount", "dev", img, "no-such-cmd"),
		`"no-such-cmd": executable file not found`)
	if r := ok(t, dir, "exec", "--no-mount", "dev", img, "/bin/true"); r.stderr != "" {
		t.Errorf("/bin/true: %s", r)
	}
	r = husk(t, dir, "exec", "--no-mount", "dev", img, "sh", "-c", "echo x >/dev/null")
	if r.code == 0 || !strings.Contains(r.stderr, "/dev/null") {
		t.Errorf("the image's /dev/null is usable on a nodev union?\n%s", r)
	}
}
