// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"os"
	"strings"
	"testing"
)

// debianRoot finds the Debian bookworm minbase + python3 tree that
// testdata/mkimage.sh builds with debootstrap: $HUSK_TEST_ROOTFS, else
// $HUSK_CACHE/rootfs (default /var/tmp/husk-cache), else the rootfs.tmp
// an earlier setup left there.
func debianRoot(t *testing.T) string {
	t.Helper()
	cache := os.Getenv("HUSK_CACHE")
	if cache == "" {
		cache = "/var/tmp/husk-cache"
	}
	candidates := []string{cache + "/rootfs", cache + "/rootfs.tmp"}
	if r := os.Getenv("HUSK_TEST_ROOTFS"); r != "" {
		candidates = []string{r}
	}
	for _, root := range candidates {
		if _, err := os.Stat(root + "/usr/bin/python3"); err == nil {
			return root
		}
	}
	t.Fatalf("no Debian root file system with python3 in %v: run testdata/mkimage.sh "+
		"(debootstrap, as root) or set HUSK_TEST_ROOTFS", candidates)
	return ""
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
