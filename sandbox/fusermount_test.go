// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
)

// fusermountTestMount is testMounter in fusermount3 mode, in stage 3 on
// the host: a go-fuse loopback of a copy of the tree, mounted through
// the setuid fusermount3. In stage 1 (not Spec.Fusermount) it refuses
// with EPERM, as a kernel without FUSE in user namespaces does.
func fusermountTestMount(spec *Spec, u testUnion, target string) (Mounted, error) {
	if !spec.Fusermount {
		return nil, &os.PathError{Op: "mount", Path: target, Err: syscall.EPERM}
	}
	// The server is the user on the host: no tmpfs, a directory of its
	// own next to the mount point.
	layer := target + ".layer"
	if err := os.Mkdir(layer, 0o755); err != nil {
		return nil, err
	}
	if err := copyTree(u.Tree, layer); err != nil {
		os.RemoveAll(layer)
		return nil, err
	}
	root, err := fusefs.NewLoopbackRoot(layer)
	if err != nil {
		os.RemoveAll(layer)
		return nil, err
	}
	srv, err := fusefs.Mount(target, root, &fusefs.Options{})
	if err != nil {
		os.RemoveAll(layer)
		return nil, err
	}
	return &testMounted{root: target, layer: layer, u: u, srv: srv, hosted: true}, nil
}

// unmountHosted is Unmount in fusermount3 mode: fusermount3 -u, then
// the layer directory goes.
func (m *testMounted) unmountHosted() error {
	err := m.srv.Unmount()
	m.srv.Wait()
	err = errors.Join(err, os.RemoveAll(m.layer))
	if m.u.Log != "" {
		msg := "unmounted\n"
		if err != nil {
			msg = err.Error() + "\n"
		}
		_ = os.WriteFile(m.u.Log, []byte(msg), 0o644)
	}
	return err
}

// fuseRoot returns the mountinfo line of / in the payload's output.
func fuseRoot(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 8 && f[4] == "/" {
			return line
		}
	}
	return ""
}

// TestFusermountForced: with HUSK_FUSERMOUNT=1 the union is mounted by
// stage 3 through fusermount3 on the host (user_id is the user's host
// uid) and bound as the root; a bind to a missing destination gets its
// mount point from stage 3 over the socket; the union is unmounted and
// the layers closed once the container is gone, and nothing is left.
func TestFusermountForced(t *testing.T) {
	e := newEnv(t)
	log := filepath.Join(e.userDir("log"), "unmount")
	writeFile(t, filepath.Join(e.wd, "hostfile"), "from the host\n")
	s := e.spec("sh", "-c", `id -u; echo written > /new; cat /new; stat -c %u /new
		cat /mnt/made/here/hostfile; cat /proc/self/mountinfo`)
	s.Union = unionJSON(testUnion{Tree: testTree, Log: log})
	s.Binds = []Bind{{Src: e.wd, Dst: "/mnt/made/here"}}
	h := e.helper("run", s)
	h.cmd.Env = append(h.cmd.Env, FusermountEnv+"=1", "PATH=/usr/bin:/bin")
	res := runHelperProc(e, h)
	out := ok(t, res)
	want := "65534\nwritten\n65534\nfrom the host\n"
	if !strings.HasPrefix(out, want) {
		t.Errorf("got %q, want it to start with %q", out, want)
	}
	if root := fuseRoot(out); !strings.Contains(root, " - fuse") ||
		!strings.Contains(root, "user_id=65534") {
		t.Errorf("root is not a fusermount3 mount of the user's: %q", root)
	}
	if b, err := os.ReadFile(log); string(b) != "unmounted\n" {
		t.Errorf("Mounted.Unmount log: %q, %v", b, err)
	}
	if res.Stderr != "" {
		t.Errorf("stderr:\n%s", res.Stderr)
	}
}

// runHelperProc runs a prepared helper as env.run does.
func runHelperProc(e *env, h *helperProc) result {
	e.t.Helper()
	var stdout, stderr strings.Builder
	h.cmd.Stdout, h.cmd.Stderr = &stdout, &stderr
	h.start()
	res := h.wait(&stderr)
	res.Stdout, res.Stderr = stdout.String(), stderr.String()
	e.checkClean()
	return res
}

// TestFusermountFallback: when the kernel refuses the mount in stage 1
// with EPERM and /dev/fuse is usable, Run tries again through
// fusermount3, quietly (one debug line); with HUSK_FUSERMOUNT=0 it
// reports the refusal, and where fusermount3 is not setuid root the
// error says so.
func TestFusermountFallback(t *testing.T) {
	if err := CheckFUSE(); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	s := e.spec("sh", "-c", `cat /proc/self/mountinfo`)
	s.Union = unionJSON(testUnion{Tree: testTree, Refuse: true})
	h := e.helper("run", s)
	h.cmd.Env = append(h.cmd.Env, "PATH=/usr/bin:/bin", "HUSK_SANDBOX_TEST_DEBUG=1")
	res := runHelperProc(e, h)
	out := ok(t, res)
	if root := fuseRoot(out); !strings.Contains(root, "user_id=65534") {
		t.Errorf("root is not a fusermount3 mount: %q", root)
	}
	if !strings.Contains(res.Stderr, "the FUSE mount in the user namespace was refused, "+
		"mounting through /usr/bin/fusermount3") {
		t.Errorf("no debug line about the fallback:\n%s", res.Stderr)
	}
	if strings.Contains(res.Stderr, "level=WARN") || strings.Contains(res.Stderr, "level=ERROR") {
		t.Errorf("the fallback printed more than debug lines:\n%s", res.Stderr)
	}

	refusal := "mounting the container: the kernel refused the mount in husk's user " +
		"namespace (operation not permitted): a security policy (SELinux, AppArmor, " +
		"seccomp or a container runtime) forbids it; ask your administrator"
	h = e.helper("run", s)
	h.cmd.Env = append(h.cmd.Env, FusermountEnv+"=0", "PATH=/usr/bin:/bin")
	res = runHelperProc(e, h)
	if res.Status != 255 || res.Err != refusal {
		t.Errorf("HUSK_FUSERMOUNT=0: status %d, error %q, want 255, %q", res.Status,
			res.Err, refusal)
	}

	// fusermount3 without its setuid bit, in a mount namespace of the
	// helper's own.
	helper := "/usr/bin/fusermount3" // first on the helper's PATH
	if _, err := os.Stat(helper); err != nil {
		t.Fatalf("%v: apt-get install fuse3", err)
	}
	plain := filepath.Join(e.dir, "fusermount3")
	if err := os.WriteFile(plain, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	h = e.helper("run", s)
	h.cmd.Env = append(h.cmd.Env, "PATH=/usr/bin:/bin")
	h.cmd.Path, _ = exec.LookPath("unshare")
	h.cmd.Args = []string{"unshare", "-m", "--propagation", "private", "sh", "-c",
		"mount --bind " + plain + " " + helper + " && exec setpriv --reuid 65534 " +
			"--regid 65534 --clear-groups " + testBin}
	h.cmd.SysProcAttr = nil // unshare needs root; setpriv drops it
	res = runHelperProc(e, h)
	want := refusal + "; or " + helper + " is not setuid root, so husk cannot mount " +
		"through it (chmod u+s " + helper + ")"
	if res.Status != 255 || res.Err != want {
		t.Errorf("no setuid fusermount3: status %d, error %q, want 255, %q", res.Status,
			res.Err, want)
	}
}

// TestFusermountSetting: what HUSK_FUSERMOUNT selects.
func TestFusermountSetting(t *testing.T) {
	for _, tt := range []struct {
		env  string
		spec bool
		want fusermountChoice
	}{
		{"", false, fusermountAuto}, {"1", false, fusermountAlways},
		{"yes", false, fusermountAlways}, {"TRUE", false, fusermountAlways},
		{"0", false, fusermountNever}, {"no", false, fusermountNever},
		{"maybe", false, fusermountAuto}, {"0", true, fusermountAlways},
	} {
		t.Setenv(FusermountEnv, tt.env)
		if got := fusermountSetting(&Spec{Fusermount: tt.spec}); got != tt.want {
			t.Errorf("%s=%q, Spec.Fusermount %v: %d, want %d", FusermountEnv, tt.env,
				tt.spec, got, tt.want)
		}
	}
}

// TestRemoteError: stage 3's Mountpoint errors keep their errno across
// the socket.
func TestRemoteError(t *testing.T) {
	err := error(&stageError{msg: "fusefs: /x: read-only file system", errno: syscall.EROFS})
	if !errors.Is(err, syscall.EROFS) || err.Error() != "fusefs: /x: read-only file system" {
		t.Errorf("%v: errno lost", err)
	}
	if errors.Unwrap(&stageError{msg: "x"}) != nil {
		t.Error("an error without errno unwraps to something")
	}
}

// TestFallBackAdvice: without fusermount3 the refusal gets the advice to
// install fuse3; HUSK_FUSERMOUNT=0 keeps it as it is; with it (as root
// here, so no setuid bit is needed) Run may fall back.
func TestFallBackAdvice(t *testing.T) {
	refused := &refusedError{err: errors.New("mounting the container: refused")}
	log := slog.New(slog.DiscardHandler)
	if err := fallBack(fusermountNever, refused, log); err != refused.err {
		t.Errorf("never: %v", err)
	}
	if err := fallBack(fusermountAuto, refused, log); err != nil {
		t.Errorf("with /usr/bin/fusermount3: %v (apt-get install fuse3)", err)
	}
	saved := fusermountNames
	defer func() { fusermountNames = saved }()
	fusermountNames = []string{filepath.Join(t.TempDir(), "fusermount3")}
	want := "mounting the container: refused; or install fuse3 (fusermount3): husk then " +
		"mounts through it"
	if err := fallBack(fusermountAuto, refused, log); err == nil || err.Error() != want {
		t.Errorf("without fusermount3: %v, want %q", err, want)
	}
}
