// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSignalForwarded: SIGTERM sent to husk reaches the payload, whose
// trap decides the exit status.
func TestSignalForwarded(t *testing.T) {
	e := newEnv(t)
	h := e.helper("run", e.spec("sh", "-c",
		`trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.05; done`))
	stdout, err := h.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	h.cmd.Stderr = &stderr
	h.start()
	r := bufio.NewReader(stdout)
	line, err := r.ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("first line %q, %v; stderr:\n%s", line, err, stderr.String())
	}
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rest, _ := r.ReadString(0)
	res := h.wait(&stderr)
	if res.Err != "" || res.Status != 7 {
		t.Errorf("status %d, error %q, want 7", res.Status, res.Err)
	}
	if rest != "got TERM\n" {
		t.Errorf("output after SIGTERM %q, want %q", rest, "got TERM\n")
	}
	e.checkClean()
}

// TestLeftoversKilled: background processes die when the payload exits,
// including one that ignores SIGTERM, before Run returns and before the
// union is unmounted (the Mounter's Unmount runs and succeeds); with a
// PID namespace too, and with one but no /proc in the container.
func TestLeftoversKilled(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pid     bool
		noMount []string
	}{
		{"plain", false, nil},
		{"pid", true, nil},
		{"pid without proc", true, []string{"proc"}},
		{"without proc", false, []string{"proc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			log := filepath.Join(e.userDir("log"), "unmount")
			// A duration of this test process's own: other test runs on
			// the machine start sleeps of theirs.
			marker := strconv.Itoa(1000000 + os.Getpid())
			s := e.spec("sh", "-c", `
				sleep `+marker+` &
				sh -c 'trap "" TERM; exec sleep `+marker+`' &
				sleep 0.2`)
			s.PID, s.NoMount = tc.pid, tc.noMount
			s.Union = unionJSON(testUnion{Tree: testTree, Log: log})
			ok(t, e.run(s))
			if pids := findProcesses("sleep\x00" + marker + "\x00"); len(pids) > 0 {
				t.Errorf("background processes still run: %v", pids)
			}
			if b, err := os.ReadFile(log); err != nil || string(b) != "unmounted\n" {
				t.Errorf("Mounted.Unmount log: %q, %v", b, err)
			}
		})
	}
}

// findProcesses lists the host processes whose command line is cmdline,
// each as its pid with the State, PPid, NSpid and Uid lines of its
// status file, so that a failure shows where the process lives.
func findProcesses(cmdline string) []string {
	ents, _ := os.ReadDir("/proc")
	var pids []string
	for _, e := range ents {
		if b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil &&
			string(b) == cmdline {
			pids = append(pids, e.Name()+" "+statusSummary(e.Name()))
		}
	}
	return pids
}

// statusSummary is the State, PPid, NSpid and Uid of a process, from
// /proc/<pid>/status.
func statusSummary(pid string) string {
	b, _ := os.ReadFile("/proc/" + pid + "/status")
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		for _, k := range []string{"State:", "PPid:", "NSpid:", "Uid:"} {
			if strings.HasPrefix(line, k) {
				out = append(out, strings.Join(strings.Fields(line), " "))
			}
		}
	}
	return "(" + strings.Join(out, "; ") + ")"
}

// TestCommandErrors: a command that cannot be started fails the run with
// status 255 and one clear line.
func TestCommandErrors(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"no-such-command"},
			"exec no-such-command failed: executable file not found in $PATH"},
		{[]string{"/no/such/file"},
			"exec /no/such/file failed: no such file or directory: " +
				"/no/such/file does not exist in the container"},
		{[]string{"/etc/passwd"}, "exec /etc/passwd failed: permission denied"},
	} {
		t.Run(tc.args[0], func(t *testing.T) {
			res := e.run(e.spec(tc.args...))
			if res.Status != 255 || !strings.HasPrefix(res.Err, tc.want) {
				t.Errorf("status %d, error %q; want 255, %q", res.Status, res.Err, tc.want)
			}
			if strings.Contains(res.Err, "\n") {
				t.Errorf("error is not one line: %q", res.Err)
			}
		})
	}
}

// TestNamespaces: --pid gives the payload PID 2 under stage 2 and a /proc
// of its own; --hostname sets the host name and /etc/hostname; the plain
// case shares the host's PID namespace.
func TestNamespaces(t *testing.T) {
	e := newEnv(t)
	// Stage 2 is PID 1 (its threads take the next pids, so the payload's
	// pid is small but not 2); /proc lists stage 2 and the shell only.
	s := e.spec("sh", "-c", `cat /proc/1/cmdline; echo
		n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo $n
		cat /proc/sys/kernel/hostname /etc/hostname`)
	s.PID, s.Hostname = true, "husk-test"
	out := strings.Fields(strings.ReplaceAll(ok(t, e.run(s)), "\x00", ""))
	if len(out) != 4 || out[0] != "husk-stage2" || out[1] != "2" ||
		out[2] != "husk-test" || out[3] != "husk-test" {
		t.Fatalf("pid 1, process count, hostname, /etc/hostname = %q", out)
	}

	out = strings.Fields(ok(t, e.run(e.spec("sh", "-c", "echo $$"))))
	if len(out) != 1 || atoi(t, out[0]) <= 2 {
		t.Errorf("pid without --pid: %q", out)
	}
}

// TestWorkDir: a missing working directory falls back to home with a
// warning, unless it was given with --pwd.
func TestWorkDir(t *testing.T) {
	e := newEnv(t)
	s := e.spec("sh", "-c", "pwd")
	s.Cwd = "/no/such/dir"
	res := e.run(s)
	if got := ok(t, res); got != e.home+"\n" {
		t.Errorf("pwd %q, want home %q", got, e.home)
	}
	if !strings.Contains(res.Stderr, "cannot use working directory /no/such/dir") {
		t.Errorf("no warning in stderr:\n%s", res.Stderr)
	}

	s.CwdExplicit = true
	res = e.run(s)
	if res.Status != 255 || !strings.HasPrefix(res.Err, "failed to set working directory") {
		t.Errorf("status %d, error %q", res.Status, res.Err)
	}
}

// TestPasswd: the container's passwd and group get an entry for the user
// with the container home (COMPAT 7.3).
func TestPasswd(t *testing.T) {
	e := newEnv(t)
	out := ok(t, e.run(e.spec("cat", "/etc/passwd", "/etc/group")))
	for _, want := range []string{
		"root:x:0:0:root:/root:/bin/sh\n",
		"nobody:x:65534:65534:nobody:" + e.home + ":/usr/sbin/nologin\n",
		"nogroup:x:65534:nobody\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}

	s := e.spec("cat", "/etc/passwd")
	s.Fakeroot = true
	out = ok(t, e.run(s))
	if out != "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/sh\n" {
		t.Errorf("fakeroot passwd:\n%s", out)
	}
}

// TestImageFiles: the files given to Run reach the Mounter, and only
// there.
func TestImageFiles(t *testing.T) {
	e := newEnv(t)
	f := filepath.Join(e.dir, "image")
	writeFile(t, f, "image bytes\n")
	s := e.spec("sh", "-c", "cat /husk-file-0; ls /proc/self/fd")
	s.Files = 1
	// No fd of the stages leaks into the payload: ls sees 0-2 and its own.
	if out := ok(t, e.run(s, f)); out != "image bytes\n0\n1\n2\n3\n" {
		t.Errorf("got %q", out)
	}
}

// TestMountFailure: a union that cannot be mounted fails the run; when
// /dev/fuse is not accessible the message says how to fix it.
func TestMountFailure(t *testing.T) {
	e := newEnv(t)
	dev := filepath.Join(e.dir, "fuse")
	if err := os.WriteFile(dev, nil, 0o600); err != nil { // root's, like /dev/fuse here
		t.Fatal(err)
	}
	s := e.spec("true")
	s.Union = unionJSON(testUnion{Fail: true, FuseDevice: dev})
	res := e.run(s)
	want := "mounting the container: " + dev + " is not accessible (permission denied): " +
		"ask your administrator to make it mode 0666, the distribution default " +
		"(chmod 0666 " + dev + ")"
	if res.Status != 255 || res.Err != want {
		t.Errorf("status %d, error %q, want 255 and %q", res.Status, res.Err, want)
	}

	s.Union = unionJSON(testUnion{Panic: true})
	res = e.run(s)
	want = "mounting the container: sandbox: Mounter panicked: test mounter panics"
	if res.Status != 255 || res.Err != want {
		t.Errorf("status %d, error %q, want 255 and %q", res.Status, res.Err, want)
	}
}

// TestMountpointFailure: a missing bind destination that the union cannot
// create is skipped with Apptainer's warning; a missing home is fatal.
func TestMountpointFailure(t *testing.T) {
	e := newEnv(t)
	s := e.spec("true")
	s.Union = unionJSON(testUnion{Tree: testTree, NoMountpoints: true})
	s.Binds = []Bind{{Src: e.wd, Dst: "/no/such/dst"}}
	s.NoHome = true
	res := e.run(s)
	ok(t, res)
	if !strings.Contains(res.Stderr, "Skipping mount "+e.wd+" [binds]: /no/such/dst "+
		"doesn't exist in container") {
		t.Errorf("no warning:\n%s", res.Stderr)
	}

	// A destination below a host directory bound in: not created there.
	s.Union = unionJSON(testUnion{Tree: testTree})
	hostDst := filepath.Join(e.dir, "not-on-host", "x")
	s.Binds = []Bind{{Src: e.wd, Dst: hostDst}}
	res = e.run(s)
	ok(t, res)
	if !strings.Contains(res.Stderr, "Skipping mount "+e.wd+" [binds]: "+hostDst) {
		t.Errorf("no warning:\n%s", res.Stderr)
	}
	if _, err := os.Stat(filepath.Dir(hostDst)); err == nil {
		t.Errorf("mount point created on the host: %s", hostDst)
	}

	// A directory onto a file and a file onto a directory: named as the
	// container sees them, not by the staging directory they are bound in.
	file := filepath.Join(e.dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ src, dst, what string }{
		{e.wd, "/etc/passwd", "a directory onto a file"},
		{file, "/etc", "a file onto a directory"},
	} {
		s.Binds = []Bind{{Src: c.src, Dst: c.dst}}
		res = e.run(s)
		want := "bind " + c.src + " to " + c.dst + " [binds]: cannot bind " + c.what
		if res.Status != 255 || !strings.HasSuffix(res.Err, want) {
			t.Errorf("status %d, error %q, want 255 and %q", res.Status, res.Err, want)
		}
	}

	// A destination that cannot be resolved (through another user's
	// /proc entry): named as given, not by husk's staging directory.
	s.Binds = []Bind{{Src: e.wd, Dst: "/proc/1/root/x"}}
	res = e.run(s)
	want := "mount destination /proc/1/root/x [binds]: "
	if res.Status != 255 || !strings.Contains(res.Err, want) || strings.Contains(res.Err, e.tmp) {
		t.Errorf("status %d, error %q", res.Status, res.Err)
	}

	// /proc/self and /proc/PID, set up, are husk's processes' entries.
	for _, dst := range []string{"/proc/self", "/proc/thread-self/fd", "/proc/1"} {
		s.Binds = []Bind{{Src: e.wd, Dst: dst}}
		res = e.run(s)
		want := "mount destination " + dst + " [binds]: cannot bind onto a process's " +
			"/proc entry"
		if res.Status != 255 || !strings.Contains(res.Err, want) {
			t.Errorf("%s: status %d, error %q, want 255 and %q", dst, res.Status, res.Err, want)
		}
	}
	// The same through a link, as older images' /etc/mtab is, and one
	// that leaves /proc again: /dev/stdin is /proc/self/fd/0, which led
	// to stage 1's stdin, and a host file bound there got every write to
	// the container's /dev/null.
	s.Union = unionJSON(testUnion{Tree: testTree, Links: map[string]string{
		"etc/mtab": "../proc/self/mounts", "in": "/proc/self/fd/0",
		"in2": "/nonexist/../proc/self/fd/0"}})
	for _, dst := range []string{"/etc/mtab", "/in", "/in2"} {
		s.Binds = []Bind{{Src: file, Dst: dst}}
		res = e.run(s)
		want := "mount destination " + dst + " [binds]: cannot bind onto a process's " +
			"/proc entry"
		if res.Status != 255 || !strings.Contains(res.Err, want) {
			t.Errorf("%s: status %d, error %q, want 255 and %q", dst, res.Status, res.Err,
				want)
		}
	}

	// Home is under /tmp: without the /tmp bind it must be created.
	s.Union = unionJSON(testUnion{Tree: testTree, NoMountpoints: true})
	s.Binds, s.NoHome, s.NoMount = nil, false, []string{"tmp"}
	res = e.run(s)
	if res.Status != 255 || !strings.Contains(res.Err, "can't create home destination") {
		t.Errorf("status %d, error %q", res.Status, res.Err)
	}
}

// TestNoUserNamespaces: with user namespaces disabled the run fails with
// the sysctl to change. The helper runs as root of a user namespace of
// its own where it sets user.max_user_namespaces to 0: the limit applies
// to that namespace and below only, the host is untouched.
func TestNoUserNamespaces(t *testing.T) {
	e := newEnv(t)
	h := e.helper("nouserns", e.spec("true"))
	h.cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: testUID, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: testGID, Size: 1}},
		// Become the mapped root; host root is unmapped in there.
		Credential: &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: true},
	}
	var stderr strings.Builder
	h.cmd.Stderr = &stderr
	h.start()
	res := h.wait(&stderr)
	want := "cannot create a user namespace: user namespaces are disabled " +
		"(/proc/sys/user/max_user_namespaces is 0)"
	if res.Status != 255 || !strings.HasPrefix(res.Err, want) {
		t.Errorf("status %d, error %q, want 255, %q", res.Status, res.Err, want)
	}
	e.checkClean()
}

// TestSignalDuringStartup sends SIGTERM to husk's whole process group (as
// a ^C or a job killer does) at moments spread over the container's
// start-up. Each run must end as the command's death by that signal: a
// stage that got it before it could catch signals used to die of it,
// and husk reported its supervisor or reaper killed (exit 255). A helper
// killed before Run began is no sample.
func TestSignalDuringStartup(t *testing.T) {
	e := newEnv(t)
	samples := 0
	for i := range 16 {
		h := e.helper("run", e.spec("sleep", "5"))
		if h.cmd.SysProcAttr == nil {
			h.cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		h.cmd.SysProcAttr.Setpgid = true
		var stderr strings.Builder
		h.cmd.Stderr = &stderr
		h.start()
		time.Sleep(time.Duration(i) * 4 * time.Millisecond)
		if err := syscall.Kill(-h.cmd.Process.Pid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		var res helperResult
		derr := json.NewDecoder(h.resR).Decode(&res)
		werr := h.cmd.Wait()
		if derr != nil {
			if ws, ok := h.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				continue // killed before Run caught signals
			}
			t.Fatalf("delay %dms: no result (%v, %v); stderr:\n%s", i*4, derr, werr,
				stderr.String())
		}
		samples++
		if res.Err != "" || res.Status != -int(syscall.SIGTERM) {
			t.Errorf("delay %dms: status %d, error %q, want %d; stderr:\n%s", i*4,
				res.Status, res.Err, -syscall.SIGTERM, stderr.String())
		}
	}
	if samples < 8 {
		t.Errorf("only %d of 16 runs got past the helper's start", samples)
	}
	e.checkClean()
}

// TestSignalAtSessionDir: a SIGTERM the moment the session directory
// appears ends the run without leaving the directory behind for a later
// run's sweep (husk caught no signals yet there, and died of it).
func TestSignalAtSessionDir(t *testing.T) {
	e := newEnv(t)
	in, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(in)
	if _, err := unix.InotifyAddWatch(in, e.tmp, unix.IN_CREATE); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for i := range 10 {
		h := e.helper("run", e.spec("sleep", "5"))
		h.start()
		if _, err := unix.Read(in, buf); err != nil { // the session directory
			t.Fatal(err)
		}
		if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		h.cmd.Wait()
		ents, _ := os.ReadDir(e.tmp)
		for _, ent := range ents {
			t.Errorf("run %d: left behind in TMPDIR: %s", i, ent.Name())
		}
		for drained := false; !drained; { // the directory's removal, and others
			fds := []unix.PollFd{{Fd: int32(in), Events: unix.POLLIN}}
			n, _ := unix.Poll(fds, 0)
			if drained = n <= 0; !drained {
				unix.Read(in, buf)
			}
		}
	}
}

// TestStopContinue: without a terminal, SIGTSTP sent to husk stops the
// command and husk itself (as Apptainer's master), and SIGCONT resumes
// both; it used to stop husk alone while the command ran on. husk runs
// in a session of its own, as a batch job does: its process group is
// orphaned, where the kernel drops a SIGTSTP that would stop a process.
func TestStopContinue(t *testing.T) {
	e := newEnv(t)
	h := e.helper("run", e.spec("sh", "-c",
		`echo ready; while :; do echo tick; sleep 0.02; done`))
	h.cmd.SysProcAttr.Setsid = true
	stdout, err := h.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	h.cmd.Stderr = &stderr
	h.start()
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	if l := <-lines; l != "ready" {
		t.Fatalf("first line %q; stderr:\n%s", l, stderr.String())
	}
	count := func(d time.Duration) int {
		n := 0
		for end := time.After(d); ; {
			select {
			case <-lines:
				n++
			case <-end:
				return n
			}
		}
	}
	state := func() byte {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(h.cmd.Process.Pid) + "/stat")
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 || i+2 >= len(b) {
			return '?'
		}
		return b[i+2]
	}
	must := func(sig syscall.Signal) {
		if err := h.cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
	}
	must(syscall.SIGTSTP)
	time.Sleep(200 * time.Millisecond)
	count(50 * time.Millisecond) // what was under way
	if n := count(300 * time.Millisecond); n > 0 {
		t.Errorf("the command printed %d lines after SIGTSTP", n)
	}
	if s := state(); s != 'T' {
		t.Errorf("husk's state after SIGTSTP: %c, want T (stopped)", s)
	}
	must(syscall.SIGCONT)
	if n := count(300 * time.Millisecond); n == 0 {
		t.Error("the command did not resume after SIGCONT")
	}
	must(syscall.SIGTERM)
	for range lines {
	}
	if res := h.wait(&stderr); res.Err != "" || res.Status != -int(syscall.SIGTERM) {
		t.Errorf("status %d, error %q, want %d", res.Status, res.Err, -syscall.SIGTERM)
	}
	e.checkClean()
}
