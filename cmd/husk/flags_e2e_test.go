package main

// End-to-end tests of Apptainer's mount, network and capability flags:
// --mount, --scratch, --workdir, --dns, --add-caps, --drop-caps,
// --no-privs, --keep-privs, --security, --net and --network.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --mount binds like --bind, read-only with ro; bad specs fail like
// Apptainer's parser.
func TestMountFlag(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	src := filepath.Join(dir, "src")
	os.Mkdir(src, 0o755)
	os.WriteFile(filepath.Join(src, "f"), []byte("from host\n"), 0o644)
	chown(t, src)

	r := ok(t, dir, "exec", "--mount", "type=bind,source="+src+",destination=/mnt/a,ro",
		"--mount", "src="+src+",dst=/mnt/b", img, "sh", "-c",
		"cat /mnt/a/f; touch /mnt/a/x 2>/dev/null && echo a-writable; echo b > /mnt/b/y")
	if r.stdout != "from host\n" {
		t.Errorf("stdout %q, want the host file and a read-only /mnt/a", r.stdout)
	}
	if b, err := os.ReadFile(filepath.Join(src, "y")); err != nil || string(b) != "b\n" {
		t.Errorf("write through the rw --mount: %q, %v", b, err)
	}
	// One flag value may hold several mounts, one per line (CSV records).
	r = ok(t, dir, "exec", "--mount", "type=bind,src="+src+",dst=/one\n"+
		"\"src="+src+"\",dst=/two,readonly", img, "sh", "-c", "cat /one/f /two/f")
	if r.stdout != "from host\nfrom host\n" {
		t.Errorf("two mounts in one value: stdout %q", r.stdout)
	}
	// Apptainer's variables, and their aliases, set the flags too.
	r = huskEnv(t, dir, []string{"APPTAINER_MOUNT=src=" + src + ",dst=/e1\nsrc=" + src +
		",dst=/e2", "SINGULARITY_SCRATCHDIR=/s9", "APPTAINER_DNS=192.0.2.9"}, "exec", img,
		"sh", "-c", "cat /e1/f /e2/f; test -d /s9 && grep -c 192.0.2.9 /etc/resolv.conf")
	if r.code != 0 || r.stdout != "from host\nfrom host\n1\n" {
		t.Errorf("mount, scratch and dns variables: %s", r)
	}
	for _, c := range []struct{ spec, want string }{
		{"type=volume,src=/tmp,dst=/x", "unsupported mount type \"volume\""},
		{"src=/tmp", "mounts must specify a source and a destination"},
		{"src=/tmp,dst=/x,bogus=1", "invalid key \"bogus\" in mount specification"},
		{"src=/tmp,dst=/x,bind-propagation=shared", "bind-propagation not supported"},
	} {
		fatalLine(t, husk(t, dir, "exec", "--mount", c.spec, img, "true"), c.want)
	}
}

// --scratch gives each container fresh directories: in memory without
// --workdir, under WORKDIR/scratch with it. --workdir with --contain
// holds /tmp, /var/tmp and home.
func TestScratchAndWorkdir(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	script := "ls -A /scratch /s2; touch /scratch/f /s2/g && echo ok"
	for i := 0; i < 2; i++ {
		r := ok(t, dir, "exec", "--scratch", "/scratch,/s2", img, "sh", "-c", script)
		if r.stdout != "/s2:\n\n/scratch:\nok\n" && r.stdout != "/scratch:\n\n/s2:\nok\n" {
			t.Fatalf("run %d: scratch not empty and writable: %q", i, r.stdout)
		}
	}

	work := filepath.Join(dir, "work")
	os.Mkdir(work, 0o755)
	chown(t, work)
	ok(t, dir, "exec", "--contain", "--workdir", work, "--scratch", "/data", img, "sh", "-c",
		"echo t > /tmp/t; echo v > /var/tmp/v; echo h > $HOME/h; echo d > /data/d")
	for p, want := range map[string]string{"tmp/t": "t\n", "var_tmp/v": "v\n",
		"home/h": "h\n", "scratch/data/d": "d\n"} {
		if b, err := os.ReadFile(filepath.Join(work, p)); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", p, b, err, want)
		}
	}
	st, err := os.Stat(filepath.Join(work, "tmp"))
	if err != nil || st.Mode()&os.ModeSticky == 0 || st.Mode().Perm() != 0o777 {
		t.Errorf("work tmp mode: %v, %v; want sticky 0777", st.Mode(), err)
	}
	// Without --contain, /tmp stays the host's.
	os.WriteFile(filepath.Join(work, "tmp", "t2"), nil, 0o644)
	if r := husk(t, dir, "exec", "--workdir", work, img, "test", "-e", "/tmp/t2"); r.code == 0 {
		t.Errorf("/tmp came from --workdir without --contain")
	}
	fatalLine(t, husk(t, dir, "exec", "--workdir", filepath.Join(dir, "none"), img, "true"),
		"--workdir", "no such file or directory")
}

// --dns writes the container's resolv.conf; bad addresses are refused.
func TestDNSFlag(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	r := ok(t, dir, "exec", "--dns", "192.0.2.1, 2001:db8::1", img, "cat", "/etc/resolv.conf")
	if want := "nameserver 192.0.2.1\nnameserver 2001:db8::1\n"; r.stdout != want {
		t.Errorf("resolv.conf %q, want %q", r.stdout, want)
	}
	fatalLine(t, husk(t, dir, "exec", "--dns", "example.org", img, "true"),
		"dns ip example.org is not a valid IP address")
}

// capLine returns the hex mask of a Cap* line of /proc/self/status.
func capLine(t *testing.T, status, name string) string {
	t.Helper()
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in %q", name, status)
	return ""
}

// Capabilities: a user payload gets --add-caps as ambient capabilities;
// root (--fakeroot) loses --drop-caps, or all with --no-privs;
// --keep-privs needs root.
func TestCapabilityFlags(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	status := []string{"cat", "/proc/self/status"}
	cases := []struct {
		flags      []string
		eff, bound string
	}{
		{nil, "0000000000000000", ""},
		// CAP_DAC_OVERRIDE is 1, CAP_NET_RAW 13.
		{[]string{"--add-caps", "net_raw,CAP_DAC_OVERRIDE"}, "0000000000002002", ""},
		{[]string{"--add-caps", "CAP_NET_RAW", "--drop-caps", "CAP_NET_RAW"},
			"0000000000000000", ""},
		{[]string{"--fakeroot", "--drop-caps", "CAP_CHOWN,CAP_DAC_OVERRIDE"},
			"000001fffffffffc", "000001fffffffffc"},
		{[]string{"--fakeroot", "--no-privs", "--add-caps", "CAP_KILL"},
			"0000000000000020", "0000000000000020"},
		{[]string{"--fakeroot", "--keep-privs"}, "000001ffffffffff", "000001ffffffffff"},
	}
	for _, c := range cases {
		args := append(append([]string{"exec"}, c.flags...), append([]string{img},
			status...)...)
		r := ok(t, dir, args...)
		if got := capLine(t, r.stdout, "CapEff"); got != c.eff {
			t.Errorf("%v: CapEff %s, want %s", c.flags, got, c.eff)
		}
		if c.bound != "" {
			if got := capLine(t, r.stdout, "CapBnd"); got != c.bound {
				t.Errorf("%v: CapBnd %s, want %s", c.flags, got, c.bound)
			}
		}
	}
	// What the capabilities are for: root without CAP_DAC_OVERRIDE and
	// CAP_DAC_READ_SEARCH cannot read its own mode 000 file.
	script := "echo x > /tmp/f; chmod 000 /tmp/f; cat /tmp/f"
	if r := ok(t, dir, "exec", "-c", "--fakeroot", img, "sh", "-c", script); r.stdout != "x\n" {
		t.Errorf("root could not read a mode 000 file: %s", r)
	}
	r := husk(t, dir, "exec", "-c", "--fakeroot", "--drop-caps",
		"dac_override,dac_read_search", img, "sh", "-c", script)
	if r.code == 0 || !strings.Contains(r.stderr, "Permission denied") {
		t.Errorf("root without CAP_DAC_OVERRIDE read a mode 000 file: %s", r)
	}

	// A joined command gets its own capability flags.
	cfg := []string{"HUSK_CONFIGDIR=" + filepath.Join(dir, "cfg")}
	if r := huskEnv(t, dir, cfg, "instance", "start", img, "caps"); r.code != 0 {
		t.Fatalf("instance start: %s", r)
	}
	defer huskEnv(t, dir, cfg, "instance", "stop", "caps")
	r = huskEnv(t, dir, cfg, append([]string{"exec", "--add-caps", "CAP_KILL",
		"instance://caps"}, status...)...)
	if got := capLine(t, r.stdout, "CapEff"); r.code != 0 || got != "0000000000000020" {
		t.Errorf("joined --add-caps CAP_KILL: CapEff %s\n%s", got, r)
	}

	r = husk(t, dir, "exec", "--add-caps", "CAP_BOGUS", img, "true")
	if r.code != 0 || r.stderr != "WARNING: won't add unknown capability: CAP_BOGUS\n" {
		t.Errorf("unknown capability: %s", r)
	}
	fatalLine(t, husk(t, dir, "exec", "--keep-privs", img, "true"),
		"--keep-privs requires root privileges")
}

// --network none gives a network namespace with loopback only; other
// networks need Apptainer's setuid setup (--fakeroot falls back to none).
func TestNetworkFlags(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	script := "sed -n '3,$p' /proc/net/dev | cut -d: -f1 | tr -d ' '; python3 -c '" +
		"import socket; s = socket.socket(); s.bind((\"127.0.0.1\", 0)); s.listen(); " +
		"c = socket.create_connection(s.getsockname()); print(\"lo up\")'"
	r := ok(t, dir, "exec", "--net", "--network", "none", img, "sh", "-c", script)
	if r.stdout != "lo\nlo up\n" {
		t.Errorf("--network none: stdout %q, want only lo, up", r.stdout)
	}
	r = ok(t, dir, "exec", "--fakeroot", "--net", img, "sh", "-c", script)
	if r.stdout != "lo\nlo up\n" || !strings.Contains(r.stderr, "fallback to 'none' network") {
		t.Errorf("--fakeroot --net: %s", r)
	}
	// With --contain, /etc/hosts is Apptainer's localhost-only file.
	r = ok(t, dir, "exec", "-c", "--network", "none", img, "cat", "/etc/hosts")
	if !strings.HasPrefix(r.stdout, "127.0.0.1   localhost\n::1 ") {
		t.Errorf("--contain --network none: /etc/hosts %q", r.stdout)
	}
	fatalLine(t, husk(t, dir, "exec", "--net", img, "true"),
		"network requires root or a suid installation", "--network=none")
	fatalLine(t, husk(t, dir, "exec", "--network", "bridge", img, "true"),
		"network requires root or a suid installation")
}

// --security: AppArmor profiles are warned about and ignored (seccomp: see
// seccomp_e2e_test.go), uid and gid must be the mapped ones.
func TestSecurityFlag(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	r := ok(t, dir, "exec", "--security", "apparmor:none", "--security", "uid:1500",
		"--security", "gid:1500", img, "id", "-u")
	if r.stdout != "1500\n" || !strings.Contains(r.stderr,
		"WARNING: --security apparmor:none: husk cannot apply apparmor profiles") {
		t.Errorf("--security apparmor: %s", r)
	}
	ok(t, dir, "exec", "--fakeroot", "--security", "uid:0", img, "true")
	fatalLine(t, husk(t, dir, "exec", "--security", "uid:0", img, "true"),
		"only uid 1500 is mapped")
	fatalLine(t, husk(t, dir, "exec", "--security", "bogus:1", img, "true"),
		"unknown type \"bogus\"")
}

// An instance with --network none keeps one network namespace: a joined
// command reaches a server the instance listens with on its loopback.
func TestInstanceNetworkNone(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	meta := metaOverlay(t, dir, map[string]string{
		"startscript": "#!/bin/sh\nexec python3 -c 'import socket, time; s = socket.socket(); " +
			"s.bind((\"127.0.0.1\", 7777)); s.listen(); print(\"listening\", flush=True); " +
			"time.sleep(600)'\n",
	})
	cfg := []string{"HUSK_CONFIGDIR=" + filepath.Join(dir, "cfg")}
	if r := huskEnv(t, dir, cfg, "instance", "start", "--network", "none", "--overlay", meta,
		img, "srv"); r.code != 0 {
		t.Fatalf("instance start: %s", r)
	}
	defer huskEnv(t, dir, cfg, "instance", "stop", "srv")
	client := "import socket, time\nfor i in range(100):\n    try:\n" +
		"        socket.create_connection((\"127.0.0.1\", 7777)); print(\"connected\"); break\n" +
		"    except OSError:\n        time.sleep(0.1)\n"
	r := huskEnv(t, dir, cfg, "exec", "instance://srv", "python3", "-c", client)
	if r.code != 0 || r.stdout != "connected\n" {
		t.Errorf("joined command could not reach the instance's loopback: %s", r)
	}
	// The host's network namespace is not the instance's.
	r = ok(t, dir, "exec", img, "python3", "-c", "import socket\ntry:\n"+
		"    socket.create_connection((\"127.0.0.1\", 7777)); print(\"host\")\n"+
		"except OSError:\n    print(\"refused\")\n")
	if r.stdout != "refused\n" {
		t.Errorf("the instance's server is reachable from the host: %q", r.stdout)
	}
}

// TestVersionFlag: --version, as Apptainer has it besides the version
// command, prints the same and exits 0 wherever it is given; HUSK_VERSION
// in the environment does not turn it on.
func TestVersionFlag(t *testing.T) {
	setup(t)
	dir := workDir(t)
	want := ok(t, dir, "version").stdout
	if !strings.HasPrefix(want, "husk version ") {
		t.Fatalf("husk version: %q", want)
	}
	for _, args := range [][]string{{"--version"}, {"exec", "--version"}} {
		if r := ok(t, dir, args...); r.stdout != want {
			t.Errorf("husk %s: %s", strings.Join(args, " "), r)
		}
	}
	cmd := userCmd(dir, "sif", "list", "/nonexistent.sif")
	cmd.Env = append(cmd.Env, "HUSK_VERSION=1")
	if out, err := cmd.CombinedOutput(); err == nil || strings.Contains(string(out), want) {
		t.Errorf("HUSK_VERSION=1 husk sif list: %v, %s", err, out)
	}
}

// A working directory removed since husk's shell entered it, or one the
// user may not search, does not stop the container, as in Apptainer: a
// removed one is not bound (a warning says so) and the command starts in
// the home directory, or where --pwd says. Both were fatal ("getwd").
func TestUnknownWorkingDir(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	run := func(script string) result {
		t.Helper()
		cmd := userCmd(dir, "-c", script)
		cmd.Path, cmd.Args[0] = "/bin/sh", "sh"
		cmd.Env = append(cmd.Env, "HUSK="+huskBin, "IMG="+img)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		r := result{stdout: out.String(), stderr: errb.String()}
		if err != nil {
			r.code = cmd.ProcessState.ExitCode()
		}
		return r
	}
	r := run(`mkdir gone && cd gone && rmdir ../gone && "$HUSK" exec "$IMG" pwd`)
	if r.code != 0 || r.stdout != "/home/"+testUser+"\n" ||
		!strings.Contains(r.stderr, "cannot tell the current working directory") {
		t.Errorf("from a removed directory: %v", r)
	}
	r = run(`mkdir gone2 && cd gone2 && rmdir ../gone2 && "$HUSK" exec --pwd /etc "$IMG" pwd`)
	if r.code != 0 || r.stdout != "/etc\n" {
		t.Errorf("from a removed directory, --pwd /etc: %v", r)
	}
	r = run(`mkdir shut && cd shut && chmod 0 . && "$HUSK" exec -c "$IMG" pwd; s=$?;
		chmod 755 "$OLDPWD/shut"; exit $s`)
	if r.code != 0 || r.stdout != "/home/"+testUser+"\n" {
		t.Errorf("from a directory the user may not search, -c: %v", r)
	}
}

// --cache-size and $HUSK_CACHE_SIZE size each squashfs layer's caches in
// the FUSE server (stage 1 logs the budget it got); a bad size is one
// line and exit 255 before anything starts.
func TestCacheSizeFlag(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	budget := func(r result) string {
		for _, l := range strings.Split(r.stderr, "\n") {
			if strings.Contains(l, "squashfs layer") {
				_, v, _ := strings.Cut(l, " cache=")
				return strings.Fields(v + " ")[0]
			}
		}
		return ""
	}
	r := ok(t, dir, "--debug", "exec", "--cache-size", "4M", img, "sh", "-c",
		"cat /usr/bin/* >/dev/null && echo read")
	if r.stdout != "read\n" || budget(r) != "4194304" {
		t.Errorf("--cache-size 4M: stdout %q, budget %q\n%s", r.stdout, budget(r), r.stderr)
	}
	r = huskEnv(t, dir, []string{"HUSK_CACHE_SIZE=1G"}, "--debug", "exec", img, "true")
	if r.code != 0 || budget(r) != "1073741824" {
		t.Errorf("HUSK_CACHE_SIZE=1G: budget %q\n%s", budget(r), r)
	}
	r = ok(t, dir, "--debug", "exec", img, "true")
	if budget(r) != "33554432" {
		t.Errorf("default budget %q, want 32 MiB", budget(r))
	}
	// An empty variable is no setting, as for husk's other variables.
	r = huskEnv(t, dir, []string{"HUSK_CACHE_SIZE="}, "--debug", "exec", img, "true")
	if r.code != 0 || budget(r) != "33554432" {
		t.Errorf("HUSK_CACHE_SIZE empty: budget %q, want 32 MiB\n%s", budget(r), r)
	}
	fatalLine(t, husk(t, dir, "exec", "--cache-size", "lots", img, "true"),
		`--cache-size: "lots" is not a size`)
	fatalLine(t, husk(t, dir, "exec", "--cache-size", "100K", img, "true"),
		`"100K" is less than 1 MiB`)
}

// TestBindOverProcWithPID: a bind onto a /proc file (LXCFS's cpuinfo and
// meminfo) holds with --pid and --containall too, where the container's
// own procfs had been mounted over it.
func TestBindOverProcWithPID(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	fake := filepath.Join(dir, "cpuinfo")
	if err := os.WriteFile(fake, []byte("fake cpuinfo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, flags := range [][]string{nil, {"--pid"}, {"-C"}} {
		args := append(append([]string{"exec"}, flags...), "-B", fake+":/proc/cpuinfo:ro", img,
			"head", "-1", "/proc/cpuinfo")
		if r := ok(t, dir, args...); r.stdout != "fake cpuinfo\n" {
			t.Errorf("%v: /proc/cpuinfo reads %q", flags, r.stdout)
		}
	}
	// With --pid the destination is resolved in the container's procfs,
	// not through the image's /proc directory, whose link had sent the
	// bind onto /etc/issue.net too; and one through /proc/self (as
	// /proc/mounts is) is refused there as well.
	pl := filepath.Join(dir, "pl")
	os.MkdirAll(filepath.Join(pl, "proc"), 0o755)
	os.Symlink("/etc/issue.net", filepath.Join(pl, "proc", "meminfo"))
	r := ok(t, dir, "exec", "--pid", "--overlay", pl+":ro", "-B", fake+":/proc/meminfo", img,
		"sh", "-c", "head -1 /proc/meminfo; cat /etc/issue.net")
	if r.stdout != "fake cpuinfo\nDebian GNU/Linux 12\n" {
		t.Errorf("--pid, /proc/meminfo linked in the image: %q", r.stdout)
	}
	fatalLine(t, husk(t, dir, "exec", "--pid", "-B", fake+":/proc/mounts", img, "true"),
		"mount destination /proc/mounts [binds]: cannot bind onto a process's /proc entry")
}
