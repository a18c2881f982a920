// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The test binary plays every role (os/exec's exec_test.go pattern):
//   - the test itself, as root;
//   - a helper that calls Run as an unprivileged user (helperEnv=run);
//   - stage 1 and stage 2, re-executed from the helper by Run: TestMain
//     calls Main first, with a Mounter that copies a small tree of host
//     binaries into a tmpfs instead of mounting the FUSE union.

const (
	helperEnv = "HUSK_SANDBOX_TEST_HELPER"
	// testUID and testGID are the unprivileged user the helpers run as.
	testUID, testGID = 65534, 65534
)

// testBase is a 0755 directory for this test run: the copied test binary,
// the template tree, and per-test directories owned by testUID.
var testBase, testBin, testTree string

func TestMain(m *testing.M) {
	Main(testMounter{})
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(runHelper(h))
	}
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if os.Getuid() != 0 {
		fmt.Fprintln(os.Stderr, "sandbox tests run as root: they start helpers as uid 65534")
		return 1
	}
	var err error
	testBase, err = os.MkdirTemp("", "husk-sandbox-test-")
	if err == nil {
		err = os.Chmod(testBase, 0o755)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(testBase)

	// go test builds under a 0700 directory: copy the binary where the
	// unprivileged helper can execute it.
	testBin = filepath.Join(testBase, "sandbox.test")
	testTree = filepath.Join(testBase, "tree")
	if err := copyFile("/proc/self/exe", testBin, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := buildTree(testTree); err != nil {
		fmt.Fprintln(os.Stderr, "building the test tree:", err)
		return 1
	}
	return m.Run()
}

// helperResult is what the run helper reports on fd 3.
type helperResult struct {
	Status int
	Err    string
}

// runHelper is the unprivileged husk: it calls Run with the spec from the
// environment.
func runHelper(name string) int {
	if name == "nouserns" {
		// Root of a user namespace made by the test: forbid nested ones.
		err := os.WriteFile("/proc/sys/user/max_user_namespaces", []byte("0"), 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			return 2
		}
	}
	var spec Spec
	if err := json.Unmarshal([]byte(os.Getenv("HUSK_SANDBOX_TEST_SPEC")), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	var files []*os.File
	for _, p := range strings.Fields(os.Getenv("HUSK_SANDBOX_TEST_FILES")) {
		f, err := os.Open(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			return 2
		}
		files = append(files, f)
	}
	level := slog.LevelInfo
	if os.Getenv("HUSK_SANDBOX_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	var status int
	var err error
	switch name {
	case "instance":
		status, err = runInstanceHelper(&spec, files, log)
	case "join":
		status, err = Join(context.Background(), os.Getenv("HUSK_SANDBOX_TEST_SOCKET"),
			JoinRequest{Args: spec.Args, Env: spec.Env, Umask: 0o022}, log)
	default:
		status, err = Run(context.Background(), &spec, files, log)
	}
	res := helperResult{Status: status}
	if err != nil {
		res.Err = err.Error()
	}
	out := os.NewFile(3, "result")
	if err := json.NewEncoder(out).Encode(res); err != nil {
		return 2
	}
	return 0
}

// env is one test's unprivileged user environment.
type env struct {
	t                  *testing.T
	dir, home, tmp, wd string
}

// newEnv makes directories owned by the test user: a home, a TMPDIR for
// the session directory and a working directory.
func newEnv(t *testing.T) *env {
	t.Helper()
	dir, err := os.MkdirTemp(testBase, "t-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir}
	for _, d := range []*string{&e.home, &e.tmp, &e.wd} {
		*d, err = os.MkdirTemp(dir, "")
		if err == nil {
			err = os.Chown(*d, testUID, testGID)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// spec returns a Spec for the test user running args.
func (e *env) spec(args ...string) *Spec {
	return &Spec{
		Args:     args,
		Env:      []string{"PATH=/usr/bin:/bin", "HOME=" + e.home},
		Umask:    0o022,
		UID:      testUID,
		GID:      testGID,
		Username: "nobody",
		HomeDir:  e.home,
		Union:    unionJSON(testUnion{Tree: testTree}),
	}
}

func unionJSON(u testUnion) json.RawMessage {
	b, err := json.Marshal(u)
	if err != nil {
		panic(err)
	}
	return b
}

// result is one finished run.
type result struct {
	helperResult
	Stdout, Stderr string
}

// run runs spec through the unprivileged helper and checks that nothing
// is left behind: no session directory, no mount.
func (e *env) run(spec *Spec, files ...string) result {
	e.t.Helper()
	h := e.helper("run", spec, files...)
	var stdout, stderr strings.Builder
	h.cmd.Stdout, h.cmd.Stderr = &stdout, &stderr
	h.start()
	res := h.wait(&stderr)
	res.Stdout, res.Stderr = stdout.String(), stderr.String()
	e.checkClean()
	return res
}

// helperProc is a started (or ready to start) helper process.
type helperProc struct {
	t          *testing.T
	cmd        *exec.Cmd
	resR, resW *os.File
}

// helper prepares the helper process; the caller may set its stdio.
func (e *env) helper(name string, spec *Spec, files ...string) *helperProc {
	e.t.Helper()
	b, err := json.Marshal(spec)
	if err != nil {
		e.t.Fatal(err)
	}
	resR, resW, err := os.Pipe()
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { resR.Close(); resW.Close() })
	cmd := exec.Command(testBin)
	cmd.Dir = e.wd
	cmd.Env = []string{
		helperEnv + "=" + name,
		"HUSK_SANDBOX_TEST_SPEC=" + string(b),
		"HUSK_SANDBOX_TEST_FILES=" + strings.Join(files, " "),
		"TMPDIR=" + e.tmp,
		"HUSK_SANDBOX_TEST_DEBUG=" + os.Getenv("HUSK_SANDBOX_TEST_DEBUG"),
		"HUSK_SANDBOX_TEST_SOCKET=" + filepath.Join(e.wd, "sock"),
	}
	cmd.ExtraFiles = []*os.File{resW}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: testUID, Gid: testGID, NoSetGroups: true},
	}
	return &helperProc{t: e.t, cmd: cmd, resR: resR, resW: resW}
}

func (h *helperProc) start() {
	h.t.Helper()
	if err := h.cmd.Start(); err != nil {
		h.t.Fatalf("starting helper: %v", err)
	}
	// Our copy of the write end must go, or the result never reaches EOF.
	h.resW.Close()
}

// wait waits for the helper and reads its report.
func (h *helperProc) wait(stderr fmt.Stringer) result {
	h.t.Helper()
	var res helperResult
	derr := json.NewDecoder(bufio.NewReader(h.resR)).Decode(&res)
	werr := h.cmd.Wait()
	if werr != nil || derr != nil {
		h.t.Fatalf("helper: %v, result: %v\nstderr:\n%s", werr, derr, stderr)
	}
	return result{helperResult: res}
}

// checkClean asserts that the run left no session directory and no
// mount on the host.
func (e *env) checkClean() {
	e.t.Helper()
	ents, err := os.ReadDir(e.tmp)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, ent := range ents {
		e.t.Errorf("left behind in TMPDIR: %s", ent.Name())
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		e.t.Fatal(err)
	}
	if strings.Contains(string(mi), e.tmp) {
		e.t.Errorf("mount left under %s:\n%s", e.tmp, mi)
	}
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
