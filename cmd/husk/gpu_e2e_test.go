// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"debug/elf"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// donorLib is a real shared library whose SONAME is as long as the
// longest fake driver name, so fakeLib can rename it in place.
const donorLib = "/usr/lib/x86_64-linux-gnu/libsmartcols.so.1"

// fakeLib copies donorLib to dir/soname with its DT_SONAME changed to
// soname: ldconfig lists a library under its SONAME.
func fakeLib(t *testing.T, dir, soname string) {
	t.Helper()
	b, err := os.ReadFile(donorLib)
	if err != nil {
		t.Fatalf("%v (apt-get install libsmartcols1)", err)
	}
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	old, err := f.DynString(elf.DT_SONAME)
	if err != nil || len(old) != 1 || len(old[0]) < len(soname) {
		t.Fatalf("%s: SONAME %v: %v", donorLib, old, err)
	}
	dynstr := f.Section(".dynstr")
	if dynstr == nil {
		t.Fatalf("%s: no .dynstr", donorLib)
	}
	strs, err := dynstr.Data()
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(strs, append([]byte(old[0]), 0))
	if i < 0 {
		t.Fatalf("%s: SONAME not in .dynstr", donorLib)
	}
	off := int(dynstr.Offset) + i
	copy(b[off:off+len(old[0])], append([]byte(soname), make([]byte, len(old[0]))...))
	if err := os.WriteFile(filepath.Join(dir, soname), b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// fakeDriver makes a host "NVIDIA driver" in dir: libcuda.so.1 and
// libnvidia-ml.so.1 in an ld.so cache of their own (with the host's
// libraries, as ldconfig always adds them), and an nvidia-smi script.
func fakeDriver(t *testing.T, dir string) (cache, bin string) {
	t.Helper()
	lib, bin := filepath.Join(dir, "lib"), filepath.Join(dir, "bin")
	for _, d := range []string{lib, bin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fakeLib(t, lib, "libcuda.so.1")
	fakeLib(t, lib, "libnvidia-ml.so.1")
	conf, cache := filepath.Join(dir, "ld.so.conf"), filepath.Join(dir, "ld.so.cache")
	if err := os.WriteFile(conf, []byte(lib+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tool(t, "ldconfig", "-C", cache, "-f", conf)
	if err := os.WriteFile(filepath.Join(bin, "nvidia-smi"),
		[]byte("#!/bin/sh\necho fake nvidia-smi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return cache, bin
}

// emptyLdCache is an ld.so cache that lists no library at all (ldconfig
// in a chroot of empty directories).
func emptyLdCache(t *testing.T, dir string) string {
	t.Helper()
	root := filepath.Join(dir, "root")
	for _, d := range []string{"etc", "lib", "usr/lib"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc/ld.so.conf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tool(t, "ldconfig", "-r", root, "-C", "/etc/ld.so.cache", "-f", "/etc/ld.so.conf")
	return filepath.Join(root, "etc/ld.so.cache")
}

// gpuRun runs husk as the test user with a test ld.so cache, extra PATH
// entries (path, if not empty) and extra variables.
func gpuRun(t *testing.T, dir, cache, path string, extra []string, args ...string) result {
	t.Helper()
	cmd := userCmd(dir, args...)
	for i, e := range cmd.Env {
		if p, ok := strings.CutPrefix(e, "PATH="); ok && path != "" {
			cmd.Env[i] = "PATH=" + path + ":" + p
		}
	}
	cmd.Env = append(append(cmd.Env, "_HUSK_LDCACHE="+cache), extra...)
	return runCmd(t, cmd)
}

// base99 is Apptainer's /.singularity.d/env/99-base.sh.
const base99 = `#!/bin/sh
if [ -z "$LD_LIBRARY_PATH" ]; then
    LD_LIBRARY_PATH="/.singularity.d/libs"
else
    LD_LIBRARY_PATH="$LD_LIBRARY_PATH:/.singularity.d/libs"
fi
PS1="Apptainer> "
export LD_LIBRARY_PATH PS1
`

// --nv binds the driver's libraries from the ld.so cache into
// /.singularity.d/libs (read-only, on LD_LIBRARY_PATH) and nvidia-smi
// from PATH into /usr/bin, without leaving them in a persistent overlay.
func TestNvBindsDriver(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	cache, bin := fakeDriver(t, dir)
	ov := filepath.Join(dir, "ov")
	if err := os.Mkdir(ov, 0o755); err != nil {
		t.Fatal(err)
	}
	chown(t, ov)
	// LD_LIBRARY_PATH gets /.singularity.d/libs from the image's
	// 99-base.sh, which Apptainer writes into every image it builds.
	meta := metaOverlay(t, dir, map[string]string{"env/99-base.sh": base99})
	for _, flags := range [][]string{{"--nv", "--overlay", meta},
		{"--nv", "--contain", "--overlay", meta, "--overlay", ov}} {
		args := append(append([]string{"exec"}, flags...), img, "sh", "-c",
			"ls /.singularity.d/libs; echo LD_LIBRARY_PATH=$LD_LIBRARY_PATH; nvidia-smi; "+
				"touch /.singularity.d/libs/libcuda.so.1 2>/dev/null || echo read-only")
		r := gpuRun(t, dir, cache, bin, nil, args...)
		for _, want := range []string{"libcuda.so.1\n", "libnvidia-ml.so.1\n",
			"LD_LIBRARY_PATH=/.singularity.d/libs\n", "fake nvidia-smi\n", "read-only\n"} {
			if r.code != 0 || !strings.Contains(r.stdout, want) {
				t.Errorf("%v: want %q:\n%s", flags, want, r)
			}
		}
		if strings.Contains(r.stderr, "could not find") {
			t.Errorf("%v: warned about missing libraries:\n%s", flags, r)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(ov, "upper")); len(ents) != 0 {
		t.Errorf("bind targets leaked into the overlay: %v", ents)
	}
}

// Without driver libraries --nv and --rocm warn as Apptainer does and
// run; --nvccli is refused in one line.
func TestNvWithoutDriver(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	cache := emptyLdCache(t, dir)
	for _, tc := range []struct {
		flag, env, warning string
	}{
		{"--nv", "", "WARNING: could not find any nvidia libraries on this host!"},
		{"", "HUSK_ROCM=1", "WARNING: could not find any rocm libraries on this host!"},
		{"", "SINGULARITY_NV=true", "WARNING: could not find any nvidia libraries"},
	} {
		args := []string{"exec", img, "echo", "ran"}
		if tc.flag != "" {
			args = []string{"exec", tc.flag, img, "echo", "ran"}
		}
		var env []string
		if tc.env != "" {
			env = []string{tc.env}
		}
		r := gpuRun(t, dir, cache, "", env, args...)
		if r.code != 0 || r.stdout != "ran\n" || !strings.Contains(r.stderr, tc.warning) {
			t.Errorf("%s%s: want a warning and the command run:\n%s", tc.flag, tc.env, r)
		}
	}
	fatalLine(t, gpuRun(t, dir, cache, "", nil, "exec", "--nvccli", img, "true"),
		"--nvccli", "nvidia-container-cli")
}
