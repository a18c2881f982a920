// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"os"
	"strings"
	"testing"
)

// debianRoot is a Debian bookworm minbase + python3 tree made by
// debootstrap (see the project's test setup); HUSK_TEST_ROOTFS overrides.
func debianRoot(t *testing.T) string {
	t.Helper()
	root := os.Getenv("HUSK_TEST_ROOTFS")
	if root == "" {
		root = "/var/tmp/husk-cache/rootfs.tmp"
	}
	if _, err := os.Stat(root + "/usr/bin/python3"); err != nil {
		t.Fatalf("no Debian root file system with python3 at %s: build it with "+
			"debootstrap --variant=minbase --include=python3 bookworm %s, "+
			"or set HUSK_TEST_ROOTFS (%v)", root, root, err)
	}
	return root
}

// TestDebian runs python3 in a real distribution tree, bound read-only:
// the payload sees its own uid, the container's passwd gets the user's
// entry, and destinations missing from a read-only image are skipped with
// a warning (/etc/hosts; /etc/localtime points into a missing zoneinfo).
func TestDebian(t *testing.T) {
	root := debianRoot(t)
	e := newEnv(t)
	s := e.spec("python3", "-c", `import os, pwd, sys
print(os.getuid(), pwd.getpwuid(os.getuid()).pw_dir, os.getcwd() == sys.argv[1])
print(open("/etc/os-release").readline().strip())`, e.wd)
	s.Union = unionJSON(testUnion{Bind: root})
	res := e.run(s)
	t.Logf("stderr:\n%s", res.Stderr)
	out := ok(t, res)
	want := "65534 " + e.home + " True\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"
	if out != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
	if _, err := os.Stat(root + "/etc/hosts"); err != nil &&
		!strings.Contains(res.Stderr, "Skipping mount /etc/hosts [hostfs]") {
		t.Errorf("no warning for /etc/hosts:\n%s", res.Stderr)
	}
}
