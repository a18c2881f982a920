package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/sylabs/sif/v2/pkg/sif"
)

// sifDescriptors loads path with the sif library, the oracle.
func sifDescriptors(t *testing.T, path string) []sif.Descriptor {
	t.Helper()
	f, err := sif.LoadContainerFromPath(path, sif.OptLoadWithFlag(os.O_RDONLY))
	if err != nil {
		t.Fatal(err)
	}
	defer f.UnloadContainer()
	var ds []sif.Descriptor
	f.WithDescriptors(func(d sif.Descriptor) bool {
		ds = append(ds, d)
		return false
	})
	return ds
}

// husk sif new/add/list/info/dump/del/setprim round trips, checked with
// the sif library.
func TestSifTool(t *testing.T) {
	setup(t)
	dir := workDir(t)
	s := filepath.Join(dir, "t.sif")
	ok(t, dir, "sif", "new", s)
	if ds := sifDescriptors(t, s); len(ds) != 0 {
		t.Fatalf("new SIF has %d objects", len(ds))
	}
	blob := filepath.Join(dir, "blob.json")
	os.WriteFile(blob, []byte(`{"a":1}`), 0o644)
	part := filepath.Join(dir, "part.img")
	os.WriteFile(part, bytes.Repeat([]byte{7}, 10000), 0o644)

	ok(t, dir, "sif", "add", "--datatype", "6", "--groupid", "1", s, blob)
	ok(t, dir, "sif", "add", "--datatype", "4", "--parttype", "3", "--partfs", "4",
		"--partarch", "2", "--groupid", "1", "--link", "1", "--filename", "data", s, part)
	ds := sifDescriptors(t, s)
	if len(ds) != 2 || ds[0].DataType() != sif.DataGenericJSON || ds[0].GroupID() != 1 ||
		ds[1].DataType() != sif.DataPartition ||
		ds[1].Name() != "data" || ds[1].Offset()%4096 != 0 {
		t.Fatalf("descriptors after add: %+v", ds)
	}
	if id, isGroup := ds[1].LinkedID(); id != 1 || isGroup {
		t.Errorf("link %d %v", id, isGroup)
	}
	fs, pt, arch, err := ds[1].PartitionMetadata()
	if err != nil || fs != sif.FsRaw || pt != sif.PartData || arch != "amd64" {
		t.Errorf("partition metadata %v %v %v %v", fs, pt, arch, err)
	}

	r := ok(t, dir, "sif", "list", s)
	for _, want := range []string{"ID   |GROUP   |LINK    |SIF POSITION (start-end)  |TYPE",
		"|JSON.Generic", "|FS (Raw/Data/amd64)", "2    |1       |1       |"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("list lacks %q:\n%s", want, r.stdout)
		}
	}
	r = ok(t, dir, "sif", "info", "2", s)
	if !strings.Contains(r.stdout, "Filesystem Type:  Raw") ||
		!strings.Contains(r.stdout, "Name:             data") {
		t.Errorf("info:\n%s", r.stdout)
	}
	if r := ok(t, dir, "sif", "dump", "1", s); r.stdout != `{"a":1}` {
		t.Errorf("dump 1: %q", r.stdout)
	}
	r = ok(t, dir, "sif", "header", s)
	if !strings.Contains(r.stdout, "Descriptors Total:  48\n") {
		t.Errorf("header:\n%s", r.stdout)
	}
	ok(t, dir, "sif", "del", "1", s)
	if ds := sifDescriptors(t, s); len(ds) != 1 || ds[0].ID() != 2 {
		t.Fatalf("after del: %+v", ds)
	}
	if r := husk(t, dir, "sif", "add", "--datatype", "4", s, part); r.code != 255 ||
		!strings.Contains(r.stderr, "--partfs, --parttype and --partarch") {
		t.Errorf("partition without metadata: %s", r)
	}
	// Every subcommand taking an ID names the file and the missing ID.
	for _, cmd := range []string{"info", "dump", "del", "setprim"} {
		r := husk(t, dir, "sif", cmd, "1", s)
		fatalLine(t, r, s+": no object with id 1")
	}
}

// smallRootfs copies a few programs of the cached Debian tree, enough
// for the launcher script and env.
func smallRootfs(t *testing.T, dst string) {
	t.Helper()
	copyRootfs(t, dst, "bin", "usr/bin/dash", "usr/bin/sh", "usr/bin/cat", "usr/bin/env",
		"etc/passwd", "etc/group")
}

// copyRootfs copies paths of the cached Debian tree and its C library
// (merged /usr: lib and lib64 are links into usr) into dst, made if
// missing, keeping modes and owners.
func copyRootfs(t *testing.T, dst string, paths ...string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"-a", "--parents", "lib", "lib64", "usr/lib64",
		"usr/lib/x86_64-linux-gnu/libc.so.6", "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"}
	cp := exec.Command("cp", append(append(args, paths...), dst)...)
	cp.Dir = filepath.Join(cacheDir(), "rootfs")
	if out, err := cp.CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
}

// An image built with /.singularity.d: inspect reads it from the
// squashfs, run uses its runscript, and the image's own 99-base.sh sets
// the prompt after the host environment was cleared.
func TestBuiltImageMetadata(t *testing.T) {
	setup(t)
	debianSIF(t)
	dir := workDir(t)
	root := filepath.Join(dir, "rootfs")
	smallRootfs(t, root)
	sd := filepath.Join(root, ".singularity.d")
	files := map[string]string{
		"labels.json":           "{\n\t\"org.label\": \"v1\",\n\t\"author\": \"me\"\n}",
		"runscript":             "#!/bin/sh\necho \"run $* $FROM_IMG\"\n",
		"startscript":           "#!/bin/sh\n",
		"env/01-base.sh":        "",
		"env/90-environment.sh": "export FROM_IMG=img\n",
		"env/99-base.sh": "if [ -z \"$LD_LIBRARY_PATH\" ]; then\n" +
			"    LD_LIBRARY_PATH=/.singularity.d/libs\nelse\n" +
			"    LD_LIBRARY_PATH=\"$LD_LIBRARY_PATH:/.singularity.d/libs\"\nfi\n" +
			"PS1=\"Apptainer> \"\nexport LD_LIBRARY_PATH PS1\n",
		"Singularity": "bootstrap: localimage\nfrom: x\n",
	}
	for name, body := range files {
		p := filepath.Join(sd, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Symlink(".singularity.d/runscript", filepath.Join(root, "singularity"))
	out := filepath.Join(dir, "meta.sif")
	tool(t, huskBin, "build", out, root)
	os.Chmod(out, 0o644)

	r := ok(t, dir, "inspect", out)
	if r.stdout != "author: me\norg.label: v1\n" {
		t.Errorf("inspect: %q", r.stdout)
	}
	r = ok(t, dir, "inspect", "--json", "--labels", "--runscript", "--deffile",
		"--environment", out)
	var js struct {
		Data struct {
			Attributes map[string]any `json:"attributes"`
		} `json:"data"`
		Type string `json:"type"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &js); err != nil || js.Type != "container" {
		t.Fatalf("inspect --json: %v\n%s", err, r.stdout)
	}
	a := js.Data.Attributes
	if a["runscript"] != files["runscript"] || a["deffile"] != files["Singularity"] ||
		!strings.Contains(a["environment"].(string),
			"=== /.singularity.d/env/90-environment.sh ===\nexport FROM_IMG=img") ||
		a["labels"].(map[string]any)["author"] != "me" {
		t.Errorf("inspect --json attributes: %v", a)
	}

	r = ok(t, dir, "inspect", "--all", out)
	if !strings.Contains(r.stdout, `"startscript": "#!/bin/sh\n"`) ||
		!strings.Contains(r.stdout, `"org.label": "v1"`) {
		t.Errorf("inspect --all:\n%s", r.stdout)
	}
	r = ok(t, dir, "run", out, "a", "b")
	if r.stdout != "run a b img\n" {
		t.Errorf("run: %q", r.stdout)
	}
	m := containerEnviron(t, dir, []string{"PS1=host> ", "LD_LIBRARY_PATH=/host"}, "exec", out)
	if m["PS1"] != "Apptainer> " || m["LD_LIBRARY_PATH"] != "/.singularity.d/libs" {
		t.Errorf("PS1=%q LD_LIBRARY_PATH=%q", m["PS1"], m["LD_LIBRARY_PATH"])
	}
	m = containerEnviron(t, dir, []string{"APPTAINERENV_PS1=mine> "}, "exec", out)
	if m["PS1"] != "mine> " {
		t.Errorf("APPTAINERENV_PS1: PS1=%q", m["PS1"])
	}
}

// The trial's SIF with a text file added as its ext3 overlay partition:
// --writable and overlay info name the partition and why it is bad, a
// plain exec warns and runs without it; --overlay of a SIF without any
// overlay partition says it adds nothing.
func TestSIFBadOverlayPartition(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	s3 := ownSIF(t, dir, "s3.sif")
	blob := filepath.Join(dir, "blob.txt")
	os.WriteFile(blob, []byte("hello\n"), 0o644)
	ok(t, dir, "sif", "add", "--datatype", "4", "--parttype", "4", "--partfs", "2",
		"--partarch", "2", "--groupid", "1", s3, blob)
	id := sifDescriptors(t, s3)[len(sifDescriptors(t, s3))-1].ID()
	want := fmt.Sprintf("%s: overlay partition (object %d) is not a valid ext3 image: "+
		"6 bytes, too small for an ext3 superblock", s3, id)

	fatalLine(t, husk(t, dir, "exec", "--writable", s3, "true"), want)
	fatalLine(t, husk(t, dir, "overlay", "info", s3), want)
	r := ok(t, dir, "exec", s3, "true")
	if !strings.Contains(r.stderr, "WARNING: "+want+": ignoring it") {
		t.Errorf("exec with a bad overlay partition: %s", r)
	}

	r = ok(t, dir, "exec", "--overlay", img, img, "true")
	if !strings.Contains(r.stderr, "WARNING: --overlay "+img+
		": the SIF has no overlay partition, nothing of it is used") {
		t.Errorf("--overlay of a SIF without overlay partition: %s", r)
	}
}

// TestSifToolRefusesBadFiles: husk sif says what is wrong with a file that
// is not a SIF, or one cut short, in one line, as the run commands do,
// instead of the sif library's "reading global header: unexpected EOF" or
// a listing of objects past the end of the file.
func TestSifToolRefusesBadFiles(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	text := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(text, []byte("hello text"), 0o644); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short.sif")
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(short, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	fatalLine(t, husk(t, dir, "sif", "list", text), "notes.txt: not a SIF file")
	fatalLine(t, husk(t, dir, "sif", "list", short), "short.sif: truncated SIF: object 1")
}

// TestSifDelInUse: the overlay partition of a SIF that a container is
// writing is not deleted under it, nor is a new object written where it
// lies when another tool deleted it (a new-user trial deleted it, added a
// new overlay in its place, and got both file systems damaged); both work
// once the container is gone.
func TestSifDelInUse(t *testing.T) {
	setup(t)
	dir := workDir(t)
	s := ownSIF(t, dir, "s.sif")
	ok(t, dir, "overlay", "create", "--size", "64", s)
	id := sifDescriptors(t, s)[len(sifDescriptors(t, s))-1].ID()
	sid := strconv.Itoa(int(id))
	inUse := s + ": an overlay partition in it is in use by a running container"

	cmd, _, _ := startSleeper(t, s, "", nil, "--writable")
	fatalLine(t, husk(t, dir, "sif", "del", sid, s), inUse)
	if n := len(sifDescriptors(t, s)); sifDescriptors(t, s)[n-1].ID() != id {
		t.Fatal("the overlay partition was deleted")
	}
	// Deleted by a tool that does not look (Apptainer's sif del does
	// not): adding an object would write where the container writes.
	f, err := sif.LoadContainerFromPath(s, sif.OptLoadWithFlag(os.O_RDWR))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.DeleteObject(id); err != nil {
		t.Fatal(err)
	}
	f.UnloadContainer()
	fatalLine(t, husk(t, dir, "overlay", "create", "--size", "64", s), inUse)
	blob := filepath.Join(dir, "blob")
	os.WriteFile(blob, []byte("data"), 0o644)
	fatalLine(t, husk(t, dir, "sif", "add", "--datatype", "7", s, blob), inUse)
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()

	ok(t, dir, "overlay", "create", "--size", "64", s)
	r := ok(t, dir, "exec", "--writable", s, "sh", "-c", "echo x > /etc/new && cat /etc/new")
	if r.stdout != "x\n" {
		t.Errorf("writing into the new overlay: %s", r)
	}
	id = sifDescriptors(t, s)[len(sifDescriptors(t, s))-1].ID()
	ok(t, dir, "sif", "del", strconv.Itoa(int(id)), s)
}

// TestSifTwoPrimary: a SIF whose descriptors mark two objects primary (a
// byte changed; `sif add` refuses a second) is named corrupt, with both
// objects, by exec and by setprim, which the sif library would let pass
// as done, and by overlay create, which would append to it.
func TestSifTwoPrimary(t *testing.T) {
	setup(t)
	dir := workDir(t)
	s := filepath.Join(dir, "two.sif")
	part := filepath.Join(dir, "part.img")
	os.WriteFile(part, bytes.Repeat([]byte{7}, 10000), 0o644)
	ok(t, dir, "sif", "new", s)
	for _, pt := range []string{"2", "1"} { // primary, then system
		ok(t, dir, "sif", "add", "--datatype", "4", "--parttype", pt, "--partfs", "1",
			"--partarch", "2", "--groupid", "1", s, part)
	}
	// The second descriptor's partition type (its extra data, at 201 of
	// 585 bytes, holds the filesystem type and then the partition type).
	f, err := os.OpenFile(s, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var off [8]byte
	f.ReadAt(off[:], 96)
	prim := []byte{byte(sif.PartPrimSys), 0, 0, 0}
	if _, err := f.WriteAt(prim, int64(binary.LittleEndian.Uint64(off[:]))+585+205); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if n := len(sifDescriptors(t, s)); n != 2 {
		t.Fatalf("%d objects", n)
	}
	fatalLine(t, husk(t, dir, "exec", s, "true"),
		s+": corrupt SIF: objects 1, 2 are all primary system partitions")
	fatalLine(t, husk(t, dir, "sif", "setprim", "2", s),
		s+": corrupt SIF: objects 1, 2 are all primary system partitions, "+
			"and setprim cannot demote them")
	// overlay create would pick a group for the overlay and append it.
	before, _ := os.Stat(s)
	fatalLine(t, husk(t, dir, "overlay", "create", "--size", "64", s),
		s+": corrupt SIF: objects 1, 2 are all primary system partitions")
	if after, _ := os.Stat(s); after.Size() != before.Size() {
		t.Errorf("overlay create grew %s from %d to %d bytes", s, before.Size(), after.Size())
	}
}
