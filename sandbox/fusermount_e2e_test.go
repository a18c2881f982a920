// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// End-to-end tests of fusermount3 mode (HUSK_FUSERMOUNT=1): husk as
// husktest on the Debian test SIF, the union mounted on the host through
// the setuid fusermount3 by stage 3.

// fusermountEnv selects fusermount3 mode for e2eRun.
var fusermountEnv = []string{FusermountEnv + "=1"}

// e2eNeedFusermount fails unless fusermount3 is installed setuid root.
func e2eNeedFusermount(t *testing.T) {
	t.Helper()
	fi, err := os.Stat("/usr/bin/fusermount3")
	if err != nil {
		t.Fatalf("%v: apt-get install fuse3", err)
	}
	if fi.Mode()&os.ModeSetuid == 0 {
		t.Fatal("/usr/bin/fusermount3 is not setuid root: reinstall fuse3")
	}
}

// e2eNoMountsUnder fails the test if the host has a mount below dir or
// dir holds a session directory.
func e2eNoMountsUnder(t *testing.T, dir string) {
	t.Helper()
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mi), dir+"/") {
		t.Errorf("mount left under %s:\n%s", dir, mi)
	}
	ents, _ := filepath.Glob(filepath.Join(dir, "husk-*"))
	if len(ents) > 0 {
		t.Errorf("left behind: %v", ents)
	}
}

// e2eWaitGone waits (boundedly) until the stages of a container whose
// husk is gone are done: stage 3 removes the union's mount point after
// it has unmounted, synced and closed the union.
func e2eWaitGone(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		mi, _ := os.ReadFile("/proc/self/mountinfo")
		ents, _ := filepath.Glob(filepath.Join(dir, "husk-*"))
		if !strings.Contains(string(mi), dir+"/") && len(ents) == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	e2eNoMountsUnder(t, dir)
}

// TestE2EFusermount: the container runs on the fusermount3 mount: the
// image, an overlay kept between runs and clean afterwards, exit codes
// and signals, a bind whose mount point stage 3 creates, --fakeroot with
// root only and its warning, --writable-tmpfs; no mount is left on the
// host after each run.
func TestE2EFusermount(t *testing.T) {
	e2eNeedUser(t, e2eUser, e2eUID, true)
	e2eNeedFusermount(t)
	sif, dir := e2eSIF(t), e2eDir(t, e2eUID)
	run := func(args ...string) e2eResult {
		t.Helper()
		r := e2eRun(t, e2eUID, dir, fusermountEnv, args...)
		e2eNoMountsUnder(t, dir)
		return r
	}

	r := run("exec", sif, "sh", "-c", "grep ^VERSION_CODENAME= /etc/os-release; "+
		"grep ' / / ' /proc/self/mountinfo")
	if !strings.HasPrefix(r.stdout, "VERSION_CODENAME=bookworm\n") ||
		!strings.Contains(r.stdout, " - fuse.husk husk ro,user_id=1500,group_id=1500,") {
		t.Errorf("not the image on a fusermount3 mount of uid 1500:\n%v", r)
	}
	if r.code != 0 || r.stderr != "" {
		t.Errorf("want a quiet success:\n%v", r)
	}

	img := filepath.Join(dir, "o.img")
	e2eOK(t, e2eUID, dir, nil, "overlay", "create", "--size", "64", img)
	r = run("exec", "--overlay", img, sif, "sh", "-c", "echo kept > /kept; id -u")
	if r.code != 0 || r.stdout != "1500\n" {
		t.Errorf("write through the overlay:\n%v", r)
	}
	e2fsckClean(t, img)
	if got := debugfsOwner(t, img, "/upper/kept"); got != "1500 1500" {
		t.Errorf("/upper/kept owned by %s, want 1500 1500", got)
	}
	if r = run("exec", "--overlay", img, sif, "cat", "/kept"); r.stdout != "kept\n" {
		t.Errorf("second run:\n%v", r)
	}

	if r = run("exec", sif, "sh", "-c", "exit 7"); r.code != 7 {
		t.Errorf("exit 7:\n%v", r)
	}
	// husk re-raises most signals on itself; SIGQUIT it reports as 131.
	if r = run("exec", sif, "sh", "-c", "ulimit -c 0; kill -QUIT $$"); r.code != 128+3 {
		t.Errorf("killed by SIGQUIT:\n%v", r)
	}

	host := filepath.Join(dir, "hostdir")
	if err := os.Mkdir(host, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(host, "f"), []byte("host file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = run("exec", "--bind", host+":/opt/not/in/image", "--overlay", img, sif,
		"cat", "/opt/not/in/image/f")
	if r.code != 0 || r.stdout != "host file\n" {
		t.Errorf("bind to a new mount point:\n%v", r)
	}
	// The mount point is in the skeleton, not in the overlay.
	if out, _ := exec.Command("debugfs", "-R", "ls /upper", img).CombinedOutput(); bytes.
		Contains(out, []byte("opt")) {
		t.Errorf("bind target leaked into the overlay:\n%s", out)
	}

	r = run("exec", "--fakeroot", "--writable-tmpfs", sif, "sh", "-c",
		"id -u; touch /f; stat -c %u /f")
	if r.code != 0 || r.stdout != "0\n0\n" {
		t.Errorf("--fakeroot --writable-tmpfs:\n%v", r)
	}
	if !strings.Contains(r.stderr, "WARNING: --fakeroot maps root only when the container "+
		"is mounted through fusermount3") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("want one warning about --fakeroot:\n%v", r)
	}
	// Only husktest's: the union package's test of this mode, which go test
	// may run meanwhile in another process, has one of its own there (root's).
	ents, _ := filepath.Glob("/dev/shm/husk-writable-tmpfs-*")
	for _, p := range ents {
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err == nil && st.Uid == e2eUID {
			t.Errorf("--writable-tmpfs left %s", p)
		}
	}
}

// startHusk starts husk as husktest in fusermount3 mode and returns it
// once the payload printed its first line ("ready").
func startHusk(t *testing.T, dir string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(e2eHusk(t), args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
		"HOME=" + dir, "TMPDIR=" + dir, "LANG=C"}, fusermountEnv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{
		Uid: e2eUID, Gid: e2eUID}}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// Never written to: a payload may block reading it.
	if _, err := cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if line != "ready\n" {
		t.Fatalf("first line %q, %v\nstderr:\n%s", line, err, &stderr)
	}
	return cmd, &stderr
}

// TestE2EFusermountSignals: SIGTERM to husk reaches the payload, and
// when husk itself is killed (SIGKILL), stage 1 stops the payload and
// stage 3 unmounts the union from the host, syncs and closes the overlay
// within seconds.
func TestE2EFusermountSignals(t *testing.T) {
	e2eNeedUser(t, e2eUser, e2eUID, true)
	e2eNeedFusermount(t)
	sif, dir := e2eSIF(t), e2eDir(t, e2eUID)
	img := filepath.Join(dir, "o.img")
	e2eOK(t, e2eUID, dir, nil, "overlay", "create", "--size", "64", img)
	script := `trap 'echo term > /term; exit 3' TERM; echo ready
		while :; do sleep 0.05; done`

	cmd, stderr := startHusk(t, dir, "exec", "--overlay", img, sif, "sh", "-c", script)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var ee *exec.ExitError
	if err := cmd.Wait(); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("husk after SIGTERM: %v, want exit 3\nstderr:\n%s", err, stderr)
	}
	e2eNoMountsUnder(t, dir)
	e2fsckClean(t, img)

	cmd, stderr = startHusk(t, dir, "exec", "--overlay", img, sif, "sh", "-c",
		"rm /term; "+script)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	// Stage 1 and stage 3 outlive husk.
	e2eWaitGone(t, dir)
	// The stages hold the image's lock until the overlay is closed: a
	// new run waits for nothing and finds the payload's last write.
	r := e2eRun(t, e2eUID, dir, fusermountEnv, "exec", "--overlay", img, sif, "cat", "/term")
	if r.code != 0 || r.stdout != "term\n" {
		t.Errorf("after husk was killed:\n%v\nfirst run's stderr:\n%s", r, stderr)
	}
	e2fsckClean(t, img)
}

// TestE2EFusermountInstance: an instance in fusermount3 mode serves its
// union from stage 3 until it is stopped; joined commands see the
// overlay it writes, and it is clean once stopped.
func TestE2EFusermountInstance(t *testing.T) {
	e2eNeedUser(t, e2eUser, e2eUID, true)
	e2eNeedFusermount(t)
	sif, dir := e2eSIF(t), e2eDir(t, e2eUID)
	img := filepath.Join(dir, "o.img")
	e2eOK(t, e2eUID, dir, nil, "overlay", "create", "--size", "64", img)
	name := "fm" + strings.TrimPrefix(filepath.Base(dir), "e2e-")
	e2eOK(t, e2eUID, dir, fusermountEnv, "instance", "start", "--overlay", img, sif, name)
	t.Cleanup(func() { e2eRun(t, e2eUID, dir, nil, "instance", "stop", name) })
	r := e2eOK(t, e2eUID, dir, nil, "exec", "instance://"+name, "sh", "-c",
		"echo joined > /joined; grep ' / / ' /proc/self/mountinfo")
	if !strings.Contains(r.stdout, "user_id=1500,") {
		t.Errorf("the instance's root is not a fusermount3 mount:\n%v", r)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if !strings.Contains(string(mi), dir+"/husk-") {
		t.Errorf("no fusermount3 mount on the host while the instance runs")
	}
	e2eOK(t, e2eUID, dir, nil, "instance", "stop", name)
	e2eWaitGone(t, dir)
	e2fsckClean(t, img)
	if got := debugfsOwner(t, img, "/upper/joined"); got != "1500 1500" {
		t.Errorf("/upper/joined owned by %s, want 1500 1500", got)
	}
}

// TestE2EFusermountServerKilled: when stage 3 dies, the container gets
// ENOTCONN and husk, once the payload is gone, unmounts the dead mount
// from the host (fusermount3 -u -z) and fails with status 255, saying
// what happened.
func TestE2EFusermountServerKilled(t *testing.T) {
	e2eNeedUser(t, e2eUser, e2eUID, true)
	e2eNeedFusermount(t)
	sif, dir := e2eSIF(t), e2eDir(t, e2eUID)
	// The payload waits in a shell builtin on a pipe: it does not touch the
	// union once it said it is ready, and stays until SIGTERM.
	cmd, stderr := startHusk(t, dir, "exec", sif, "sh", "-c", "echo ready; read x")
	// Each thread lists the children it forked.
	tasks, err := filepath.Glob("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/task/*/children")
	if err != nil {
		t.Fatal(err)
	}
	var children []string
	for _, task := range tasks {
		b, _ := os.ReadFile(task)
		children = append(children, strings.Fields(string(b))...)
	}
	killed := false
	for _, c := range children {
		if b, _ := os.ReadFile("/proc/" + c + "/cmdline"); string(b) == "husk-stage3\x00" {
			n, _ := strconv.Atoi(c)
			killed = syscall.Kill(n, syscall.SIGKILL) == nil
		}
	}
	if !killed {
		t.Fatalf("no stage 3 among husk's children %v", children)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var ee *exec.ExitError
	if err := cmd.Wait(); !errors.As(err, &ee) || ee.ExitCode() != 255 {
		t.Errorf("husk: %v, want exit 255\nstderr:\n%s", err, stderr)
	}
	if !strings.Contains(stderr.String(), "FATAL:   husk's union server was killed by "+
		"signal 9") {
		t.Errorf("stderr:\n%s", stderr)
	}
	e2eNoMountsUnder(t, dir)
}

// TestE2EFusermountKilledWhole: a SIGKILL of every process of a run at
// once (a cgroup kill, as Slurm's scancel does) leaves the union's
// fusermount3 mount on the host, dead: nobody is left to unmount it. The
// next run's sweep of stale sessions detaches it and removes the
// session's directories.
func TestE2EFusermountKilledWhole(t *testing.T) {
	e2eNeedUser(t, e2eUser, e2eUID, true)
	e2eNeedFusermount(t)
	sif, dir := e2eSIF(t), e2eDir(t, e2eUID)
	cmd, _ := startHusk(t, dir, "exec", sif, "sh", "-c", "echo ready; read x")
	all := []int{cmd.Process.Pid}
	for i := 0; i < len(all); i++ {
		all = append(all, childrenOf(all[i], 0)...)
	}
	for _, pid := range all {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	_ = cmd.Wait()
	// The session's lock goes with the last of them.
	waitDead(t, all)
	mounted := func() bool {
		mi, _ := os.ReadFile("/proc/self/mountinfo")
		return strings.Contains(string(mi), dir+"/husk-")
	}
	if !mounted() {
		t.Fatalf("no mount left under %s after killing %d processes: nothing to test", dir,
			len(all))
	}
	// The sweep runs beside the next container's start (a payload that
	// lasts gives it the time), and detaches the dead mount from the
	// host. A mount namespace made before that (this run's own stage 1,
	// on a busy machine) keeps a copy of it, and the directories stay
	// until a later run finds it gone.
	for run := 1; ; run++ {
		r := e2eRun(t, e2eUID, dir, nil, "exec", sif, "sleep", "0.5")
		if r.code != 0 {
			t.Fatalf("run %d after the kill: %v", run, r)
		}
		ents, _ := filepath.Glob(filepath.Join(dir, "husk-*"))
		if !mounted() && len(ents) == 0 {
			break
		}
		if run == 3 {
			e2eNoMountsUnder(t, dir)
			t.Fatalf("after %d runs", run)
		}
	}
}

// waitDead waits (boundedly) until the processes pids are gone or
// zombies, which have let go of their files.
func waitDead(t *testing.T, pids []int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for {
			b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
			if _, state, ok := parseStat(b); err != nil || (ok && state == 'Z') {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("process %d did not die of SIGKILL in 10 s", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
