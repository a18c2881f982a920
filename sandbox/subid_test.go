// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSubIDRange(t *testing.T) {
	tests := []struct {
		name, file string
		want       subRange
		err        string // substring; "" means success
	}{
		{"by name", "alice:100000:65536\n", subRange{100000, 65536}, ""},
		{"by uid", "1000:200000:65536\n", subRange{200000, 65536}, ""},
		{"other users", "bob:100000:65536\ncarol:1:70000\n", subRange{},
			"alice is not listed in"},
		{"exact count wins", "alice:300000:131072\nalice:100000:65536\n",
			subRange{100000, 65536}, ""},
		{"largest above", "alice:300000:131072\nalice:500000:70000\n",
			subRange{300000, 131072}, ""},
		{"too small", "alice:100000:1000\n", subRange{}, "fewer than 65536 ids"},
		{"disabled", "!alice:100000:65536\n", subRange{}, "is disabled"},
		{"junk ignored", "# comment\n\nalice:x:65536\nalice:1\nalice:4294967295:65536\n" +
			"alice:100000:65536\n", subRange{100000, 65536}, ""},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_"))
			if err := os.WriteFile(file, []byte(tt.file), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := subIDRange(file, "alice", 1000)
			if tt.err == "" {
				if err != nil || got != tt.want {
					t.Errorf("got %v, %v; want %v", got, err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) ||
				!errors.Is(err, errNoSubIDs) {
				t.Errorf("got %v, %v; want error with %q", got, err, tt.err)
			}
		})
	}
	if _, err := subIDRange(filepath.Join(dir, "missing"), "alice", 1000); !errors.Is(err,
		os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestFakerootMapping(t *testing.T) {
	m := fakerootMapping(1500, 1600, subRange{100000, 65536}, subRange{200000, 70000})
	want := "uid 0 1500 1; uid 1 100000 65536; gid 0 1600 1; gid 1 200000 70000"
	if m.String() != want || !m.Setgroups {
		t.Errorf("got %q setgroups %v, want %q", m.String(), m.Setgroups, want)
	}
}

// TestStage1Mapping: the full mapping only with --fakeroot and ranges in
// both files; otherwise the one-id mapping, with one warning for
// --fakeroot naming the reason.
func TestStage1Mapping(t *testing.T) {
	if _, err := lookIDHelpers(); err != nil {
		t.Fatalf("%v: apt-get install uidmap", err)
	}
	dir := t.TempDir()
	uids, gids := filepath.Join(dir, "subuid"), filepath.Join(dir, "subgid")
	defer func(u, g string) { subUIDFile, subGIDFile = u, g }(subUIDFile, subGIDFile)
	subUIDFile, subGIDFile = uids, gids

	tests := []struct {
		name           string
		uid            uint32
		fakeroot       bool
		subuid, subgid string
		want, warn     string
		helpers        bool
	}{
		{"no fakeroot", 7, false, "u:100000:65536\n", "u:100000:65536\n",
			"uid 0 7 1; gid 0 8 1", "", false},
		{"fakeroot", 7, true, "u:100000:65536\n", "u:300000:65536\n",
			"uid 0 7 1; uid 1 100000 65536; gid 0 8 1; gid 1 300000 65536", "", true},
		{"no subuid", 7, true, "", "u:300000:65536\n", "uid 0 7 1; gid 0 8 1",
			"u is not listed in " + uids, false},
		{"no subgid", 7, true, "u:100000:65536\n", "v:1:65536\n", "uid 0 7 1; gid 0 8 1",
			"u is not listed in " + gids, false},
		{"host root", 0, true, "", "", "uid 0 0 65537; gid 0 0 65537",
			"", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.WriteFile(uids, []byte(tt.subuid), 0o644)
			os.WriteFile(gids, []byte(tt.subgid), 0o644)
			var logs strings.Builder
			log := slog.New(slog.NewTextHandler(&logs, nil))
			p := &plan{Spec: &Spec{UID: tt.uid, GID: 8, Fakeroot: tt.fakeroot}}
			p.User.Name = "u"
			m, h := stage1Mapping(p, log)
			if m.String() != tt.want || (h != nil) != tt.helpers {
				t.Errorf("got %q helpers %v, want %q %v", m.String(), h != nil, tt.want,
					tt.helpers)
			}
			if got := strings.Count(logs.String(), "level=WARN"); tt.warn != "" && got != 1 ||
				tt.warn == "" && got != 0 || !strings.Contains(logs.String(), tt.warn) {
				t.Errorf("log:\n%s\nwant one warning with %q", logs.String(), tt.warn)
			}
		})
	}
}

func TestMappedFrom0(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		file string
		want uint32
	}{
		{"         0       1500          1\n", 1},
		{"         0       1500          1\n         1     100000      65536\n", 65537},
		{"1 100000 65536\n0 1500 1\n", 65537},
		{"         0          0 4294967295\n", 4294967295},
		{"5 1500 1\n", 1},
		{"", 1},
	} {
		f := filepath.Join(dir, "map")
		os.WriteFile(f, []byte(tt.file), 0o644)
		if got := mappedFrom0(f); got != tt.want {
			t.Errorf("%q: got %d, want %d", tt.file, got, tt.want)
		}
	}
}

// TestPrivileged: the helpers count only when they can write the maps.
func TestPrivileged(t *testing.T) {
	h, err := lookIDHelpers()
	if err != nil {
		t.Fatalf("%v: apt-get install uidmap", err)
	}
	if !privileged(h.uid) || !privileged(h.gid) {
		t.Errorf("%s, %s: not privileged", h.uid, h.gid)
	}
	plain := filepath.Join(t.TempDir(), "newuidmap")
	if err := os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if privileged(plain) {
		t.Errorf("%s: a plain file counts as privileged", plain)
	}
}

// TestHelperFailure: a helper's refusal is reported with its message, or
// as AppArmor's restriction where the sysctl says so.
func TestHelperFailure(t *testing.T) {
	old := procSys
	t.Cleanup(func() { procSys = old })
	procSys = t.TempDir()
	h := &idHelpers{uid: "/bin/false", gid: "/bin/false"}
	m := fakerootMapping(7, 8, subRange{100000, 65536}, subRange{100000, 65536})
	err := h.write(1, m)
	if err == nil || !strings.Contains(err.Error(), "--fakeroot: /bin/false 1 0 7 1 1 100000 "+
		"65536 failed: exit status 1") {
		t.Errorf("got %v", err)
	}
	p := filepath.Join(procSys, "kernel", "apparmor_restrict_unprivileged_userns")
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, []byte("1\n"), 0o644)
	err = h.write(1, m)
	if err == nil || !strings.Contains(err.Error(), "AppArmor restricts unprivileged user "+
		"namespaces") {
		t.Errorf("got %v", err)
	}
}
