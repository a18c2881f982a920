// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// End-to-end tests of the husk binary, as an unprivileged user on the
// Debian test SIF, for what this package decides about the host: the
// --fakeroot id mapping and the FUSE mount method.

const (
	// e2eUser has husktest:100000:65536 in /etc/subuid and /etc/subgid
	// (testdata/deps.sh, useradd's default).
	e2eUser, e2eUID = "husktest", 1500
	// e2eNoSubUser has no subordinate ids; the test creates it.
	e2eNoSubUser, e2eNoSubUID = "husknosub", 1501
)

var (
	huskOnce sync.Once
	huskPath string
	huskErr  error
)

// e2eHusk builds the husk binary once into testBase (readable by all).
func e2eHusk(t *testing.T) string {
	t.Helper()
	huskOnce.Do(func() {
		huskPath = filepath.Join(testBase, "husk")
		out, err := exec.Command("go", "build", "-o", huskPath, "../cmd/husk").CombinedOutput()
		if err != nil {
			huskErr = fmt.Errorf("go build ../cmd/husk: %v\n%s", err, out)
		}
	})
	if huskErr != nil {
		t.Fatal(huskErr)
	}
	return huskPath
}

// e2eSIF is the Debian test SIF that testdata/test.sh makes.
func e2eSIF(t *testing.T) string {
	t.Helper()
	cache := os.Getenv("HUSK_TEST_CACHE")
	if cache == "" {
		cache = "/var/tmp/husk-cache"
	}
	sif := filepath.Join(cache, "debian.sif")
	if _, err := os.Stat(sif); err != nil {
		t.Fatalf("no test image %s: run bash testdata/test.sh (or testdata/mkimage.sh "+
			"HUSK_BINARY) as root first", sif)
	}
	return sif
}

// e2eNeedUser makes sure name exists with uid; subIDs false creates it
// without /etc/subuid and /etc/subgid entries.
func e2eNeedUser(t *testing.T, name string, uid int, subIDs bool) {
	t.Helper()
	if u, err := user.Lookup(name); err == nil {
		if u.Uid != strconv.Itoa(uid) {
			t.Fatalf("user %s has uid %s, want %d", name, u.Uid, uid)
		}
		return
	}
	args := []string{"-M", "-u", strconv.Itoa(uid), "-s", "/bin/sh"}
	if !subIDs {
		args = append(args, "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0")
	}
	out, err := exec.Command("useradd", append(args, name)...).CombinedOutput()
	if err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
}

// e2eDir is a fresh directory owned by uid, removed after the test.
func e2eDir(t *testing.T, uid int) string {
	t.Helper()
	d, err := os.MkdirTemp(testBase, "e2e-")
	if err == nil {
		err = os.Chown(d, uid, uid)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// e2eResult is one run of husk.
type e2eResult struct {
	stdout, stderr string
	code           int
}

func (r e2eResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// e2eRun runs husk as uid in dir with env added to a minimal environment.
func e2eRun(t *testing.T, uid int, dir string, env []string, args ...string) e2eResult {
	t.Helper()
	cmd := exec.Command(e2eHusk(t), args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
		"HOME=" + dir, "TMPDIR=" + dir, "LANG=C"}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{
		Uid: uint32(uid), Gid: uint32(uid), NoSetGroups: false}}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := e2eResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("husk %v: %v", args, err)
	}
	return r
}

// e2eOK is e2eRun that fails the test on a non-zero status.
func e2eOK(t *testing.T, uid int, dir string, env []string, args ...string) e2eResult {
	t.Helper()
	r := e2eRun(t, uid, dir, env, args...)
	if r.code != 0 {
		t.Fatalf("husk %s: %v", strings.Join(args, " "), r)
	}
	return r
}

// debugfsOwner returns "uid gid" of path in an ext3 image, as debugfs
// reads it.
func debugfsOwner(t *testing.T, img, path string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "stat "+path, img).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs stat %s: %v\n%s (install e2fsprogs)", path, err, out)
	}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) >= 4 && f[0] == "User:" && f[2] == "Group:" {
			return f[1] + " " + f[3]
		}
	}
	t.Fatalf("debugfs stat %s: no owner in\n%s", path, out)
	return ""
}

// e2fsckClean fails the test unless e2fsck -fn finds img clean.
func e2fsckClean(t *testing.T, img string) {
	t.Helper()
	if out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn %s: %v\n%s", img, err, out)
	}
}

// TestE2EFakerootSubIDs: with husktest's /etc/subuid range, --fakeroot
// maps root to the user and 1..65536 to the range, owners set inside
// (chown, a process that switched to _apt) are stored as they are in the
// ext3 upper, and an `overlay create --fakeroot` image is root's inside.
func TestE2EFakerootSubIDs(t *testing.T) {
	e2eNeedUser(t, e2eUser, e2eUID, true)
	sif, dir := e2eSIF(t), e2eDir(t, e2eUID)
	img := filepath.Join(dir, "ov.img")
	e2eOK(t, e2eUID, dir, nil, "overlay", "create", "--fakeroot", "--size", "64", img)

	r := e2eOK(t, e2eUID, dir, nil, "exec", "--fakeroot", "--overlay", img, sif, "sh", "-c",
		`cat /proc/self/uid_map /proc/self/gid_map | tr -s ' ' | sed 's/^ //'
stat -c '%u:%g' /
touch /f && chown 100:101 /f
mkdir /d && chmod 1777 /d
setpriv --reuid 42 --regid 65534 --clear-groups touch /d/apt
id -u`)
	want := "0 1500 1\n1 100000 65536\n0 1500 1\n1 100000 65536\n0:0\n0\n"
	if r.stdout != want {
		t.Errorf("got\n%s\nwant\n%s\nstderr:\n%s", r.stdout, want, r.stderr)
	}
	if strings.Contains(r.stderr, "maps root only") {
		t.Errorf("the one-id warning was printed with a subordinate range:\n%s", r.stderr)
	}
	e2fsckClean(t, img)
	for path, want := range map[string]string{"/upper": "0 0", "/upper/f": "100 101",
		"/upper/d": "0 0", "/upper/d/apt": "42 65534"} {
		if got := debugfsOwner(t, img, path); got != want {
			t.Errorf("debugfs: %s owned by %s, want %s", path, got, want)
		}
	}

	// A second container sees the stored owners.
	r = e2eOK(t, e2eUID, dir, nil, "exec", "--fakeroot", "--overlay", img, sif,
		"stat", "-c", "%u:%g", "/f", "/d/apt")
	if r.stdout != "100:101\n42:65534\n" {
		t.Errorf("second run: owners\n%s", r.stdout)
	}
}

// TestE2EFakerootNoSubIDs: a user without /etc/subuid entry gets the
// one-id mapping and one warning saying what will not work; chown to
// another id fails.
func TestE2EFakerootNoSubIDs(t *testing.T) {
	e2eNeedUser(t, e2eNoSubUser, e2eNoSubUID, false)
	sif, dir := e2eSIF(t), e2eDir(t, e2eNoSubUID)
	r := e2eOK(t, e2eNoSubUID, dir, nil, "exec", "--fakeroot", "--writable-tmpfs", sif,
		"sh", "-c", `tr -s ' ' </proc/self/uid_map | sed 's/^ //'; id -u; touch /f
chown 100 /f 2>/dev/null || echo chown refused`)
	want := fmt.Sprintf("0 %d 1\n0\nchown refused\n", e2eNoSubUID)
	if r.stdout != want {
		t.Errorf("got\n%s\nwant\n%s\nstderr:\n%s", r.stdout, want, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "WARNING:") ||
		!strings.Contains(lines[0], "--fakeroot maps root only") ||
		!strings.Contains(lines[0], e2eNoSubUser+" is not listed in /etc/subuid") {
		t.Errorf("want one WARNING line about /etc/subuid, got:\n%s", r.stderr)
	}
}

// TestE2EFakerootHelpersNotPrivileged: where newuidmap cannot write maps
// (installed without its setuid bit, as in some container images), the
// user gets the one-id mapping and the warning names the helper.
func TestE2EFakerootHelpersNotPrivileged(t *testing.T) {
	e2eNeedUser(t, e2eUser, e2eUID, true)
	sif, dir := e2eSIF(t), e2eDir(t, e2eUID)
	helper, err := exec.LookPath("newuidmap")
	if err != nil {
		t.Fatalf("%v: apt-get install uidmap", err)
	}
	plain := filepath.Join(dir, "newuidmap")
	if err := os.WriteFile(plain, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := "mount --bind " + plain + " " + helper + " && exec setpriv --reuid " +
		strconv.Itoa(e2eUID) + " --regid " + strconv.Itoa(e2eUID) + " --clear-groups " +
		e2eHusk(t) + " exec --fakeroot " + sif + " sh -c \"tr -s ' ' </proc/self/uid_map\""
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", script)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME=" + dir,
		"TMPDIR=" + dir}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
	}
	if want := " 0 1500 1\n"; stdout.String() != want {
		t.Errorf("uid_map %q, want %q", &stdout, want)
	}
	want := "WARNING: --fakeroot maps root only: " + helper + " is neither setuid root nor " +
		"given cap_setuid; files cannot be chowned to other ids, so apt, dpkg and other " +
		"tools that change owners fail\n"
	if stderr.String() != want {
		t.Errorf("stderr\n%s\nwant\n%s", &stderr, want)
	}
}

// TestE2EFakerootSignalDuringStartup: SIGTERM sent to husk --fakeroot at
// moments spread over its start-up, to husk alone and to its process
// group, ends the command as a death by that signal. Stage 1 re-executes
// itself once newuidmap has mapped its ids: a signal passed on before
// that was lost with the old image, and the command ran to its end; one
// sent to the group killed newuidmap and husk failed with exit 255.
func TestE2EFakerootSignalDuringStartup(t *testing.T) {
	sif := e2eSIF(t)
	dir := e2eDir(t, e2eUID)
	husk := e2eHusk(t)
	for _, group := range []bool{false, true} {
		for i := range 12 {
			d := time.Duration(i) * 3 * time.Millisecond
			cmd := exec.Command(husk, "exec", "--fakeroot", sif, "sleep", "30")
			cmd.Dir = dir
			cmd.Env = []string{"PATH=/usr/bin:/bin:/usr/sbin:/sbin", "HOME=" + dir,
				"TMPDIR=" + dir, "LANG=C"}
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true,
				Credential: &syscall.Credential{Uid: e2eUID, Gid: e2eUID}}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(d)
			target := cmd.Process.Pid
			if group {
				target = -target
			}
			if err := syscall.Kill(target, syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-done
				t.Fatalf("group %v, %v: SIGTERM lost, the command ran on; stderr:\n%s",
					group, d, stderr.String())
			}
			ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if !(ws.Signaled() && ws.Signal() == syscall.SIGTERM) && ws.ExitStatus() != 143 {
				t.Errorf("group %v, %v: %v, want death by SIGTERM; stderr:\n%s", group, d,
					cmd.ProcessState, stderr.String())
			}
		}
	}
}
