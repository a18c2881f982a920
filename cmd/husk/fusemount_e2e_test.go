// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// squashImage makes a small squashfs with mksquashfs holding
// sub/file.txt, readable by the test user.
func squashImage(t *testing.T, dir string) string {
	t.Helper()
	src := filepath.Join(dir, "sqsrc")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "sub", "file.txt"), []byte("hello\n"),
		0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "sq.img")
	tool(t, "mksquashfs", src, img, "-quiet", "-noappend")
	if err := os.Chmod(img, 0o644); err != nil {
		t.Fatal(err)
	}
	return img
}

// lookSquashfuse finds squashfuse (libfuse 3, which takes /dev/fd/N as
// the mount point).
func lookSquashfuse(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("squashfuse")
	if err != nil {
		t.Fatal("squashfuse not found: apt-get install squashfuse")
	}
	return p
}

// --fusemount host:... runs squashfuse on the host side: the container
// reads the squashfs at the mount point, the mount point does not land
// in the persistent overlay, and no squashfuse is left afterwards.
func TestFuseMountHost(t *testing.T) {
	setup(t)
	lookSquashfuse(t)
	img, dir := debianSIF(t), workDir(t)
	sq := squashImage(t, dir)
	ov := filepath.Join(dir, "ov")
	if err := os.Mkdir(ov, 0o755); err != nil {
		t.Fatal(err)
	}
	chown(t, ov)
	hostPidNS, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"host:squashfuse -f", "host-daemon:squashfuse"} {
		r := ok(t, dir, "exec", "--overlay", ov, "--fusemount", kind+" "+sq+" /mnt/sq",
			img, "sh", "-c", "cat /mnt/sq/sub/file.txt; "+
				"grep -c ' /mnt/sq .* fuse.squashfuse ' /proc/self/mountinfo; "+
				"readlink /proc/self/ns/pid")
		want := "hello\n1\n"
		if !strings.HasPrefix(r.stdout, want) || strings.Contains(r.stdout, hostPidNS) {
			t.Errorf("%s: want the file, one FUSE mount and a PID namespace:\n%s", kind, r)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(ov, "upper")); len(ents) != 0 {
		t.Errorf("the mount point leaked into the overlay: %v", ents)
	}
	// The daemon's server exits once its mount is gone; init reaps it.
	for i := 0; ; i++ {
		out, _ := exec.Command("pgrep", "-u", testUser, "squashfuse").Output()
		if len(strings.TrimSpace(string(out))) == 0 {
			break
		}
		if i == 100 {
			t.Fatalf("squashfuse still running: %s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// --fusemount container:... runs squashfuse from the container's file
// system (here bound in from the host, with the libraries the Debian
// image lacks), with HUSK_FUSEMOUNT.
func TestFuseMountContainer(t *testing.T) {
	setup(t)
	bin := lookSquashfuse(t)
	img, dir := debianSIF(t), workDir(t)
	sq := squashImage(t, dir)
	args := []string{"exec", "-B", bin + ":/usr/local/bin/squashfuse", "-B", sq + ":/opt/sq.img"}
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", bin, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[1] == "=>" && strings.Contains(f[2], "fuse3") ||
			len(f) >= 3 && strings.Contains(f[0], "lzo2") {
			args = append(args, "-B", f[2]+":/usr/lib/x86_64-linux-gnu/"+f[0])
		}
	}
	args = append(args, img, "cat", "/mnt/sq/sub/file.txt")
	cmd := userCmd(dir, args...)
	cmd.Env = append(cmd.Env, "HUSK_FUSEMOUNT=container:squashfuse -f /opt/sq.img /mnt/sq")
	b, err := cmd.CombinedOutput()
	if err != nil || string(b) != "hello\n" {
		t.Errorf("container squashfuse: %v\n%s", err, b)
	}
}

// A FUSE program that fails at start fails the container (its own
// message, then one FATAL line), for exec and for instance start, which
// leaves no instance behind; a bad --fusemount value, or a host program
// built on libfuse 2, is one FATAL line.
func TestFuseMountErrors(t *testing.T) {
	setup(t)
	lookSquashfuse(t)
	img, dir := debianSIF(t), workDir(t)
	for _, kind := range []string{"host:squashfuse -f", "host:squashfuse",
		"host-daemon:squashfuse"} {
		r := husk(t, dir, "exec", "--fusemount", kind+" /nonexistent.img /mnt/sq",
			img, "echo", "payload ran")
		if r.code != 255 || strings.Contains(r.stdout, "payload ran") ||
			!strings.Contains(r.stderr, "FATAL:   --fusemount /mnt/sq: squashfuse") ||
			strings.Contains(r.stderr, "WARNING") {
			t.Errorf("%s: want the container to fail with one FATAL:\n%s", kind, r)
		}
	}
	cfg := []string{"HUSK_CONFIGDIR=" + filepath.Join(dir, "cfg")}
	r := huskEnv(t, dir, cfg, "instance", "start", "--fusemount",
		"host:squashfuse /nonexistent.img /mnt/y", img, "fm")
	fatalLine(t, r, "--fusemount /mnt/y: squashfuse exited before serving the mount")
	if r := huskEnv(t, dir, cfg, "instance", "list"); r.code != 0 ||
		strings.Contains(r.stdout, "fm") {
		t.Errorf("a failed instance is listed:\n%s", r)
	}
	fatalLine(t, husk(t, dir, "exec", "--fusemount", "squashfuse x /mnt", img, "true"),
		"want host:, container:")
	fatalLine(t, husk(t, dir, "exec", "--fusemount", "host:squashfuse x mnt", img, "true"),
		"not an absolute path")
	fatalLine(t, husk(t, dir, "exec", "--fusemount", "host:no-such-fuse /mnt/x", img,
		"true"), "no-such-fuse")
	// A program built on libfuse 2 (Debian's fuse2fs, which the tests
	// install) is refused before anything starts: daemonized, it had hung
	// the start for 30 s, then every access to its mount, and outlived
	// the container.
	fatalLine(t, husk(t, dir, "exec", "--fusemount", "host:fuse2fs /x.img /mnt/e", img,
		"true"), "--fusemount /mnt/e: /usr/bin/fuse2fs is linked with libfuse 2")
}
