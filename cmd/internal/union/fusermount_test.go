// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package union

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/husk-project/husk/cmd/internal/image"
	"github.com/husk-project/husk/fusefs"
	"github.com/husk-project/husk/sandbox"
)

// TestIDMapFusermount: the server's ids are root of stage 1's namespace
// normally, the user's host ids in fusermount3 mode, where --fakeroot
// maps root only unless the user is root.
func TestIDMapFusermount(t *testing.T) {
	r := func(c, s uint32) fusefs.IDRange {
		return fusefs.IDRange{Container: c, Server: s, Size: 1}
	}
	for _, tt := range []struct {
		name string
		spec sandbox.Spec
		want []fusefs.IDRange
	}{
		{"user", sandbox.Spec{UID: 1500, GID: 1500},
			[]fusefs.IDRange{r(1500, 0), r(0, 0)}},
		{"user through fusermount3", sandbox.Spec{UID: 1500, GID: 1500, Fusermount: true},
			[]fusefs.IDRange{r(1500, 1500), r(0, 1500)}},
		{"fakeroot through fusermount3",
			sandbox.Spec{UID: 1500, GID: 1500, Fakeroot: true, Fusermount: true},
			[]fusefs.IDRange{r(0, 1500), r(1500, 1500)}},
		{"root through fusermount3", sandbox.Spec{UID: 0, GID: 0, Fusermount: true},
			[]fusefs.IDRange{r(0, 0)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := idMap(&tt.spec)
			if !reflect.DeepEqual(m.UIDs, tt.want) || !reflect.DeepEqual(m.GIDs, tt.want) ||
				!m.Squash {
				t.Errorf("got %+v, want uids and gids %+v, squashed", m, tt.want)
			}
		})
	}
	// Root's --fakeroot on the host: every id as it is (the host's map).
	m := idMap(&sandbox.Spec{Fakeroot: true, Fusermount: true})
	if len(m.UIDs) != 1 || m.UIDs[0].Container != 0 || m.UIDs[0].Server != 0 ||
		m.UIDs[0].Size < 65536 || m.Squash {
		t.Errorf("root's --fakeroot through fusermount3: %+v", m)
	}
}

// TestMountFusermount mounts a plan as stage 3 does in fusermount3 mode
// (here as root): go-fuse runs fusermount3, root gets allow_other, a
// --writable-tmpfs upper lives in /dev/shm; Unmount goes through
// fusermount3 -u and removes the upper.
func TestMountFusermount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("TestMountFusermount runs as root (fusermount3 grants root allow_other)")
	}
	if _, err := os.Stat("/usr/bin/fusermount3"); err != nil {
		t.Fatalf("%v: apt-get install fuse3", err)
	}
	dir := t.TempDir()
	sq := motdSquashfs(t, dir)
	plan, err := image.NewPlan(image.Request{Image: sq, WritableTmpfs: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plan.Close()
	raw, _ := json.Marshal(plan)
	spec := &sandbox.Spec{UID: 0, GID: 0, Union: raw, Files: len(plan.Files),
		Fusermount: true}
	target := filepath.Join(dir, "mnt")
	os.Mkdir(target, 0o755)
	before, _ := filepath.Glob("/dev/shm/husk-writable-tmpfs-*")

	m, err := Mounter{}.Mount(spec, plan.Files, target)
	if err != nil {
		t.Fatal(err)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	line := ""
	for l := range strings.Lines(string(mi)) {
		if strings.Contains(l, " "+target+" ") {
			line = l
		}
	}
	if !strings.Contains(line, " - fuse.husk husk rw,") || !strings.Contains(line,
		"allow_other") {
		t.Errorf("not a fusermount3 mount with allow_other: %q", line)
	}
	if b, err := os.ReadFile(filepath.Join(target, "etc", "motd")); string(b) != "root\n" {
		t.Errorf("motd: %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(target, "new"), []byte("x"), 0o644); err != nil {
		t.Error(err)
	}
	// The upper is the new directory in /dev/shm that holds the file just
	// written. It is found by its content, not by counting: the sandbox's
	// fusermount3 tests, run meanwhile by go test in another process, add
	// and remove directories of theirs there.
	during, _ := filepath.Glob("/dev/shm/husk-writable-tmpfs-*")
	upper := ""
	for _, d := range during {
		b, err := os.ReadFile(filepath.Join(d, "upper", "new"))
		if err == nil && string(b) == "x" && !slices.Contains(before, d) {
			upper = d
		}
	}
	if upper == "" {
		t.Errorf("--writable-tmpfs upper not in /dev/shm: %v", during)
	}
	if err := m.Unmount(); err != nil {
		t.Fatal(err)
	}
	mi, _ = os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), " "+target+" ") {
		t.Errorf("still mounted:\n%s", mi)
	}
	if _, err := os.Lstat(upper); upper != "" && !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("upper left in /dev/shm: %s (%v)", upper, err)
	}
}
