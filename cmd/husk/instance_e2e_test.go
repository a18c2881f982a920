package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// An instance runs its startscript, keeps its overlay open alone, runs
// joined commands in the same union, and leaves the overlay clean when
// stopped; a killed instance's record is cleaned up by the next list.
func TestInstanceLifecycle(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	ov := overlayImg(t, dir, "--create-dir", "/data")
	meta := metaOverlay(t, dir, map[string]string{
		"startscript": "#!/bin/sh\necho \"started $1 $APPTAINER_INSTANCE\" > /data/started\n",
	})
	cfg := []string{"HUSK_CONFIGDIR=" + filepath.Join(dir, "cfg")}
	h := func(args ...string) result { return huskEnv(t, dir, cfg, args...) }
	mustOK := func(args ...string) result {
		t.Helper()
		r := h(args...)
		if r.code != 0 {
			t.Fatalf("husk %s:\n%s", strings.Join(args, " "), r)
		}
		return r
	}

	r := mustOK("instance", "start", "--overlay", meta, "--overlay", ov, img, "web", "arg1")
	// A failing check must not leave the instance running.
	t.Cleanup(func() { h("instance", "stop", "--all") })
	if !strings.Contains(r.stderr, "instance started successfully") {
		t.Errorf("start: %s", r)
	}
	if r := h("instance", "start", img, "web"); r.code != 255 ||
		!strings.Contains(r.stderr, "instance web already exists") {
		t.Errorf("second start: %s", r)
	}
	r = mustOK("instance", "list", "--json")
	var list struct {
		Instances []map[string]any `json:"instances"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list.Instances) != 1 {
		t.Fatalf("list --json: %v\n%s", err, r.stdout)
	}
	in := list.Instances[0]
	for _, k := range []string{"instance", "pid", "img", "ip", "logErrPath", "logOutPath"} {
		if _, ok := in[k]; !ok {
			t.Errorf("list --json lacks %q: %v", k, in)
		}
	}
	if in["instance"] != "web" || in["img"] != img {
		t.Errorf("list --json: %v", in)
	}
	r = mustOK("instance", "list")
	if !strings.HasPrefix(r.stdout, "INSTANCE NAME") || !strings.Contains(r.stdout, "web") {
		t.Errorf("list: %q", r.stdout)
	}

	// Joined commands see the startscript's file and write to the union.
	// `instance start` returns once the startscript runs, not once it is
	// done: wait (boundedly) for its file to be written (echo writes it
	// in one write).
	r = mustOK("exec", "instance://web", "sh", "-c", "i=0; while [ ! -s /data/started ] && "+
		"[ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; cat /data/started")
	if r.stdout != "started arg1 web\n" {
		t.Errorf("startscript output %q", r.stdout)
	}
	// Flags that shape a container are named as ignored; those a join
	// acts on (--env, --pwd) are not, and apply.
	r = mustOK("exec", "--bind", "/etc:/mnt", "--writable-tmpfs", "--env", "J=1",
		"--pwd", "/data", "instance://web", "sh", "-c", "echo joined > x; echo $J")
	if r.stdout != "1\n" || !strings.Contains(r.stderr, "WARNING: instance://web is "+
		"already running; ignoring --bind, --writable-tmpfs (they apply when a "+
		"container starts)") || strings.Contains(r.stderr, "--env") {
		t.Errorf("join with container flags: %s", r)
	}
	// --containall's --cleanenv applies to a join, without a warning.
	r = mustOK("exec", "--env", "K=1", "-C", "instance://web", "sh", "-c",
		"echo ${K}${USER_PATH:-clean}")
	if r.stdout != "1clean\n" || strings.Contains(r.stderr, "WARNING") {
		t.Errorf("join with --containall: %s", r)
	}
	// The joining husk's start-up ends once the instance has the command
	// (sandbox.AfterStartup: its collector runs from then on).
	if r := mustOK("--debug", "exec", "instance://web", "true"); !strings.Contains(r.stderr,
		"start-up over") {
		t.Errorf("a join logs no end of its start-up: %s", r)
	}
	if r := h("exec", "instance://web", "sh", "-c", "cat /data/x; exit 3"); r.code != 3 ||
		r.stdout != "joined\n" {
		t.Errorf("exit status through the join: %s", r)
	}
	// --keep-privs needs root in the container; this instance has no
	// --fakeroot (TestInstanceFakerootKeepPrivs has one).
	fatalLine(t, h("exec", "--keep-privs", "instance://web", "true"),
		"--keep-privs requires root privileges")
	if r := h("exec", "instance://nope", "true"); r.code != 255 ||
		!strings.Contains(r.stderr, "no instance found with name nope") {
		t.Errorf("unknown instance: %s", r)
	}

	// SIGTERM to the joining husk reaches the joined command.
	cmd := userCmd(dir, "exec", "instance://web", "sh", "-c",
		"trap 'echo got-term; exit 7' TERM; echo ready; sleep 100 & wait")
	cmd.Env = append(cmd.Env, cfg...)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(stdout, buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("joined command: %q %v", buf, err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	rest, _ := io.ReadAll(stdout)
	if err := cmd.Wait(); cmd.ProcessState.ExitCode() != 7 || string(rest) != "got-term\n" {
		t.Errorf("SIGTERM through the join: %v %q", err, rest)
	}

	r = mustOK("instance", "stop", "web")
	if !strings.Contains(r.stderr, "Stopping web instance of "+img) {
		t.Errorf("stop: %s", r)
	}
	if r := mustOK("instance", "list"); strings.Contains(r.stdout, "web") {
		t.Errorf("list after stop: %q", r.stdout)
	}
	fsckClean(t, ov, 0)
	if out := tool(t, "debugfs", "-R", "cat /upper/data/x", ov); !strings.Contains(out,
		"joined") {
		t.Errorf("/upper/data/x after stop: %q", out)
	}

	// SIGKILL the daemon: the record goes stale and list removes it.
	pidFile := filepath.Join(dir, "doomed.pid")
	mustOK("instance", "start", "--pid-file", pidFile, "--overlay", ov, img, "doomed")
	ip := filepath.Join(dir, "cfg", "instances", "app")
	recs, _ := filepath.Glob(filepath.Join(ip, "*", testUser, "doomed", "doomed.json"))
	if len(recs) != 1 {
		t.Fatalf("record of doomed: %v", recs)
	}
	b, _ := os.ReadFile(recs[0])
	var rec instanceRecord
	if err := json.Unmarshal(b, &rec); err != nil || rec.PPid <= 0 || rec.Pid <= 0 {
		t.Fatalf("record %s: %v", b, err)
	}
	if b, err := os.ReadFile(pidFile); err != nil || string(b) != fmt.Sprintf("%d\n",
		rec.Pid) {
		t.Errorf("--pid-file holds %q (%v), want %d", b, err, rec.Pid)
	}
	syscall.Kill(rec.PPid, syscall.SIGKILL)
	for daemonAlive(rec.PPid) {
		time.Sleep(10 * time.Millisecond)
	}
	if r := mustOK("instance", "list"); strings.Contains(r.stdout, "doomed") {
		t.Errorf("stale instance listed: %q", r.stdout)
	}
	if _, err := os.Stat(filepath.Dir(recs[0])); err == nil {
		t.Errorf("stale record directory %s kept", filepath.Dir(recs[0]))
	}
	// Stage 1 still tears down cleanly: wait until the overlay is free.
	for i := 0; ; i++ {
		if r := h("exec", "--overlay", ov, img, "true"); r.code == 0 {
			break
		} else if i > 100 {
			t.Fatalf("overlay still busy after the kill: %s", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	fsckClean(t, ov, 0)
}

// `instance run` runs the runscript with its arguments and keeps the
// instance up; `instance stats` reports its processes from /proc;
// --boot is refused as Apptainer refuses it to non-root users.
func TestInstanceRunAndStats(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	meta := metaOverlay(t, dir, map[string]string{
		"runscript": "#!/bin/sh\necho \"run $*\"\nexec python3 -c " +
			"'import time; b = b\"x\" * (64 << 20); print(\"holding\", flush=True); " +
			"time.sleep(600)'\n",
	})
	cfg := []string{"HUSK_CONFIGDIR=" + filepath.Join(dir, "cfg")}
	h := func(args ...string) result { return huskEnv(t, dir, cfg, args...) }
	if r := h("instance", "run", "--overlay", meta, img, "job", "a", "b"); r.code != 0 {
		t.Fatalf("instance run: %s", r)
	}
	defer h("instance", "stop", "--all")
	r := h("instance", "list", "--logs")
	logOut := ""
	for _, f := range strings.Fields(r.stdout) {
		if strings.HasSuffix(f, "job.out") {
			logOut = f
		}
	}
	if logOut == "" {
		t.Fatalf("no log path in %s", r)
	}
	waitFor(t, func() bool {
		b, _ := os.ReadFile(logOut)
		return string(b) == "run a b\nholding\n"
	}, "runscript output in "+logOut)

	r = h("instance", "stats", "--no-stream", "job")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 2 ||
		!strings.HasPrefix(lines[0], "INSTANCE NAME") || !strings.HasPrefix(lines[1], "job ") ||
		!strings.Contains(r.stderr, "Stats for job instance of "+img) {
		t.Fatalf("stats: %s", r)
	}
	r = h("instance", "stats", "--json", "job")
	var st struct {
		Memory struct {
			Usage struct{ Usage, Limit uint64 } `json:"usage"`
		} `json:"memory_stats"`
		Pids struct{ Current int } `json:"pids_stats"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || r.code != 0 {
		t.Fatalf("stats --json: %v\n%s", err, r)
	}
	// stage 1, the container's init and python holding 64 MiB.
	if st.Pids.Current < 3 || st.Memory.Usage.Usage < 64<<20 ||
		st.Memory.Usage.Limit < st.Memory.Usage.Usage {
		t.Errorf("stats --json: %+v\n%s", st, r.stdout)
	}
	if r := h("instance", "stats", "nope"); r.code != 255 ||
		!strings.Contains(r.stderr, "no instance found with name nope") {
		t.Errorf("stats of a missing instance: %s", r)
	}
	if r := h("instance", "stop", "job"); r.code != 0 {
		t.Errorf("stop: %s", r)
	}

	r = h("instance", "start", "--boot", img, "booted")
	fatalLine(t, r, "Could not configure --boot: --boot requires root privileges")
}

// waitFor polls cond for up to a minute.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for i := 0; i < 600; i++ {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// --sharens: two commands of one parent share one container (the reader
// sees the writer's in-memory file, whichever of them started the
// container); the record is gone afterwards.
func TestSharens(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	cfg := filepath.Join(dir, "cfg")
	// Either may win the race to serve the shared container. The second waits
	// for the first's file and reads it; the first stays until the second has
	// read it, so neither depends on how fast a loaded machine starts them.
	first := "echo first > /f; i=0; " +
		"while [ ! -f /done ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done"
	second := "i=0; while [ ! -f /f ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; " +
		"cat /f; touch /done"
	script := fmt.Sprintf("%[1]s exec --sharens --writable-tmpfs %[2]s sh -c '%[4]s' &\n"+
		"%[1]s exec --sharens --writable-tmpfs %[2]s sh -c '%[3]s'\n"+
		"wait\n"+
		"%[1]s exec --writable-tmpfs %[2]s sh -c 'cat /f 2>/dev/null || echo alone'\n",
		huskBin, img, second, first)
	cmd := userCmd(dir)
	cmd.Path, cmd.Args = "/bin/sh", []string{"sh", "-c", script}
	cmd.Env = append(cmd.Env, "HUSK_CONFIGDIR="+cfg)
	out, err := cmd.CombinedOutput()
	if err != nil || string(out) != "first\nalone\n" {
		t.Fatalf("--sharens: %v\n%s", err, out)
	}
	r := huskEnv(t, dir, []string{"HUSK_CONFIGDIR=" + cfg}, "instance", "list")
	if strings.Contains(r.stdout, "sharens") {
		t.Errorf("sharens record left behind: %s", r.stdout)
	}
	left, _ := filepath.Glob(filepath.Join(cfg, "instances", "app", "*", "*", "*"))
	if len(left) > 0 {
		t.Errorf("left in the instance records: %v", left)
	}
	// Nor its lock file (one per parent process had piled up).
	locks, _ := filepath.Glob(filepath.Join(cfg, "instances", "sharens", "*", "*", "*"))
	if len(locks) > 0 {
		t.Errorf("left in the --sharens locks: %v", locks)
	}
}

// TestSharensFirstEndsFirst: the group's first command ending does not
// end the others (MPI ranks end a few tenths of a second apart; the later
// ones were sent SIGTERM and ended with 143); the first husk returns once
// they have ended, with its own command's status.
func TestSharensFirstEndsFirst(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	a := "touch /w/a; i=0; while [ ! -f /w/b ] && [ $i -lt 600 ]; do sleep 0.1; " +
		"i=$((i+1)); done; echo a-done; exit 3"
	b := "touch /w/b; sleep 1; echo b-done"
	script := fmt.Sprintf("%[1]s exec --sharens -B %[2]s:/w %[3]s sh -c '%[4]s' & pa=$!\n"+
		"i=0; while [ ! -f %[2]s/a ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n"+
		"%[1]s exec --sharens -B %[2]s:/w %[3]s sh -c '%[5]s'; echo b=$?\n"+
		"wait $pa; echo a=$?\n", huskBin, dir, img, a, b)
	cmd := userCmd(dir)
	cmd.Path, cmd.Args = "/bin/sh", []string{"sh", "-c", script}
	cmd.Env = append(cmd.Env, "HUSK_CONFIGDIR="+filepath.Join(dir, "cfg"))
	out, err := cmd.CombinedOutput()
	if err != nil || string(out) != "a-done\nb-done\nb=0\na=3\n" {
		t.Fatalf("--sharens, first ending first: %v\n%s", err, out)
	}

	// A stop signal to the first husk while its command runs ends the
	// others too (they had run on to their end, and the first waited).
	a = "touch /w/a2; sleep 60"
	b = "trap \"echo b-term; exit 5\" TERM; touch /w/b2; sleep 60 & wait"
	script = fmt.Sprintf("%[1]s exec --sharens -B %[2]s:/w %[3]s sh -c '%[4]s' & pa=$!\n"+
		"i=0; while [ ! -f %[2]s/a2 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n"+
		"%[1]s exec --sharens -B %[2]s:/w %[3]s sh -c '%[5]s' & pb=$!\n"+
		"i=0; while [ ! -f %[2]s/b2 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n"+
		"kill -TERM $pa; wait $pb; echo b=$?; wait $pa; echo a=$?\n", huskBin, dir, img, a, b)
	cmd = userCmd(dir)
	cmd.Path, cmd.Args = "/bin/sh", []string{"sh", "-c", script}
	cmd.Env = append(cmd.Env, "HUSK_CONFIGDIR="+filepath.Join(dir, "cfg"))
	out, err = cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "b-term\nb=5\n") ||
		!strings.HasSuffix(string(out), "a=143\n") {
		t.Fatalf("--sharens, a stop signal to the first: %v\n%s", err, out)
	}

	// A process that comes as the group ends, in whatever state of its
	// teardown, runs its command (joined, or leading a group of its own).
	script = ""
	for _, d := range []string{"0.2", "0.3", "0.35", "0.4", "0.5"} {
		script += fmt.Sprintf("%[1]s exec --sharens %[2]s sh -c 'sleep 0.3' & pa=$!\n"+
			"sleep %[3]s; %[1]s exec --sharens %[2]s echo ran; echo late=$?; wait $pa\n",
			huskBin, img, d)
	}
	cmd = userCmd(dir)
	cmd.Path, cmd.Args = "/bin/sh", []string{"sh", "-c", script}
	cmd.Env = append(cmd.Env, "HUSK_CONFIGDIR="+filepath.Join(dir, "cfg"))
	out, err = cmd.CombinedOutput()
	if err != nil || string(out) != strings.Repeat("ran\nlate=0\n", 5) {
		t.Fatalf("--sharens, late comers: %v\n%s", err, out)
	}

	// `instance stop` of the group stops the others once the first one's
	// command has ended (it signalled that command's finished stage 2).
	script = fmt.Sprintf("%[1]s exec --sharens -B %[2]s:/w %[3]s sh -c '%[4]s' & pa=$!\n"+
		"i=0; while [ ! -f %[2]s/a3 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n"+
		"%[1]s exec --sharens -B %[2]s:/w %[3]s sh -c '%[5]s' & pb=$!\n"+
		"i=0; while [ ! -f %[2]s/a3done ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n"+
		"sleep 0.3; %[1]s instance stop sharens_instance_$$ 2>/dev/null\n"+
		"wait $pb; echo b=$?; wait $pa; echo a=$?\n",
		huskBin, dir, img,
		"touch /w/a3; i=0; while [ ! -f /w/b3 ] && [ $i -lt 600 ]; do sleep 0.1; "+
			"i=$((i+1)); done; touch /w/a3done",
		"trap \"echo b-term; exit 5\" TERM; touch /w/b3; sleep 60 & wait")
	cmd = userCmd(dir)
	cmd.Path, cmd.Args = "/bin/sh", []string{"sh", "-c", script}
	cmd.Env = append(cmd.Env, "HUSK_CONFIGDIR="+filepath.Join(dir, "cfg"))
	out, err = cmd.CombinedOutput()
	if err != nil || string(out) != "b-term\nb=5\na=0\n" {
		t.Fatalf("--sharens, instance stop: %v\n%s", err, out)
	}
}

// An `instance start` interrupted before it has told the user leaves no
// instance behind (the daemon stops it again); one that has told the user
// is not taken back by a late signal.
func TestInstanceStartInterrupted(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	cfg := "HUSK_CONFIGDIR=" + filepath.Join(dir, "cfg")
	h := func(args ...string) result { return huskEnv(t, dir, []string{cfg}, args...) }
	t.Cleanup(func() { h("instance", "stop", "--all") })
	daemons := func() int { return instanceDaemons("cut") }
	// A start takes tens of milliseconds: the delays step through it, to
	// stop the foreground before it starts the daemon, while the daemon
	// starts the container, around its report, and after it.
	interrupted, completed := 0, 0
	for delay := time.Duration(2); delay <= 90; delay += 4 {
		cmd := userCmd(dir, "instance", "start", img, "cut")
		cmd.Env = append(cmd.Env, cfg)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay * time.Millisecond)
		cmd.Process.Signal(syscall.SIGINT)
		err := cmd.Wait()
		r := h("instance", "list")
		switch {
		case err == nil:
			completed++
			if !strings.Contains(errb.String(), "instance started successfully") ||
				!strings.Contains(r.stdout, "cut") {
				t.Errorf("start at %d ms completed: %s; list: %s", int(delay), errb.String(), r)
			}
			h("instance", "stop", "cut")
			waitFor(t, func() bool { return daemons() == 0 }, "the instance to stop")
		case cmd.ProcessState.Sys().(syscall.WaitStatus).Signaled():
			interrupted++
			waitFor(t, func() bool { return daemons() == 0 },
				"the interrupted instance to stop")
			if r := h("instance", "list"); strings.Contains(r.stdout, "cut") {
				t.Errorf("start interrupted at %d ms left an instance: %s", int(delay), r)
			}
		default:
			t.Errorf("start at %d ms: %v: %s", int(delay), err, errb.String())
		}
	}
	if interrupted == 0 {
		t.Errorf("no start was interrupted (%d completed)", completed)
	}
	t.Logf("%d starts interrupted, %d completed", interrupted, completed)

	// The report reached the foreground's socket, but the foreground never
	// read it: stopped once the daemon runs (polled closely: the container
	// then takes tens of milliseconds to start), killed once the record is
	// written (just before the report).
	for try := 0; ; try++ {
		cmd := userCmd(dir, "instance", "start", img, "cut")
		cmd.Env = append(cmd.Env, cfg)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for i := 0; daemons() == 0 && i < 10000; i++ {
			time.Sleep(time.Millisecond)
		}
		cmd.Process.Signal(syscall.SIGSTOP)
		waitFor(t, func() bool { return strings.Contains(h("instance", "list").stdout, "cut") },
			"the record")
		cmd.Process.Kill()
		cmd.Wait()
		if !cmd.ProcessState.Sys().(syscall.WaitStatus).Signaled() {
			// It had read the report before it stopped: try again.
			h("instance", "stop", "cut")
			waitFor(t, func() bool { return daemons() == 0 }, "the instance to stop")
			if try == 5 {
				t.Fatal("could not stop the foreground before the report in 6 tries")
			}
			continue
		}
		for i := 0; daemons() > 0; i++ {
			if i == 100 {
				t.Fatalf("an unacknowledged start still runs 10 s after its foreground died")
			}
			time.Sleep(100 * time.Millisecond)
		}
		break
	}

	// The name is free again.
	if r := h("instance", "start", img, "cut"); r.code != 0 {
		t.Fatalf("start after interrupted ones: %s", r)
	}
}

// Starts of one name at once: exactly one runs, the others say it exists,
// and none is left running unlisted (two at once had both "started", the
// second removing the first one's record). A name long enough to take the
// socket's path past what a socket address holds works, and . and .. are
// refused.
func TestInstanceStartRace(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	cfg := "HUSK_CONFIGDIR=" + filepath.Join(dir, "cfg")
	h := func(args ...string) result { return huskEnv(t, dir, []string{cfg}, args...) }
	t.Cleanup(func() { h("instance", "stop", "--all") })
	results := make(chan result, 4)
	for range 4 {
		go func() { results <- h("instance", "start", img, "racer") }()
	}
	started, exists := 0, 0
	for range 4 {
		r := <-results
		switch {
		case r.code == 0:
			started++
		case strings.Contains(r.stderr, "instance racer already exists"):
			exists++
		default:
			t.Errorf("start: %s", r)
		}
	}
	if started != 1 || exists != 3 {
		t.Errorf("%d started, %d found it running; want 1 and 3", started, exists)
	}
	if r := h("instance", "stop", "racer"); r.code != 0 {
		t.Errorf("stop: %s", r)
	}
	if n := instanceDaemons("racer"); n != 0 {
		t.Errorf("%d instance daemons run on after the stop", n)
	}
	// The starts' lock file went with the last of them.
	filepath.WalkDir(filepath.Join(dir, "cfg"), func(p string, _ fs.DirEntry, _ error) error {
		if strings.HasSuffix(p, ".lock") {
			t.Errorf("left behind: %s", p)
		}
		return nil
	})

	long := strings.Repeat("x", 64)
	if r := h("instance", "start", img, long); r.code != 0 {
		t.Fatalf("start with a 64-character name: %s", r)
	}
	if r := h("exec", "instance://"+long, "echo", "joined"); r.stdout != "joined\n" {
		t.Errorf("join: %s", r)
	}
	if r := h("instance", "stop", long); r.code != 0 {
		t.Errorf("stop: %s", r)
	}
	for _, name := range []string{".", ".."} {
		if r := h("instance", "start", img, name); r.code == 0 ||
			!strings.Contains(r.stderr, "neither . nor ..") {
			t.Errorf("start %q: %s", name, r)
		}
	}
	if r := h("instance", "start", img, strings.Repeat("y", 250)); r.code == 0 ||
		!strings.Contains(r.stderr, "longer than 80 characters") {
		t.Errorf("start with a 250-character name: %s", r)
	}
}

// instanceDaemons counts the running daemons of the test user's instance
// name.
func instanceDaemons(name string) (n int) {
	title := fmt.Sprintf("%s: %s [%s]", instanceTitle, testUser, name)
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && strings.HasPrefix(string(b), title) {
			n++
		}
	}
	return n
}

// TestInstanceFakerootKeepPrivs: a join may --keep-privs in an instance
// started with --fakeroot, and has every capability there (as
// --fakeroot --keep-privs at start does, TestCapabilityFlags).
func TestInstanceFakerootKeepPrivs(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	cfg := []string{"HUSK_CONFIGDIR=" + filepath.Join(dir, "cfg")}
	h := func(args ...string) result { return huskEnv(t, dir, cfg, args...) }
	if r := h("instance", "start", "--fakeroot", img, "fr"); r.code != 0 {
		t.Fatalf("start: %s", r)
	}
	t.Cleanup(func() { h("instance", "stop", "--all") })
	r := h("exec", "--keep-privs", "instance://fr", "cat", "/proc/self/status")
	if r.code != 0 {
		t.Fatalf("--keep-privs join of a --fakeroot instance: %s", r)
	}
	if got := capLine(t, r.stdout, "CapEff"); got != "000001ffffffffff" {
		t.Errorf("--keep-privs join of a --fakeroot instance: CapEff %s", got)
	}
}
