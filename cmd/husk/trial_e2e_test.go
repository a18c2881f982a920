package main

// Regression tests for defects found by a new-user trial: each checks the
// behaviour the user saw was wrong.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// An existing file the user cannot write is never replaced by overlay
// create (Apptainer renames over it).
func TestOverlayCreateKeepsUnwritableFiles(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	data := overlayImg(t, dir, "--create-dir", "/data")
	ok(t, dir, "exec", "--overlay", data, img, "sh", "-c", "echo keep > /data/f")
	sifCopy := filepath.Join(dir, "ro.sif")
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(sifCopy, b, 0o644)
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("my notes\n"), 0o644)

	for _, p := range []string{data, sifCopy, text} {
		chown(t, p)
		os.Chmod(p, 0o444)
		before, _ := os.ReadFile(p)
		r := husk(t, dir, "overlay", "create", p)
		fatalLine(t, r, p+" exists and is not writable by you: "+
			"husk overlay create will not replace it")
		after, _ := os.ReadFile(p)
		if !bytes.Equal(before, after) {
			t.Errorf("%s changed", p)
		}
	}
}

// --overlay takes :ro or :rw only.
func TestOverlayOptionChecked(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	ov := overlayImg(t, dir)
	st, _ := os.Stat(ov)
	for _, x := range []string{"RO", "r0", "bogus"} {
		r := husk(t, dir, "exec", "--overlay", ov+":"+x, img, "touch", "/x")
		fatalLine(t, r, "--overlay "+ov+":"+x+": unknown option \""+x+"\" (want ro or rw)")
	}
	if st2, _ := os.Stat(ov); !st2.ModTime().Equal(st.ModTime()) {
		t.Errorf("%s was written", ov)
	}
	ok(t, dir, "exec", "--overlay", ov+":rw", img, "touch", "/x")
}

// build does not overwrite OUT.sif without --force.
func TestBuildRefusesToOverwrite(t *testing.T) {
	setup(t)
	dir := workDir(t)
	root := filepath.Join(dir, "root")
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	chown(t, root)
	out := filepath.Join(dir, "out.sif")
	os.WriteFile(out, []byte("precious"), 0o644)
	chown(t, out)
	fatalLine(t, husk(t, dir, "build", out, root),
		out+" already exists; use --force to overwrite")
	if b, _ := os.ReadFile(out); string(b) != "precious" {
		t.Fatalf("%s overwritten", out)
	}
	ok(t, dir, "build", "--force", out, root)
	if b, _ := os.ReadFile(out); !bytes.HasPrefix(b, []byte("#!/usr/bin/env run-singularity")) {
		t.Fatalf("--force did not build %s", out)
	}
}

// Warnings and errors a user meets say what is wrong in plain words.
func TestTrialMessages(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	fatalLine(t, husk(t, dir, "exec", "-B", dir+":/proc", img, "true"),
		"cannot bind over /proc")

	// A squashfs overlay is read-only by nature: no warning.
	sq := filepath.Join(dir, "extra.sqfs")
	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "opt"), 0o755)
	tool(t, "mksquashfs", src, sq, "-noappend", "-quiet")
	chown(t, sq)
	r := ok(t, dir, "exec", "-o", sq, img, "true")
	if r.stderr != "" {
		t.Errorf("squashfs overlay: stderr %q, want nothing", r.stderr)
	}
}

// Killing husk's stage 1 or stage 2 is husk failing, not the command
// dying, and the container's processes die with it: without --pid they
// would otherwise run on, orphaned (stage 2 is their reaper), and keep
// stage 1 from unmounting the union until they end.
func TestSupervisorKilled(t *testing.T) {
	setup(t)
	img := debianSIF(t)
	for _, tc := range []struct{ stage, fatal string }{
		{"husk-stage1", "husk's container supervisor was killed by signal KILL"},
		{"husk-stage2", "husk's container reaper was killed by signal KILL; " +
			"the container's processes were killed"},
	} {
		t.Run(tc.stage, func(t *testing.T) {
			var errb bytes.Buffer
			cmd, sleeper, stage1 := startSleeper(t, img, "", &errb)
			victim := stage1
			if tc.stage == "husk-stage2" {
				victim = childNamed(stage1, "husk-stage2")
			}
			if victim == 0 {
				t.Fatalf("no %s", tc.stage)
			}
			syscall.Kill(victim, syscall.SIGKILL)
			// A guard against a hang, not a timing: the payload would
			// sleep for 600 s.
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				cmd.Process.Kill()
				<-done
				t.Fatalf("husk still running 60 s after %s was killed", tc.stage)
			}
			r := result{stderr: errb.String(), code: cmd.ProcessState.ExitCode()}
			if ws := cmd.ProcessState.Sys().(syscall.WaitStatus); ws.Signaled() {
				r.code, r.signaled = 128+int(ws.Signal()), true
			}
			fatalLine(t, r, tc.fatal)
			if err := syscall.Kill(sleeper, 0); err != syscall.ESRCH {
				syscall.Kill(sleeper, syscall.SIGKILL)
				t.Errorf("the container's sleep %d outlived husk (kill 0: %v)", sleeper, err)
			}
		})
	}
}

// Killing husk itself (SIGKILL: it can forward nothing) ends the container
// even when its command ignores SIGTERM, which is what reaches it first:
// stage 1 kills it after a grace period, and nothing is left running.
func TestHuskKilled(t *testing.T) {
	setup(t)
	cmd, sleeper, stage1 := startSleeper(t, debianSIF(t), "trap '' TERM; ", nil)
	cmd.Process.Kill()
	cmd.Wait()
	// A guard against a container left running, not a timing: the grace
	// is 5 s, the payload would sleep for 600.
	gone := func(pid int) bool { return syscall.Kill(pid, 0) == syscall.ESRCH }
	for i := 0; i < 600 && !(gone(sleeper) && gone(stage1)); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	for _, pid := range []int{sleeper, stage1} {
		if !gone(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("process %d of the container outlived husk by 60 s", pid)
		}
	}
}

// startSleeper starts `husk exec FLAGS img sh -c PREFIX sleep 600 & ...;
// wait` and waits until the sleep runs; it returns husk's command, the
// sleep's pid and stage 1's. stderr, if not nil, gets husk's.
func startSleeper(t *testing.T, img, prefix string, stderr *bytes.Buffer, flags ...string) (
	cmd *exec.Cmd, sleeper, stage1 int) {
	t.Helper()
	dir := workDir(t)
	pidFile := filepath.Join(dir, "pid")
	args := append(append([]string{"exec"}, flags...), img, "sh", "-c",
		prefix+"sleep 600 & echo $! > "+pidFile+"; wait")
	cmd = userCmd(dir, args...)
	if stderr != nil {
		cmd.Stderr = stderr
	}
	// A process left behind holds stderr open: Wait returns anyway.
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	for i := 0; i < 300 && sleeper == 0; i++ {
		b, _ := os.ReadFile(pidFile)
		sleeper, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		time.Sleep(100 * time.Millisecond)
	}
	stage1 = childNamed(cmd.Process.Pid, "husk-stage1")
	if sleeper == 0 || stage1 == 0 {
		t.Fatalf("payload pid %d, stage 1 pid %d", sleeper, stage1)
	}
	return cmd, sleeper, stage1
}

// childNamed is the pid of a child of parent whose argv[0] is name, or 0.
func childNamed(parent int, name string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command name in parentheses: state, ppid.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(parent) {
			continue
		}
		argv, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if string(bytes.SplitN(argv, []byte{0}, 2)[0]) == name {
			return pid
		}
	}
	return 0
}

// A damaged squashfs directory table: the warnings and the error name the
// image, and each distinct warning is printed once.
func TestCorruptDirectoryTableNamed(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	off := primOffset(t, img)
	dirTable := int(binary.LittleEndian.Uint64(data[off+72:]))
	for i := off + dirTable + 20; i < off+dirTable+84; i++ {
		data[i] ^= 0x5a
	}
	bad := filepath.Join(dir, "bad.sif")
	if err := os.WriteFile(bad, data, 0o644); err != nil {
		t.Fatal(err)
	}
	// run and instance start look for /bin/sh first: a damaged image must
	// not be reported as one without a shell.
	for _, args := range [][]string{{"exec", bad, "ls", "/"}, {"run", bad},
		{"instance", "start", bad, "bad1"}} {
		r := husk(t, dir, args...)
		if r.code != 255 {
			t.Fatalf("%v: want exit 255:\n%s", args, r)
		}
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		seen := map[string]bool{}
		for _, l := range lines {
			if seen[l] {
				t.Errorf("%v: repeated line %q", args, l)
			}
			seen[l] = true
			if !strings.Contains(l, bad) {
				t.Errorf("%v: line does not name %s: %q", args, bad, l)
			}
		}
		// The FATAL line says what is wrong with which image, not which
		// step of the setup met the I/O error.
		if last := lines[len(lines)-1]; !strings.HasPrefix(last, "FATAL:") ||
			!strings.Contains(last, bad+": partition 1: squash: ") ||
			strings.Contains(last, "input/output error") {
			t.Errorf("%v: last line %q", args, last)
		}
	}
}

// A damaged directory block of an ext3 overlay, met while the container
// is set up (the union looks up /etc/localtime in upper/etc): the FATAL
// line names the overlay and what ext3 found wrong with it.
func TestCorruptOverlayDirectoryNamed(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	ov := overlayImg(t, dir)
	ok(t, dir, "exec", "--overlay", ov, img, "touch", "/etc/new")
	// debugfs prints its banner first (combined output), then the numbers.
	blk := -1
	for _, f := range strings.Fields(tool(t, "debugfs", "-R", "blocks /upper/etc", ov)) {
		if n, err := strconv.Atoi(f); err == nil && blk < 0 {
			blk = n
		}
	}
	var bsize int
	for l := range strings.Lines(tool(t, "debugfs", "-R", "stats", ov)) {
		if v, found := strings.CutPrefix(l, "Block size:"); found {
			bsize, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if blk < 0 || bsize == 0 {
		t.Fatalf("no block of /upper/etc (%d) or no block size", blk)
	}
	f, err := os.OpenFile(ov, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// After the first entry ("."): a rec_len of 65535 runs off the block.
	_, err = f.WriteAt(bytes.Repeat([]byte{0xff}, 64), int64(blk*bsize+12))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	r := husk(t, dir, "exec", "--overlay", ov, img, "true")
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	want := fmt.Sprintf("FATAL:   %s: ext3: corrupt directory entry (inode ", ov)
	if last := lines[len(lines)-1]; r.code != 255 || !strings.HasPrefix(last, want) {
		t.Errorf("want exit 255 and a last line starting %q:\n%s", want, r)
	}
}
