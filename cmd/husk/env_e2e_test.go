package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// huskEnv runs husk as the test user with extra host variables.
func huskEnv(t *testing.T, dir string, extra []string, args ...string) result {
	t.Helper()
	cmd := userCmd(dir, args...)
	cmd.Env = append(cmd.Env, extra...)
	return runCmd(t, cmd)
}

// containerEnviron runs `env -0` in the container and returns its
// variables.
func containerEnviron(t *testing.T, dir string, extra []string, args ...string) map[string]string {
	t.Helper()
	r := huskEnv(t, dir, extra, append(args, "env", "-0")...)
	if r.code != 0 {
		t.Fatalf("husk %v:\n%s", args, r)
	}
	m := map[string]string{}
	for _, kv := range strings.Split(r.stdout, "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// metaOverlay writes a read-only directory overlay holding /.singularity.d
// files, so the cached image stays as built.
func metaOverlay(t *testing.T, dir string, files map[string]string) string {
	t.Helper()
	meta := filepath.Join(dir, "meta")
	for name, body := range files {
		p := filepath.Join(meta, ".singularity.d", name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return meta + ":ro"
}

// Apptainer's precedence (COMPAT §7.5): APPTAINERENV_/--env/--env-file >
// image env scripts > host, with the host hidden while the scripts run.
func TestEnvPrecedence(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	ov := metaOverlay(t, dir, map[string]string{
		"env/90-environment.sh": "export IMG=image HOSTIMG=image ENVIMG=image\n" +
			"export SEEN_HOST=\"${HOSTONLY:-hidden}\" SEEN_PATH=\"$PATH\" IMGEMPTY=\n" +
			"export SEEN_CARRIERS=\"$(env | grep -c ^__husk_)\"\n",
		"env/99-base.sh": "if [ -z \"${PS1:-}\" ]; then PS1=\"Apptainer> \"; fi\n" +
			"export PS1\n",
	})
	envFile := filepath.Join(dir, "envfile")
	os.WriteFile(envFile, []byte("export FROMFILE=\"f-$HOSTONLY\"\nCLI=file\n"), 0o644)
	host := []string{"HOSTONLY=h", "HOSTIMG=host", "PS1=host$ ", "APPTAINERENV_ENVIMG=env",
		"APPTAINERENV_EVAL=$HOME/x", "SINGULARITYENV_OLD=s", "LD_LIBRARY_PATH=/hostlib",
		"APPTAINER_SECRET=1", "EMPTY="}
	m := containerEnviron(t, dir, host, "exec", "--overlay", ov, "--env", "CLI=c",
		"--env-file", envFile, "-B", dir+":/mnt", img)
	want := map[string]string{
		"HOSTONLY": "h", "HOSTIMG": "image", "ENVIMG": "env", "IMG": "image",
		"SEEN_HOST": "hidden", "SEEN_PATH": DefaultPath, "PS1": "Apptainer> ",
		"SEEN_CARRIERS": "0",
		"EVAL":          "/home/" + testUser + "/x", "OLD": "s", "CLI": "c", "FROMFILE": "f-h",
		"HOME": "/home/" + testUser, "PATH": DefaultPath,
		"APPTAINER_COMMAND": "exec", "SINGULARITY_COMMAND": "exec",
		"APPTAINER_NAME": filepath.Base(img), "APPTAINER_CONTAINER": img,
		"APPTAINER_ENVIRONMENT": "/.singularity.d/env/91-environment.sh",
		"APPTAINER_BIND":        dir + ":/mnt", "SINGULARITY_BIND": dir + ":/mnt",
		// Set on the host side as Apptainer's action commands do (harness PATH).
		"USER_PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin:" +
			"/bin:/usr/bin:/sbin:/usr/sbin:/usr/local/bin:/usr/local/sbin",
		"IMAGE_ARG": img,
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s=%q, want %q", k, m[k], v)
		}
	}
	for _, k := range []string{"LD_LIBRARY_PATH", "APPTAINER_SECRET", "APPTAINERENV_ENVIMG",
		"EMPTY", "IMGEMPTY", "__husk_inj"} {
		if v, ok := m[k]; ok {
			t.Errorf("%s=%q leaked into the container", k, v)
		}
	}
	for k, v := range m {
		if strings.HasPrefix(k, "__husk") {
			t.Errorf("%s=%q leaked into the container", k, v)
		}
	}

	// --no-eval keeps the value literal; an image without 99-base.sh
	// gets the host PS1 back.
	m = containerEnviron(t, dir, host, "exec", "--no-eval", img)
	if m["EVAL"] != "$HOME/x" || m["PS1"] != "host$ " || m["HOSTIMG"] != "host" {
		t.Errorf("--no-eval / no image env: EVAL=%q PS1=%q HOSTIMG=%q", m["EVAL"], m["PS1"],
			m["HOSTIMG"])
	}

	// --cleanenv forwards only TERM and the proxies, and sets LANG=C.
	m = containerEnviron(t, dir, append(host, "http_proxy=p"), "exec", "--cleanenv", img)
	_, userPath := m["USER_PATH"]
	if _, ok := m["HOSTONLY"]; ok || userPath || m["LANG"] != "C" || m["TERM"] != "dumb" ||
		m["http_proxy"] != "p" || m["ENVIMG"] != "env" {
		t.Errorf("--cleanenv: %v", m)
	}
	// --no-env drops a host variable.
	if m = containerEnviron(t, dir, host, "exec", "--no-env", "HOSTONLY", img); m["HOSTONLY"] != "" {
		t.Errorf("--no-env HOSTONLY: still %q", m["HOSTONLY"])
	}

	// APPTAINERENV_HOME is refused with Apptainer's warning.
	r := huskEnv(t, dir, []string{"APPTAINERENV_HOME=/x"}, "exec", img, "sh", "-c",
		"echo $HOME")
	if r.code != 0 || r.stdout != "/home/"+testUser+"\n" ||
		!strings.Contains(r.stderr, "Overriding HOME environment variable") {
		t.Errorf("APPTAINERENV_HOME: %s", r)
	}
}

// umask is the caller's, or 0022 with --no-umask.
func TestUmask(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	for _, c := range []struct{ flag, want string }{{"--pid", "0027"},
		{"--no-umask", "0022"}, {"--compat", "0022"}} {
		cmd := userCmd(dir)
		cmd.Path = "/bin/sh"
		cmd.Args = []string{"sh", "-c", "umask 027; exec \"$0\" \"$@\"", huskBin, "exec",
			c.flag, img, "sh", "-c", "umask"}
		out, err := cmd.Output()
		if err != nil || strings.TrimSpace(string(out)) != c.want {
			t.Errorf("umask with %s: %q %v, want %s", c.flag, out, err, c.want)
		}
	}
}

// test runs /.singularity.d/test, or says there is none and exits 0;
// shell honours --shell.
func TestTestAndShellActions(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	r := ok(t, dir, "test", img)
	if !strings.Contains(r.stderr, "No test script found in container, exiting") {
		t.Errorf("test without script: %s", r)
	}
	ov := metaOverlay(t, dir, map[string]string{"test": "#!/bin/sh\necho tested $1\nexit 3\n"})
	r = husk(t, dir, "test", "--overlay", ov, img, "a")
	if r.code != 3 || r.stdout != "tested a\n" {
		t.Errorf("test with script: %s", r)
	}
	cmd := userCmd(dir, "shell", "--shell", "/bin/dash", img)
	cmd.Stdin = strings.NewReader("echo $SINGULARITY_SHELL $APPTAINER_SHELL $PS1\n")
	out, err := cmd.Output()
	if err != nil || string(out) != "/bin/dash /bin/dash Apptainer>\n" {
		t.Errorf("shell --shell: %q %v", out, err)
	}
}

// An image without /bin/sh runs exec commands directly, with the
// environment computed by husk.
func TestNoShellImage(t *testing.T) {
	setup(t)
	debianSIF(t)
	dir := workDir(t)
	sbx := filepath.Join(dir, "sbx")
	copyRootfs(t, sbx, "usr/bin/env")
	os.Symlink("usr/bin", filepath.Join(sbx, "bin"))
	m := containerEnviron(t, dir, []string{"HOSTONLY=h", "APPTAINERENV_X=$HOME"}, "exec",
		sbx)
	if m["HOSTONLY"] != "h" || m["X"] != "$HOME" || m["PATH"] != DefaultPath ||
		m["PS1"] != "Apptainer> " || m["APPTAINER_COMMAND"] != "exec" {
		t.Errorf("direct exec env: %v", m)
	}
	fatalLine(t, husk(t, dir, "run", sbx), "needs /bin/sh in the image")
}

// --uts gives the container its own UTS namespace.
func TestUTSNamespace(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	host, _ := os.Readlink("/proc/self/ns/uts")
	for flag, want := range map[string]bool{"--uts": false, "--ipc": true} {
		r := ok(t, dir, "exec", flag, img, "readlink", "/proc/self/ns/uts")
		if same := strings.TrimSpace(r.stdout) == host; same != want {
			t.Errorf("%s: uts namespace %q, host %q", flag, r.stdout, host)
		}
	}
}

// --env splits on commas as Apptainer's does (TestSplitEnvFlag has the
// rules): the trial's `--env X=1,Y=2` set X to "1,Y=2".
func TestEnvFlagCommas(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	m := containerEnviron(t, dir, nil, "exec", "--env", "X=1,Y=2", "--env", "ONE=a,b",
		"--env", `Q=1,"R=2,3"`, img)
	want := map[string]string{"X": "1", "Y": "2", "ONE": "a,b", "Q": "1", "R": "2,3"}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %q, want %q", k, m[k], v)
		}
	}
	r := huskEnv(t, dir, nil, "exec", "--env", "X=1,Y=2,Z", img, "true")
	if r.code == 0 || !strings.Contains(r.stderr, `"Z" is not KEY=VALUE`) {
		t.Errorf("--env X=1,Y=2,Z: want a refusal naming Z:\n%s", r)
	}
}

// TestLargeHostEnvironment: a host environment larger than one argument
// may be (128 KiB; module systems make large ones) reaches the container
// whole, with quotes and dollars kept literal. It was refused ("the
// environment to pass is too large"), as it went into the script.
func TestLargeHostEnvironment(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	big1, big2 := strings.Repeat("x", 100<<10), strings.Repeat("y", 100<<10)
	odd := "a'b\"c$HOME `id` \\n"
	m := containerEnviron(t, dir, []string{"BIG1=" + big1, "BIG2=" + big2, "ODD=" + odd},
		"exec", img)
	if m["BIG1"] != big1 || m["BIG2"] != big2 || m["ODD"] != odd {
		t.Errorf("BIG1 %d bytes, BIG2 %d bytes, ODD %q; want 102400, 102400, %q",
			len(m["BIG1"]), len(m["BIG2"]), m["ODD"], odd)
	}
	// Many variables with long names (each name went into the script four
	// times; 600 of 40 bytes were refused), with an image that sets IFS,
	// and one named like the script's own, which does not reach it.
	ov := metaOverlay(t, dir, map[string]string{"env/90-environment.sh": "IFS=:\n"})
	var host []string
	for i := range 1500 {
		host = append(host, fmt.Sprintf("MODULE_%032d=v%d", i, i))
	}
	m = containerEnviron(t, dir, append(host, "__husk_k=mine"), "exec", "--overlay", ov, img)
	n := 0
	for k := range m {
		if strings.HasPrefix(k, "MODULE_") {
			n++
		}
	}
	if n != 1500 || m[fmt.Sprintf("MODULE_%032d", 1499)] != "v1499" || m["__husk_k"] != "" {
		t.Errorf("%d of 1500 variables, the last %q, __husk_k %q", n,
			m[fmt.Sprintf("MODULE_%032d", 1499)], m["__husk_k"])
	}
}

// TestNonUTF8Bytes: arguments and variables that are not UTF-8 (a file
// name in Latin-1) reach the command byte for byte, in a container and
// in a join; the stages' JSON had made them U+FFFD.
func TestNonUTF8Bytes(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	cfg := "HUSK_CONFIGDIR=" + filepath.Join(dir, "cfg")
	want := "caf\xe9|\xff\xfe"
	cmd := userCmd(dir, "exec", img, "sh", "-c", `printf '%s|%s' "$1" "$LAT"`, "_", "caf\xe9")
	cmd.Env = append(cmd.Env, "LAT=\xff\xfe", cfg)
	if r := runCmd(t, cmd); r.code != 0 || r.stdout != want {
		t.Errorf("exec: %q, want %q\n%s", r.stdout, want, r)
	}
	if r := huskEnv(t, dir, []string{cfg}, "instance", "start", img, "raw"); r.code != 0 {
		t.Fatalf("instance start: %s", r)
	}
	defer huskEnv(t, dir, []string{cfg}, "instance", "stop", "raw")
	cmd = userCmd(dir, "exec", "instance://raw", "sh", "-c", `printf '%s|%s' "$1" "$LAT"`,
		"_", "caf\xe9")
	cmd.Env = append(cmd.Env, "LAT=\xff\xfe", cfg)
	if r := runCmd(t, cmd); r.code != 0 || r.stdout != want {
		t.Errorf("join: %q, want %q\n%s", r.stdout, want, r)
	}
}

// TestBashAsSh: an image whose /bin/sh is bash (RHEL's) gets the host's
// TERM and the default PATH, not bash's (TERM=dumb, a PATH ending in ".").
func TestBashAsSh(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	ov := filepath.Join(dir, "bashsh")
	if err := os.MkdirAll(filepath.Join(ov, "usr", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("bash", filepath.Join(ov, "usr", "bin", "sh")); err != nil {
		t.Fatal(err)
	}
	m := containerEnviron(t, dir, []string{"TERM=xterm-256color"}, "exec", "--overlay",
		ov+":ro", img)
	if m["TERM"] != "xterm-256color" || m["PATH"] != DefaultPath {
		t.Errorf("TERM=%q PATH=%q, want xterm-256color and %q", m["TERM"], m["PATH"],
			DefaultPath)
	}
}

// TestHuskEnvVariable: HUSK_ENV is no --env (kong had read every flag's
// HUSK_ variable, and an unrelated HUSK_ENV=x failed every run).
func TestHuskEnvVariable(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	m := containerEnviron(t, dir, []string{"HUSK_ENV=x"}, "exec", img)
	if _, ok := m["x"]; ok || m["PATH"] == "" {
		t.Errorf("HUSK_ENV=x: %v", m)
	}
}
