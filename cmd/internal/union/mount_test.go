package union

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/husk-project/husk/cmd/internal/image"
	"github.com/husk-project/husk/sandbox"
)

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	for _, p := range []string{name, "/usr/sbin/" + name, "/sbin/" + name} {
		if lp, err := exec.LookPath(p); err == nil {
			name = lp
			break
		}
	}
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s (needs squashfs-tools, e2fsprogs)", name,
			strings.Join(args, " "), err, out)
	}
}

// TestMountPlan mounts a plan the way stage 1 does (here as real root):
// a squashfs root under an ext3 upper and a read-only directory overlay,
// writes through the mount, unmounts, and checks the image with e2fsck.
func TestMountPlan(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("TestMountPlan mounts FUSE directly and must run as root")
	}
	dir := t.TempDir()
	sq := motdSquashfs(t, dir)
	stage := filepath.Join(dir, "stage")
	os.MkdirAll(filepath.Join(stage, "upper"), 0o755)
	os.MkdirAll(filepath.Join(stage, "work"), 0o755)
	ov := filepath.Join(dir, "o.img")
	run(t, "mkfs.ext3", "-q", "-d", stage, ov, "8M")
	ro := filepath.Join(dir, "ro")
	os.MkdirAll(filepath.Join(ro, "opt"), 0o755)
	os.WriteFile(filepath.Join(ro, "opt", "note"), []byte("ro\n"), 0o644)

	plan, err := image.NewPlan(image.Request{Image: sq,
		Overlays: image.ParseOverlays([]string{ov, ro + ":ro"})}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plan.Close()
	raw, _ := json.Marshal(plan)
	spec := &sandbox.Spec{UID: 0, GID: 0, Union: raw, Files: len(plan.Files)}
	target := filepath.Join(dir, "mnt")
	os.Mkdir(target, 0o755)

	m, err := Mounter{}.Mount(spec, plan.Files, target)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"etc/motd": "root\n", "opt/note": "ro\n"} {
		if b, err := os.ReadFile(filepath.Join(target, name)); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", name, b, err, want)
		}
	}
	if err := os.WriteFile(filepath.Join(target, "etc", "new"), []byte("x"), 0o644); err != nil {
		t.Error(err)
	}
	if err := m.Mountpoint("/mnt/bindhere", true); err != nil {
		t.Error(err)
	}
	if st, err := os.Stat(filepath.Join(target, "mnt", "bindhere")); err != nil || !st.IsDir() {
		t.Errorf("mount point: %v", err)
	}
	if err := m.Unmount(); err != nil {
		t.Fatal(err)
	}
	run(t, "e2fsck", "-fn", ov)
}

// motdSquashfs makes dir/root.sqfs, a squashfs holding /etc/motd ("root").
func motdSquashfs(t *testing.T, dir string) string {
	t.Helper()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(filepath.Join(src, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "etc", "motd"), []byte("root\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sq := filepath.Join(dir, "root.sqfs")
	run(t, "mksquashfs", src, sq, "-noappend", "-quiet")
	return sq
}

// One failure reported by the union's last sync and again, named, by the
// image's close is told once, with the name (a trial's full host disk
// printed the commit error twice, and no image).
func TestDistinctErrors(t *testing.T) {
	commit := errors.New("ext3: commit of 168 blocks: no space left on device")
	named := fmt.Errorf("/o.img: %w", commit)
	other := errors.New("union: unmount /x: busy")
	got := errors.Join(distinct([]error{commit, nil, named, other, other})...)
	want := "/o.img: ext3: commit of 168 blocks: no space left on device\n" +
		"union: unmount /x: busy"
	if got == nil || got.Error() != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if distinct([]error{nil, nil}) != nil {
		t.Error("nil errors kept")
	}
}
