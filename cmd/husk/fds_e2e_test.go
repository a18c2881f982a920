package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The descriptors husk's caller leaves open above stderr reach the command
// at the same numbers, as in Apptainer (a shell's `3<file`, Slurm's PMI_FD
// for `srun --mpi=pmi2`), with their O_NONBLOCK as it was, gaps closed;
// and a pipe's reader sees its end when the command closes it, while the
// container still runs, not when husk exits. With --fakeroot and with a
// seccomp profile (whose shim closes its own descriptors) too, and for a
// command joining an instance, which gets them through the join socket.
func TestInheritedDescriptors(t *testing.T) {
	setup(t)
	// What the test binary itself inherited open would reach husk and the
	// command too (a CI runner's, a shell's): not this test's to count.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	img, dir := debianSIF(t), workDir(t)
	file := filepath.Join(dir, "three")
	if err := os.WriteFile(file, []byte("from fd 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	profile := filepath.Join(dir, "seccomp.json")
	if err := os.WriteFile(profile, []byte(`{"defaultAction":"SCMP_ACT_ALLOW",`+
		`"syscalls":[{"names":["mknod"],"action":"SCMP_ACT_ERRNO"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		flags []string
	}{{"plain", nil}, {"fakeroot", []string{"--fakeroot"}},
		{"seccomp", []string{"--security", "seccomp:" + profile}}} {
		t.Run(c.name, func(t *testing.T) {
			inheritedDescriptors(t, dir, img, file, c.flags, nil)
		})
	}
	t.Run("instance", func(t *testing.T) {
		cfg := []string{"HUSK_CONFIGDIR=" + filepath.Join(dir, "cfg")}
		if r := huskEnv(t, dir, cfg, "instance", "start", img, "fds"); r.code != 0 {
			t.Fatalf("instance start:\n%s", r)
		}
		t.Cleanup(func() { huskEnv(t, dir, cfg, "instance", "stop", "fds") })
		inheritedDescriptors(t, dir, "instance://fds", file, nil, cfg)
	})
}

func inheritedDescriptors(t *testing.T, dir, img, file string, flags, env []string) {
	three, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer three.Close()
	// fd 7: the command writes a line and closes it; the test reads to its
	// end. Non-blocking, which the command must see as it was.
	var out [2]int
	if err := unix.Pipe2(out[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	if err := unix.SetNonblock(out[1], true); err != nil {
		t.Fatal(err)
	}
	// os.NewFile of a non-blocking descriptor leaves it non-blocking when
	// exec passes it on.
	outR, outW := os.NewFile(uintptr(out[0]), "out-r"), os.NewFile(uintptr(out[1]), "out-w")
	defer outR.Close()
	defer outW.Close()
	// fd 8: the command waits for a line on it before it exits.
	goR, goW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer goR.Close()
	defer goW.Close()

	script := `cat <&3
for n in 4 5 6 9 10 11 12 13 14 15 16 17 18 19 20; do
	[ -e /proc/$$/fd/$n ] && echo "open: $n"
done
grep '^flags' /proc/self/fdinfo/7 >&7
exec 7>&-
read line <&8
echo "released: $line"`
	args := append(append([]string{"exec"}, flags...), img, "sh", "-c", script)
	cmd := userCmd(dir, args...)
	cmd.Env = append(cmd.Env, env...)
	cmd.ExtraFiles = []*os.File{three, nil, nil, nil, outW, goR}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	outW.Close()
	goR.Close()

	// The line from fd 7, then its end, while the command still waits.
	lines := make(chan []string, 1)
	go func() {
		var got []string
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			got = append(got, sc.Text())
		}
		lines <- got
	}()
	var got []string
	select {
	case got = <-lines:
	case err := <-exited:
		t.Fatalf("husk exited (%v) before fd 7 ended\nstdout:\n%s\nstderr:\n%s",
			err, &stdout, &stderr)
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("fd 7 did not end after the command closed it\nstdout:\n%s\nstderr:\n%s",
			&stdout, &stderr)
	}
	if len(got) != 1 || !strings.HasPrefix(got[0], "flags:") {
		t.Fatalf("fd 7 said %q, want its fdinfo flags", got)
	}
	fl, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(got[0], "flags:")),
		8, 64)
	if err != nil {
		t.Fatalf("fd 7 flags %q: %v", got[0], err)
	}
	if fl&unix.O_NONBLOCK == 0 || fl&unix.O_ACCMODE != unix.O_WRONLY {
		t.Errorf("fd 7 in the command: flags %o, want write-only and O_NONBLOCK", fl)
	}
	if _, err := io.WriteString(goW, "go\n"); err != nil {
		t.Fatal(err)
	}
	goW.Close()
	if err := <-exited; err != nil {
		t.Fatalf("husk: %v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
	}
	// No other descriptor is open in the command: 4-6 were gaps.
	if want := "from fd 3\nreleased: go\n"; stdout.String() != want {
		t.Errorf("stdout %q, want %q\nstderr:\n%s", &stdout, want, &stderr)
	}
}

// A descriptor too close to the hard limit on open files for the command's
// start to place it is left out with a warning; one further down still
// arrives. Passed on, the first had failed the run ("bad file
// descriptor"), in stage 0 or in stage 2.
func TestInheritedDescriptorsNearLimit(t *testing.T) {
	setup(t)
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	img, dir := debianSIF(t), workDir(t)
	file := filepath.Join(dir, "three")
	if err := os.WriteFile(file, []byte("from fd 100\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := userCmd(dir, "-c", `ulimit -n 256 && exec "$HUSK" exec "$IMG" sh -c `+
		`'cat /proc/self/fd/100; [ -e /proc/$$/fd/250 ] && echo leaked; exit 0'`)
	cmd.Path, cmd.Args[0] = "/bin/sh", "sh"
	cmd.Env = append(cmd.Env, "HUSK="+huskBin, "IMG="+img)
	cmd.ExtraFiles = make([]*os.File, 248)
	cmd.ExtraFiles[97], cmd.ExtraFiles[247] = f, f // fds 100 and 250
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("husk: %v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
	}
	if stdout.String() != "from fd 100\n" {
		t.Errorf("stdout %q, want the file from fd 100 only", &stdout)
	}
	if !strings.Contains(stderr.String(), "descriptor 250 is not passed to the container") {
		t.Errorf("no warning about descriptor 250; stderr:\n%s", &stderr)
	}
}

// A command joining an instance runs under its caller's resource limits,
// as Apptainer's joined command (the caller's child) does, up to the
// instance's hard limits; and a descriptor above what the instance's
// limit on open files lets the command have is left out with a warning,
// not failing the join ("bad file descriptor").
func TestJoinLimits(t *testing.T) {
	setup(t)
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	img, dir := debianSIF(t), workDir(t)
	cfg := "HUSK_CONFIGDIR=" + filepath.Join(dir, "cfg")
	var extra []*os.File // the next sh's descriptors from 3 on
	sh := func(script string) result {
		t.Helper()
		cmd := userCmd(dir, "-c", script)
		cmd.Path, cmd.Args[0] = "/bin/sh", "sh"
		cmd.Env = append(cmd.Env, "HUSK="+huskBin, "IMG="+img, cfg)
		cmd.ExtraFiles, extra = extra, nil
		return runCmd(t, cmd)
	}
	if r := sh(`ulimit -n 1024 && exec "$HUSK" instance start "$IMG" lim`); r.code != 0 {
		t.Fatalf("instance start:\n%s", r)
	}
	t.Cleanup(func() { sh(`exec "$HUSK" instance stop lim`) })

	r := sh(`ulimit -n 500 && ulimit -Sv 4000000 && ulimit -c 0 && ` +
		`exec "$HUSK" exec instance://lim sh -c 'ulimit -n; ulimit -Sv; ulimit -c'`)
	if r.code != 0 || r.stdout != "500\n4000000\n0\n" {
		t.Errorf("caller's limits in the joined command: want 500, 4000000, 0\n%s", r)
	}
	// A soft limit on open files below the hard one, which the Go runtime
	// raises in husk itself: the command gets the caller's (select(2)
	// wants 1024 or less), and the instance's hard limit, the lower.
	r = sh(`ulimit -Sn 100 && exec "$HUSK" exec instance://lim sh -c 'ulimit -Sn; ulimit -Hn'`)
	if r.code != 0 || r.stdout != "100\n1024\n" {
		t.Errorf("caller's soft limit on open files: want 100, 1024\n%s", r)
	}
	// The caller's hard limit on open files is above the instance's: the
	// joined command keeps the instance's, and fd 1020 is too high for it.
	f, err := os.Open("/etc/hostname")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	extra = make([]*os.File, 1018)
	extra[0], extra[1017] = f, f // fds 3 and 1020
	r = sh(`exec "$HUSK" exec instance://lim sh -c ` +
		`'ulimit -Hn; [ -e /proc/$$/fd/1020 ] && echo leaked; wc -c <&3'`)
	want := fmt.Sprintf("1024\n%d\n", hostnameSize(t))
	if r.code != 0 || r.stdout != want {
		t.Errorf("join with fds 3 and 1020 under the instance's 1024: want %q\n%s", want, r)
	}
	if !strings.Contains(r.stderr, "descriptor 1020 is not passed to the container") {
		t.Errorf("no warning about fd 1020:\n%s", r.stderr)
	}
}

// hostnameSize is the size of the host's /etc/hostname.
func hostnameSize(t *testing.T) int64 {
	st, err := os.Stat("/etc/hostname")
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// TestLowFileLimit: a limit on open files too low to start a container is
// one FATAL line that names the limit and the one husk needs, before
// anything starts (below about 24, stage 1's Go start-up had panicked in
// go-fuse; below 20, pipes and the fork of stage 1 had failed with a bare
// "too many open files").
func TestLowFileLimit(t *testing.T) {
	setup(t)
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	img, dir := debianSIF(t), workDir(t)
	for _, n := range []string{"12", "20", "40"} {
		cmd := userCmd(dir, "-c", `ulimit -n `+n+` && exec "$HUSK" exec "$IMG" true`)
		cmd.Path, cmd.Args[0] = "/bin/sh", "sh"
		cmd.Env = append(cmd.Env, "HUSK="+huskBin, "IMG="+img,
			"HUSK_CONFIGDIR="+filepath.Join(dir, "cfg"))
		fatalLine(t, runCmd(t, cmd), "the limit on open files is "+n+
			", too low to start a container: husk needs 64 (raise it with ulimit -n)")
	}
}

// TestLowProcessLimit: a limit on processes (which counts threads) too
// low for husk's own is refused in one line before anything starts; a
// stage's Go runtime had died of a failed pthread_create with hundreds of
// lines of trace.
func TestLowProcessLimit(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	for _, n := range []string{"20", "40"} {
		cmd := userCmd(dir, "-c", `ulimit -u `+n+` && exec "$HUSK" exec "$IMG" true`)
		cmd.Path, cmd.Args[0] = "/bin/bash", "bash"
		cmd.Env = append(cmd.Env, "HUSK="+huskBin, "IMG="+img,
			"HUSK_CONFIGDIR="+filepath.Join(dir, "cfg"))
		r := runCmd(t, cmd)
		fatalLine(t, r, "the limit on processes is "+n+" and ",
			"too few left to start a container, which needs 48 (raise it with ulimit -u)")
		if lines := strings.Count(r.stderr, "\n"); lines != 1 {
			t.Errorf("ulimit -u %s: %d lines of error:\n%s", n, lines, r.stderr)
		}
	}
	// A join is refused the same way (its stage 2 runs under the caller's
	// limits; a Go trace had ended it, sometimes after its command ran).
	cfg := "HUSK_CONFIGDIR=" + filepath.Join(dir, "cfg")
	if r := huskEnv(t, dir, []string{cfg}, "instance", "start", img, "lowu"); r.code != 0 {
		t.Fatalf("instance start: %s", r)
	}
	defer huskEnv(t, dir, []string{cfg}, "instance", "stop", "lowu")
	// Room for the joining husk's own threads, not for the stage too.
	lim := strconv.Itoa(userThreads(t, testUID) + 20)
	join := userCmd(dir, "-c", `ulimit -u `+lim+` && exec "$HUSK" exec instance://lowu true`)
	join.Path, join.Args[0] = "/bin/bash", "bash"
	join.Env = append(join.Env, "HUSK="+huskBin, cfg)
	fatalLine(t, runCmd(t, join), "the limit on processes is "+lim+" and ",
		"(raise it with ulimit -u)")
	// A limit that leaves enough starts.
	cmd := userCmd(dir, "-c", `ulimit -u 300 && exec "$HUSK" exec "$IMG" true`)
	cmd.Path, cmd.Args[0] = "/bin/bash", "bash"
	cmd.Env = append(cmd.Env, "HUSK="+huskBin, "IMG="+img,
		"HUSK_CONFIGDIR="+filepath.Join(dir, "cfg"))
	if r := runCmd(t, cmd); r.code != 0 {
		t.Errorf("ulimit -u 300: %s", r)
	}
}

// userThreads counts the threads of uid's processes.
func userThreads(t *testing.T, uid int) int {
	t.Helper()
	paths, _ := filepath.Glob("/proc/[0-9]*/status")
	n := 0
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		mine := false
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			switch {
			case len(f) > 1 && f[0] == "Uid:":
				mine = f[1] == strconv.Itoa(uid)
			case len(f) > 1 && f[0] == "Threads:" && mine:
				k, _ := strconv.Atoi(f[1])
				n += k
			}
		}
	}
	return n
}
