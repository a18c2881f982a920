// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// TestResolveIn: symbolic links are followed inside the root, never out
// of it.
func TestResolveIn(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"usr/lib", "real/dir", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"lib":             "usr/lib",
		"etc/resolv.conf": "/run/systemd/resolve/stub-resolv.conf",
		"abs":             "/real",
		"up":              "../../../../real",
		"loop":            "loop",
		"real/dir/rel":    "../../usr",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		in, want string
		err      error
	}{
		{"/lib/x", "/usr/lib/x", nil},
		{"/etc/resolv.conf", "/run/systemd/resolve/stub-resolv.conf", nil},
		{"/abs/dir", "/real/dir", nil},
		{"/up/dir", "/real/dir", nil},
		{"/../../etc", "/etc", nil},
		{"/real/dir/rel/lib", "/usr/lib", nil},
		{"/missing/a/../b", "/missing/b", nil},
		{"/loop/x", "", syscall.ELOOP},
	} {
		got, err := resolveIn(root, tc.in)
		if !errors.Is(err, tc.err) || got != tc.want {
			t.Errorf("resolveIn(%q) = %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// TestInjectPasswd covers COMPAT 7.3: rewrite the uid's line or append.
func TestInjectPasswd(t *testing.T) {
	user := passwdEntry{Name: "alice", UID: 1000, GID: 1000, Gecos: "Alice",
		Home: "/home/alice", Shell: "/bin/zsh"}
	for _, tc := range []struct {
		name, in string
		uid      uint32
		home     string
		want     string
	}{
		{"append", "root:x:0:0:root:/root:/bin/bash\n", 1000, "/home/alice",
			"root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:Alice:/home/alice:/bin/zsh\n"},
		{"rewrite keeps gid and shell", "root:x:0:0:root:/root:/bin/bash\n" +
			"user:x:1000:100:User:/home/user:/bin/sh\n", 1000, "/h",
			"root:x:0:0:root:/root:/bin/bash\nalice:x:1000:100:Alice:/h:/bin/sh\n"},
		{"root keeps name", "root:x:0:0:Super:/root:/bin/bash\n# c\n", 0, "/root",
			"root:x:0:0:Super:/root:/bin/bash\n# c\n"},
		{"no final newline", "root:x:0:0:root:/root:/bin/bash", 1000, "/home/alice",
			"root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:Alice:/home/alice:/bin/zsh\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := string(injectPasswd([]byte(tc.in), user, tc.uid, tc.home))
			if got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestInjectGroup(t *testing.T) {
	groups := []groupEntry{{"alice", 1000}, {"users", 100}, {"docker", 999}}
	got := string(injectGroup([]byte("root:x:0:\nusers:x:100:"), groups, "alice"))
	want := "root:x:0:\nusers:x:100:\nalice:x:1000:alice\ndocker:x:999:alice\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestUsernsReason: each host configuration gives its own fix.
func TestUsernsReason(t *testing.T) {
	old := procSys
	t.Cleanup(func() { procSys = old })
	for _, tc := range []struct {
		name    string
		sysctls map[string]string
		err     error
		want    string
	}{
		{"max zero", map[string]string{"user/max_user_namespaces": "0\n"}, syscall.ENOSPC,
			"sysctl -w user.max_user_namespaces=15000"},
		{"debian knob", map[string]string{"user/max_user_namespaces": "100",
			"kernel/unprivileged_userns_clone": "0"}, syscall.EPERM,
			"sysctl -w kernel.unprivileged_userns_clone=1"},
		{"apparmor", map[string]string{"kernel/apparmor_restrict_unprivileged_userns": "1"},
			syscall.EACCES, "install an AppArmor profile allowing userns"},
		{"apparmor but other errno", map[string]string{
			"kernel/apparmor_restrict_unprivileged_userns": "1"}, syscall.ENOSPC,
			"maximum number of user namespaces exceeded"},
		{"nesting", nil, syscall.EUSERS, "nesting depth"},
		{"eperm", nil, &os.SyscallError{Syscall: "clone", Err: syscall.EPERM},
			"not allowed to create a user namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			procSys = t.TempDir()
			for name, v := range tc.sysctls {
				p := filepath.Join(procSys, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got := usernsError(tc.err).Error()
			if !strings.HasPrefix(got, "cannot create a user namespace: ") ||
				!strings.Contains(got, tc.want) {
				t.Errorf("got %q, want it to contain %q", got, tc.want)
			}
		})
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`/a\040b`: "/a b", `/tab\011x`: "/tab\tx", `/back\134`: `/back\`, `/x\9`: `/x\9`,
		"/plain": "/plain",
	} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMountError(t *testing.T) {
	err := error(&mountError{Op: "mount", Source: "/a", Target: "/b",
		Flags: unix.MS_BIND | unix.MS_REC | 1<<30, Err: unix.EPERM})
	want := "mount /a on /b (MS_BIND|MS_REC|0x40000000): operation not permitted"
	if err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
	if !errors.Is(err, unix.EPERM) {
		t.Errorf("not EPERM")
	}
}

func TestSpecValidate(t *testing.T) {
	for _, s := range []Spec{
		{},
		{Args: []string{"x"}, Cwd: "rel", HomeDir: "/h"},
		{Args: []string{"x"}, HomeDir: "/h", Binds: []Bind{{Src: "/a", Dst: "b"}}},
		{Args: []string{"x"}, HomeDir: "/h", Home: "/a:rel"},
		{Args: []string{"x"}, HomeDir: "/h", Hostname: strings.Repeat("h", 65)},
		{Args: []string{"x"}, HomeDir: "/h", Seccomp: &SeccompProfile{File: "p.json",
			DefaultAction: "SCMP_ACT_ALLOW", Syscalls: []SeccompRule{{Names: []string{"mkdir"},
				Action: "SCMP_ACT_ERRNO", Includes: &SeccompFilter{Caps: []string{"CAP_NOPE"}}}}}},
	} {
		if err := s.validate(); err == nil {
			t.Errorf("%+v: no error", s)
		}
	}
	ok := Spec{Args: []string{"x"}, HomeDir: "/h", Hostname: strings.Repeat("h", 64),
		Seccomp: &SeccompProfile{File: "p.json", DefaultAction: "SCMP_ACT_ALLOW"}}
	if err := ok.validate(); err != nil {
		t.Errorf("valid profile: %v", err)
	}
}

func TestReleaseOlder(t *testing.T) {
	for rel, want := range map[string]bool{
		"4.15.0-20-generic": true, "4.18.0-80.el8.x86_64": false, "3.10.0": true,
		"6.18.0": false, "5.4": false, "garbage": false,
	} {
		if got := releaseOlder(rel, fuseUserNSKernel); got != want {
			t.Errorf("releaseOlder(%q) = %v, want %v", rel, got, want)
		}
	}
}

// TestNewPlan: relative host paths are taken from the caller's working
// directory; --home src alone means the same path inside.
func TestNewPlan(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ home, wantHome string }{
		{"h", filepath.Join(wd, "h") + ":" + filepath.Join(wd, "h")},
		{"/abs", "/abs:/abs"},
		{"rel:/dst", filepath.Join(wd, "rel") + ":/dst"},
	} {
		s := &Spec{Args: []string{"x"}, HomeDir: "/home/u", Home: tc.home,
			Binds: []Bind{{Src: "data", Dst: "/data"}}}
		p, err := newPlan(s, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if p.Spec.Home != tc.wantHome {
			t.Errorf("Home %q: got %q, want %q", tc.home, p.Spec.Home, tc.wantHome)
		}
		if got := p.Spec.Binds[0].Src; got != filepath.Join(wd, "data") {
			t.Errorf("bind source %q", got)
		}
		if s.Binds[0].Src != "data" {
			t.Errorf("caller's Spec modified")
		}
		if p.Spec.Cwd != wd {
			t.Errorf("Cwd %q, want %q", p.Spec.Cwd, wd)
		}
	}
}

// FuzzInjectPasswd: whatever the container's passwd holds, the result
// keeps every other line and has exactly one entry for the uid, with the
// container home.
func FuzzInjectPasswd(f *testing.F) {
	if b, err := os.ReadFile("/etc/passwd"); err == nil {
		f.Add(b, uint32(65534))
	}
	f.Add([]byte("root:x:0:0:root:/root:/bin/bash\n"), uint32(0))
	f.Add([]byte("a:x:1000:1000::/h:/bin/sh\na:x:1000:1:dup:/h:/bin/sh\nbad line\n"),
		uint32(1000))
	user := passwdEntry{Name: "u", Gecos: "U", Home: "/home/u", Shell: "/bin/sh"}
	f.Fuzz(func(t *testing.T, in []byte, uid uint32) {
		if !utf8.Valid(in) || bytes.Contains(in, []byte(":/home/u:")) {
			return // the property counts lines with the injected home
		}
		out := string(injectPasswd(in, user, uid, "/home/u"))
		n := 0
		for line := range strings.Lines(out) {
			if e, ok := parsePasswdLine(strings.TrimSuffix(line, "\n")); ok &&
				e.UID == uid && e.Home == "/home/u" {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%d entries for uid %d in\n%s", n, uid, out)
		}
		if !strings.HasSuffix(out, "\n") {
			t.Fatalf("no final newline: %q", out)
		}
	})
}
