package build

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sylabs/sif/v2/pkg/sif"
)

func TestBuildMatchesApptainerLayout(t *testing.T) {
	if _, err := lookTool("unsquashfs"); err != nil {
		t.Fatal("unsquashfs not found: apt-get install squashfs-tools")
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "rootfs")
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc", "hello"), []byte("hi\n"), 0o644)
	os.Symlink("rootfs", filepath.Join(dir, "link")) // a symlinked rootfs is followed

	out := filepath.Join(dir, "x.sif")
	var log bytes.Buffer
	if err := Build(out, filepath.Join(dir, "link"), false, &log); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o755 {
		t.Errorf("mode %o, want 0755", st.Mode().Perm())
	}
	fi, err := sif.LoadContainerFromPath(out, sif.OptLoadWithFlag(os.O_RDONLY))
	if err != nil {
		t.Fatal(err)
	}
	defer fi.UnloadContainer()
	if fi.LaunchScript() != LaunchScript || fi.DescriptorsTotal() != 48 {
		t.Errorf("launch %q, %d descriptors", fi.LaunchScript(), fi.DescriptorsTotal())
	}
	d, err := fi.GetDescriptor(sif.WithPartitionType(sif.PartPrimSys))
	if err != nil {
		t.Fatal(err)
	}
	fs, _, arch, _ := d.PartitionMetadata()
	if fs != sif.FsSquash || d.GroupID() != 1 || d.Offset()%4096 != 0 || arch == "unknown" {
		t.Errorf("partition fs %v group %d offset %d arch %s", fs, d.GroupID(), d.Offset(), arch)
	}
	p, _ := lookTool("unsquashfs")
	ls, err := exec.Command(p, "-o", strconv.FormatInt(d.Offset(), 10), "-l", out).
		CombinedOutput()
	if err != nil || !strings.Contains(string(ls), "squashfs-root/etc/hello") {
		t.Fatalf("unsquashfs -l: %v\n%s", err, ls)
	}
}

func TestBuildErrors(t *testing.T) {
	var log bytes.Buffer
	err := Build(filepath.Join(t.TempDir(), "x.sif"), "/nonexistent", false, &log)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent") {
		t.Fatalf("error %v", err)
	}
	t.Setenv("PATH", t.TempDir())
	saved := sbinDirs
	sbinDirs = nil
	defer func() { sbinDirs = saved }()
	err = Build(filepath.Join(t.TempDir(), "x.sif"), t.TempDir(), false, &log)
	if err == nil || err.Error() != MissingMksquashfs {
		t.Fatalf("error %v, want %q", err, MissingMksquashfs)
	}
}

func TestBuildRefusesExisting(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "rootfs")
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	out := filepath.Join(dir, "x.sif")
	precious := []byte("precious data\n")
	os.WriteFile(out, precious, 0o644)
	var log bytes.Buffer
	err := Build(out, root, false, &log)
	want := out + " already exists; use --force to overwrite"
	if err == nil || err.Error() != want {
		t.Fatalf("error %v, want %q", err, want)
	}
	if b, _ := os.ReadFile(out); !bytes.Equal(b, precious) {
		t.Fatalf("%s was changed", out)
	}
	// A file that appears while mksquashfs runs is not replaced either.
	tmp := filepath.Join(dir, "tmp")
	os.WriteFile(tmp, []byte("new"), 0o644)
	if err := moveIntoPlace(tmp, out, false); err == nil || err.Error() != want {
		t.Fatalf("moveIntoPlace: %v, want %q", err, want)
	}
	if b, _ := os.ReadFile(out); !bytes.Equal(b, precious) {
		t.Fatalf("%s was changed by moveIntoPlace", out)
	}
	if err := Build(out, root, true, &log); err != nil {
		t.Fatalf("with force: %v", err)
	}
	if _, err := sif.LoadContainerFromPath(out, sif.OptLoadWithFlag(os.O_RDONLY)); err != nil {
		t.Fatalf("forced build is not a SIF: %v", err)
	}
}
