package main

// End-to-end harness: the husk binary is built once and run as the
// unprivileged user husktest (uid 1500), on a Debian bookworm minbase +
// python3 SIF made by `husk build` and cached across runs.

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

const (
	testUser = "husktest"
	testUID  = 1500
)

var (
	huskBin  string // the built binary, readable and executable by everyone
	scratch  string // a 0755 directory for per-test work dirs
	setupErr error

	sifOnce sync.Once
	sifPath string
	sifErr  error
)

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "husk-e2e-")
		if err != nil {
			setupErr = err
			return m.Run()
		}
		defer os.RemoveAll(dir)
		os.Chmod(dir, 0o755)
		scratch = dir
		huskBin = filepath.Join(dir, "husk")
		out, err := exec.Command("go", "build", "-o", huskBin, ".").CombinedOutput()
		if err != nil {
			setupErr = fmt.Errorf("go build: %v\n%s", err, out)
		} else {
			os.Chmod(huskBin, 0o755)
		}
		return m.Run()
	}()
	os.Exit(code)
}

// setup fails the test unless the binary, the user and /dev/fuse are ready.
func setup(t testing.TB) {
	t.Helper()
	if setupErr != nil {
		t.Fatal(setupErr)
	}
	if _, err := user.Lookup(testUser); err != nil {
		if os.Geteuid() != 0 {
			t.Fatalf("user %s is missing; as root: useradd -m -u %d %s", testUser, testUID,
				testUser)
		}
		out, err := exec.Command("useradd", "-m", "-u", strconv.Itoa(testUID), testUser).
			CombinedOutput()
		if err != nil {
			t.Fatalf("useradd %s: %v\n%s", testUser, err, out)
		}
	}
	if os.Geteuid() != 0 {
		t.Fatalf("end-to-end tests run as root (to switch to %s)", testUser)
	}
	st, err := os.Stat("/dev/fuse")
	if err != nil {
		t.Fatalf("/dev/fuse: %v (modprobe fuse)", err)
	}
	if st.Mode().Perm()&0o006 != 0o006 {
		t.Fatalf("/dev/fuse is mode %o; rootless FUSE needs 0666: chmod 0666 /dev/fuse",
			st.Mode().Perm())
	}
}

// workDir returns a fresh directory owned by the test user.
func workDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp(scratch, "w-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	chown(t, d)
	return d
}

// ownSIF copies the Debian SIF to dir/name, owned by the test user, for a
// test that changes it.
func ownSIF(t testing.TB, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	tool(t, "cp", "--sparse=always", debianSIF(t), p)
	chown(t, p)
	return p
}

func chown(t testing.TB, p string) {
	t.Helper()
	if err := os.Chown(p, testUID, testUID); err != nil {
		t.Fatal(err)
	}
}

// result is one husk run.
type result struct {
	stdout, stderr string
	code           int
	// signaled says husk itself died of a signal (code is then 128+N).
	signaled bool
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
}

// userCmd prepares husk args as the test user in dir.
func userCmd(dir string, args ...string) *exec.Cmd {
	cmd := exec.Command(huskBin, args...)
	cmd.Dir = dir
	cmd.Env = []string{"HOME=/home/" + testUser, "USER=" + testUser, "LANG=C",
		"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "TERM=dumb"}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: testUID, Gid: testUID},
		Setpgid:    true,
	}
	return cmd
}

// husk runs the binary as the test user and returns what it did.
func husk(t testing.TB, dir string, args ...string) result {
	t.Helper()
	return runCmd(t, userCmd(dir, args...))
}

// runCmd runs cmd (made by userCmd) and returns what it did: its output,
// and its exit status or 128+N for death by signal N.
func runCmd(t testing.TB, cmd *exec.Cmd) result {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			r.code, r.signaled = 128+int(ws.Signal()), true
		}
	default:
		t.Fatalf("%v: %v", cmd.Args, err)
	}
	return r
}

// ok runs husk and fails the test unless it exits 0.
func ok(t testing.TB, dir string, args ...string) result {
	t.Helper()
	r := husk(t, dir, args...)
	if r.code != 0 {
		t.Fatalf("husk %s:\n%s", strings.Join(args, " "), r)
	}
	return r
}

// tool runs a host tool as root and returns its combined output.
func tool(t testing.TB, name string, args ...string) string {
	t.Helper()
	path := lookTool(t, name)
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func lookTool(t testing.TB, name string) string {
	t.Helper()
	for _, p := range []string{name, "/usr/sbin/" + name, "/sbin/" + name} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	pkg := map[string]string{"mksquashfs": "squashfs-tools", "debootstrap": "debootstrap"}[name]
	if pkg == "" {
		pkg = "e2fsprogs"
	}
	t.Fatalf("%s not found: apt-get install %s", name, pkg)
	return ""
}

// fsckClean fails the test unless e2fsck -fn finds the ext3 at path
// (optionally at a byte offset) clean.
func fsckClean(t testing.TB, path string, offset int64) {
	t.Helper()
	target := path
	if offset > 0 {
		target = fmt.Sprintf("%s?offset=%d", path, offset)
	}
	tool(t, "e2fsck", "-fn", target)
}

// cacheDir is where the Debian root filesystem and SIF are kept.
func cacheDir() string {
	if d := os.Getenv("HUSK_TEST_CACHE"); d != "" {
		return d
	}
	return "/var/tmp/husk-cache"
}

// debianSIF returns the cached Debian SIF, building it on first use:
// debootstrap into <cache>/rootfs (through a temporary name), then
// `husk build <cache>/debian.sif <cache>/rootfs`. testdata/mkimage.sh
// does the same with the same paths.
func debianSIF(t testing.TB) string {
	t.Helper()
	sifOnce.Do(func() { sifPath, sifErr = buildDebianSIF() })
	if sifErr != nil {
		t.Fatal(sifErr)
	}
	return sifPath
}

func buildDebianSIF() (string, error) {
	cache := cacheDir()
	rootfs := filepath.Join(cache, "rootfs")
	out := filepath.Join(cache, "debian.sif")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	os.Chmod(cache, 0o755)
	rst, rerr := os.Stat(rootfs)
	sst, serr := os.Stat(out)
	if serr == nil && (rerr != nil || !rst.ModTime().After(sst.ModTime())) {
		return out, nil
	}
	if rerr != nil {
		if err := makeRootfs(cache, rootfs); err != nil {
			return "", err
		}
	}
	tmp := fmt.Sprintf("%s.tmp.%d", out, os.Getpid())
	if b, err := exec.Command(huskBin, "build", tmp, rootfs).CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("husk build %s %s: %v\n%s", tmp, rootfs, err, b)
	}
	os.Chmod(tmp, 0o644)
	return out, os.Rename(tmp, out)
}

// makeRootfs debootstraps Debian bookworm minbase + python3. A finished
// run of the lead's manual debootstrap (rootfs.tmp, with /tmp/debootstrap.log
// ending in rc=0) is adopted instead.
func makeRootfs(cache, rootfs string) error {
	manual := filepath.Join(cache, "rootfs.tmp")
	if log, err := os.ReadFile("/tmp/debootstrap.log"); err == nil &&
		strings.HasSuffix(strings.TrimSpace(string(log)), "rc=0") {
		if st, err := os.Stat(manual); err == nil && st.IsDir() {
			return os.Rename(manual, rootfs)
		}
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s is missing and debootstrap needs root", rootfs)
	}
	db, err := exec.LookPath("debootstrap")
	if err != nil {
		if db, err = exec.LookPath("/usr/sbin/debootstrap"); err != nil {
			return errors.New("debootstrap not found: apt-get install debootstrap")
		}
	}
	tmp := fmt.Sprintf("%s.tmp.%d", rootfs, os.Getpid())
	os.RemoveAll(tmp)
	mirror := os.Getenv("HUSK_DEBIAN_MIRROR")
	if mirror == "" {
		mirror = "http://deb.debian.org/debian"
	}
	b, err := exec.Command(db, "--variant=minbase", "--include=python3", "bookworm", tmp,
		mirror).CombinedOutput()
	if err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("debootstrap: %v\n%s", err, lastLines(b, 20))
	}
	return os.Rename(tmp, rootfs)
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitFile waits for a file to appear, failing after a generous minute.
func waitFile(t testing.TB, p string) {
	t.Helper()
	for i := 0; i < 600; i++ {
		if _, err := os.Stat(p); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not appear", p)
}

// fatalLine checks r is husk's failure: exit 255 and exactly one stderr
// line, "FATAL:   ..." containing every want.
func fatalLine(t testing.TB, r result, want ...string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if r.code != 255 || len(lines) != 1 || !strings.HasPrefix(lines[0], "FATAL:   ") {
		t.Fatalf("want exit 255 and one FATAL line, got:\n%s", r)
	}
	for _, w := range want {
		if !strings.Contains(lines[0], w) {
			t.Errorf("FATAL line %q does not contain %q", lines[0], w)
		}
	}
}
