// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestIdentity: the payload runs as the caller's own uid (not 0) without
// capabilities, and as 0 with all capabilities of the user namespace with
// Fakeroot.
func TestIdentity(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name     string
		fakeroot bool
		want     string
	}{
		{"user", false, "65534 65534 0000000000000000"},
		{"fakeroot", true, "0 0 bounding"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The effective set, printed as "bounding" when it is full.
			s := e.spec("sh", "-c", `while read k v; do case $k in
				CapEff:) eff=$v;; CapBnd:) bnd=$v;; esac; done </proc/self/status
				[ "$eff" = "$bnd" ] && eff=bounding
				echo $(id -u) $(id -g) $eff`)
			s.Fakeroot = tc.fakeroot
			res := e.run(s)
			if res.Err != "" || res.Status != 0 {
				t.Fatalf("status %d, error %q, stderr:\n%s", res.Status, res.Err, res.Stderr)
			}
			if got := strings.TrimSpace(res.Stdout); got != tc.want {
				t.Errorf("id -u, id -g, CapEff = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestExitStatus: exit codes pass through, 128+N among them; death by
// signal N is -N.
func TestExitStatus(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		script string
		want   int
	}{
		{"exit 0", 0},
		{"exit 3", 3},
		{"exit 255", 255},
		{"kill -KILL $$", -9},
		{"kill -TERM $$", -15},
		{"exit 130", 130},
		{"exit 143", 143},
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

// ok fails the test unless the run succeeded, and returns its stdout.
func ok(t *testing.T, res result) string {
	t.Helper()
	if res.Err != "" || res.Status != 0 {
		t.Fatalf("status %d, error %q, stderr:\n%s", res.Status, res.Err, res.Stderr)
	}
	return res.Stdout
}

// TestMounts: the default mounts and user binds are visible, user binds
// are nosuid,nodev, and a read-only bind refuses writes with EROFS, with
// mount_setattr(2) and with the remount used by kernels before 5.12.
func TestMounts(t *testing.T) {
	for _, old := range []bool{false, true} {
		t.Run(map[bool]string{false: "mount_setattr", true: "remount"}[old], func(t *testing.T) {
			testMounts(t, old)
		})
	}
}

func testMounts(t *testing.T, oldKernel bool) {
	e := newEnv(t)
	rw, ro := e.userDir("rw"), e.userDir("ro")
	writeFile(t, filepath.Join(ro, "f"), "ro content\n")
	writeFile(t, filepath.Join(e.home, "h"), "home content\n")
	writeFile(t, filepath.Join(e.wd, "w"), "cwd content\n")

	s := e.spec("sh", "-c", `
		cat $HOME/h; cat w; pwd
		cat /mnt/ro/f
		touch /mnt/ro/new 2>&1
		touch /mnt/rw/new && echo rw ok
		readlink /proc/self/exe
		test -c /dev/null && echo dev ok
		test -d /sys/kernel && echo sys ok
		cat /proc/self/mountinfo`)
	s.Binds = []Bind{{Src: ro, Dst: "/mnt/ro", ReadOnly: true}, {Src: rw, Dst: "/mnt/rw"}}
	// Without /tmp the working directory (under it) is bound by itself.
	s.NoMount = []string{"tmp"}
	s.Union = unionJSON(testUnion{Tree: testTree, OldKernel: oldKernel})
	out := ok(t, e.run(s))
	for _, want := range []string{
		"home content\n", "cwd content\n", e.wd + "\n", "ro content\n",
		"Read-only file system", "rw ok\n", "/usr/bin/readlink\n", "dev ok\n", "sys ok\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(rw, "new")); err != nil {
		t.Errorf("file written through the rw bind: %v", err)
	}
	if _, err := os.Stat(filepath.Join(ro, "new")); err == nil {
		t.Errorf("file written through the ro bind")
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && (f[4] == "/mnt/ro" || f[4] == "/mnt/rw") {
			if !strings.Contains(f[5], "nosuid") || !strings.Contains(f[5], "nodev") {
				t.Errorf("bind not nosuid,nodev: %s", line)
			}
			if ro := strings.HasPrefix(f[5], "ro"); ro != (f[4] == "/mnt/ro") {
				t.Errorf("wrong ro flag: %s", line)
			}
		}
	}
}

// userDir makes a directory owned by the test user.
func (e *env) userDir(name string) string {
	e.t.Helper()
	d := filepath.Join(e.dir, name)
	if err := os.Mkdir(d, 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Chown(d, testUID, testGID); err != nil {
		e.t.Fatal(err)
	}
	return d
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(name, testUID, testGID); err != nil {
		t.Fatal(err)
	}
}

// TestEnvUmaskHome: the payload gets exactly Spec.Env and Spec.Umask, and
// with Fakeroot the home directory is at /root.
func TestEnvUmaskHome(t *testing.T) {
	e := newEnv(t)
	writeFile(t, filepath.Join(e.home, "h"), "home content\n")
	s := e.spec("sh", "-c", "env; umask; cat /root/h")
	s.Env = []string{"PATH=/bin", "FOO=bar baz", "HOME=/root"}
	s.Umask = 0o027
	s.Fakeroot = true
	if got := s.ContainerHome(); got != "/root" {
		t.Errorf("ContainerHome = %q", got)
	}
	lines := strings.Split(ok(t, e.run(s)), "\n")
	if len(lines) < 4 {
		t.Fatalf("got %q", lines)
	}
	// dash adds PWD to its environment and orders it its own way.
	env := slices.DeleteFunc(lines[:len(lines)-3], func(l string) bool {
		return strings.HasPrefix(l, "PWD=")
	})
	slices.Sort(env)
	got := strings.Join(append(env, lines[len(lines)-3:]...), "\n")
	want := "FOO=bar baz\nHOME=/root\nPATH=/bin\n0027\nhome content\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestSymlinkedDestinations: destinations are resolved in the container.
// /var/tmp linked to /tmp is not bound over /tmp, and a resolv.conf
// linked into /run gets its target created and bound.
func TestSymlinkedDestinations(t *testing.T) {
	e := newEnv(t)
	s := e.spec("sh", "-c", "test -d "+e.dir+" && echo tmp ok; cat /run/resolv.conf")
	s.Union = unionJSON(testUnion{Tree: testTree, Links: map[string]string{
		"var/tmp": "../tmp", "etc/resolv.conf": "/run/resolv.conf"}})
	out := ok(t, e.run(s))
	host, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		t.Fatal(err)
	}
	if want := "tmp ok\n" + string(host); out != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
}
