package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/sylabs/sif/v2/pkg/sif"
)

// A command that cannot be executed fails as in Apptainer: one FATAL line
// and 255, not the launcher shell's message and 126 or 127.
func TestExecFailures(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	os.WriteFile(filepath.Join(dir, "script"), []byte("echo ran\n"), 0o644)
	for cmd, want := range map[string]string{
		"/etc/passwd": "exec /etc/passwd failed: permission denied",
		"/etc":        "exec /etc failed: permission denied",
		"./script":    "exec ./script failed: permission denied",
		"no-such-cmd": `"no-such-cmd": executable file not found in $PATH`,
	} {
		fatalLine(t, husk(t, dir, "exec", img, cmd), want)
	}
	if r := ok(t, dir, "exec", img, "sh", "./script"); r.stdout != "ran\n" {
		t.Errorf("sh ./script: %s", r)
	}
}

// overlayImg creates an overlay with `husk overlay create` as the user.
func overlayImg(t *testing.T, dir string, args ...string) string {
	t.Helper()
	p := filepath.Join(dir, "o.img")
	ok(t, dir, append(append([]string{"overlay", "create"}, args...), p)...)
	return p
}

func TestPythonRunsAsTheUser(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	if r := ok(t, dir, "exec", img, "python3", "-c", "print(1)"); r.stdout != "1\n" {
		t.Errorf("python3 printed %q, want \"1\\n\"", r.stdout)
	}
	if r := ok(t, dir, "exec", img, "id", "-u"); strings.TrimSpace(r.stdout) != "1500" {
		t.Errorf("id -u printed %q, want 1500", r.stdout)
	}
	if r := ok(t, dir, "exec", "--fakeroot", img, "id", "-u"); strings.TrimSpace(r.stdout) != "0" {
		t.Errorf("id -u with --fakeroot printed %q, want 0", r.stdout)
	}
}

func TestExitStatus(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	// A container killed by a terminating signal kills husk with it, as
	// Apptainer re-raises the signal; the shell's $? is 128+N either way.
	// One that exits 128+N on its own has husk exit so (it re-raised).
	cases := []struct {
		script   string
		want     int
		signaled bool
	}{
		{"exit 0", 0, false},
		{"exit 3", 3, false},
		{"kill -9 $$", 137, true},
		{"kill -TERM $$", 143, true},
		{"exit 130", 130, false},
		{"exit 143", 143, false},
		// Go's runtime ignores these unless told otherwise: husk exited
		// 138 and 141 instead of dying of them.
		{"kill -USR1 $$", 138, true},
		{"kill -PIPE $$", 141, true},
	}
	for _, c := range cases {
		t.Run(c.script, func(t *testing.T) {
			r := husk(t, dir, "exec", img, "sh", "-c", c.script)
			if r.code != c.want || r.signaled != c.signaled {
				t.Fatalf("got %s (signaled %v), want exit %d (signaled %v)", r, r.signaled,
					c.want, c.signaled)
			}
		})
	}
}

func TestOverlayPersistsAcrossRuns(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	ov := overlayImg(t, dir, "--create-dir", "/data")
	fsckClean(t, ov, 0)

	ok(t, dir, "exec", "--overlay", ov, img, "sh", "-c", "echo persisted > /data/note")
	fsckClean(t, ov, 0)
	r := ok(t, dir, "exec", "--overlay", ov, img, "cat", "/data/note")
	if r.stdout != "persisted\n" {
		t.Fatalf("second run read %q, want \"persisted\\n\"", r.stdout)
	}
	fsckClean(t, ov, 0)
	// The file is stored with the user's uid, as fuse2fs under Apptainer.
	out := tool(t, "debugfs", "-R", "stat /upper/data/note", ov)
	if !strings.Contains(out, "User:  1500") {
		t.Errorf("debugfs stat /upper/data/note:\n%s\nwant User: 1500", out)
	}
}

// TestTrustedXattrsUnlisted: trusted.* xattrs in an overlay (written by
// root through the kernel, or by another tool) are not listed in the
// container, where nobody may read them: listed, `cp --preserve=xattr`
// and tar failed on them with ENODATA. Other xattrs are listed.
func TestTrustedXattrsUnlisted(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	ov := overlayImg(t, dir, "--create-dir", "/data")
	ok(t, dir, "exec", "--overlay", ov, img, "touch", "/data/f")
	for _, x := range []string{"trusted.secret", "user.ok"} {
		tool(t, "debugfs", "-w", "-R", "ea_set /upper/data/f "+x+" v", ov)
	}
	r := ok(t, dir, "exec", "--overlay", ov, img, "python3", "-c",
		"import os; print(sorted(os.listxattr('/data/f')))")
	if r.stdout != "['user.ok']\n" {
		t.Errorf("xattrs listed in the container: %q, want ['user.ok']", r.stdout)
	}
}

// A package file deleted in one run stays deleted in the next, as root
// (--fakeroot) and as the user, who sees the image's root-owned files as
// their own, as with Apptainer's squashfuse -o uid= (COMPAT §3.5).
func TestDeletionPersistsAcrossRuns(t *testing.T) {
	setup(t)
	img := debianSIF(t)
	const victim = "/usr/share/doc/python3/copyright"
	for _, mode := range [][]string{{"--fakeroot"}, {}} {
		t.Run(strings.Join(append([]string{"as"}, mode...), " "), func(t *testing.T) {
			dir := workDir(t)
			ov := overlayImg(t, dir, mode...)
			exec := func(args ...string) []string {
				return append(append(append([]string{"exec"}, mode...), "--overlay", ov, img),
					args...)
			}
			ok(t, dir, exec("sh", "-c", "rm "+victim+" && echo new > /opt/new")...)
			fsckClean(t, ov, 0)
			r := husk(t, dir, exec("test", "-e", victim)...)
			if r.code != 1 {
				t.Fatalf("%s still exists in the second run: %s", victim, r)
			}
			if r := ok(t, dir, exec("cat", "/opt/new")...); r.stdout != "new\n" {
				t.Errorf("/opt/new: %q", r.stdout)
			}
			// Without the overlay the image is unchanged.
			ok(t, dir, "exec", img, "test", "-e", victim)
			fsckClean(t, ov, 0)
		})
	}
}

func TestReadOnlyOverlay(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	ov := overlayImg(t, dir, "--create-dir", "/data")
	ok(t, dir, "exec", "--overlay", ov, img, "touch", "/data/before")

	r := husk(t, dir, "exec", "--overlay", ov+":ro", img, "sh", "-c",
		"ls /data/before && touch /data/after")
	if r.code == 0 || !strings.Contains(r.stderr, "Read-only file system") {
		t.Fatalf("writing through :ro: %s\nwant EROFS", r)
	}
	fsckClean(t, ov, 0)
}

func TestWritableTmpfsVanishes(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	ok(t, dir, "exec", "--fakeroot", "--writable-tmpfs", img, "sh", "-c",
		"echo x > /opt/tmpfile && cat /opt/tmpfile")
	if r := husk(t, dir, "exec", img, "test", "-e", "/opt/tmpfile"); r.code != 1 {
		t.Fatalf("/opt/tmpfile survived --writable-tmpfs: %s", r)
	}
	// The memory is capped at Apptainer's 64 MiB session size.
	r := husk(t, dir, "exec", "--fakeroot", "--writable-tmpfs", img, "dd", "if=/dev/zero",
		"of=/opt/big", "bs=1M", "count=80")
	if r.code == 0 || !strings.Contains(r.stderr, "No space left on device") {
		t.Errorf("80 MiB into --writable-tmpfs: %s\nwant ENOSPC", r)
	}
	// Without it, the image is read-only.
	r = husk(t, dir, "exec", "--fakeroot", img, "touch", "/opt/x")
	if r.code == 0 || !strings.Contains(r.stderr, "Read-only file system") {
		t.Fatalf("touch without a writable layer: %s\nwant EROFS", r)
	}
}

// An overlay made by mkfs.ext3 -d, as `apptainer overlay create` does,
// works like one husk made.
func TestMkfsExt3Overlay(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	stage := filepath.Join(dir, "stage")
	for _, d := range []string{"upper/data", "work"} {
		os.MkdirAll(filepath.Join(stage, d), 0o755)
	}
	for _, d := range []string{"", "upper", "upper/data", "work"} {
		chown(t, filepath.Join(stage, d))
	}
	ov := filepath.Join(dir, "mkfs.img")
	tool(t, "mkfs.ext3", "-q", "-d", stage, ov, "64M")
	chown(t, ov)

	ok(t, dir, "exec", "--overlay", ov, img, "sh", "-c", "echo hi > /data/f")
	if r := ok(t, dir, "exec", "--overlay", ov, img, "cat", "/data/f"); r.stdout != "hi\n" {
		t.Fatalf("read back %q", r.stdout)
	}
	fsckClean(t, ov, 0)
}

func TestOverlayCreateLayout(t *testing.T) {
	setup(t)
	dir := workDir(t)
	ov := overlayImg(t, dir, "--size", "64")
	st, err := os.Stat(ov)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 || st.Size() != 64<<20 {
		t.Errorf("mode %o size %d, want 0600 and %d", st.Mode().Perm(), st.Size(), 64<<20)
	}
	fsckClean(t, ov, 0)
	out := tool(t, "debugfs", "-R", "ls -l /", ov)
	for _, want := range []string{"upper", "work"} {
		if !strings.Contains(out, want) {
			t.Errorf("debugfs ls -l / has no %s:\n%s", want, out)
		}
	}
	stat := tool(t, "debugfs", "-R", "stat /upper", ov)
	if !strings.Contains(stat, "User:  1500") || !strings.Contains(stat, "Mode:  0755") {
		t.Errorf("debugfs stat /upper:\n%s\nwant owner 1500, mode 0755", stat)
	}
	features := tool(t, "dumpe2fs", "-h", ov)
	if !strings.Contains(features, "has_journal") || strings.Contains(features, "extent") {
		t.Errorf("features are not ext3's:\n%s", features)
	}

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"too small", []string{"--size", "32", filepath.Join(dir, "s.img")},
			"image size must be equal or greater than 64 MiB"},
		{"exists", []string{ov}, "EXT3 overlay image " + ov + " already exists"},
		{"escape", []string{"--create-dir", "../x", filepath.Join(dir, "e.img")},
			"overlay directory created outside of overlay layout"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fatalLine(t, husk(t, dir, append([]string{"overlay", "create"}, c.args...)...),
				c.want)
		})
	}
}

func TestOverlayInSIFWithWritable(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	own := filepath.Join(dir, "own.sif")
	tool(t, "cp", img, own)
	chown(t, own)

	fatalLine(t, husk(t, dir, "exec", "--writable", own, "true"),
		"no SIF writable overlay partition found in "+own)
	ok(t, dir, "overlay", "create", "--create-dir", "/data", own)
	r := husk(t, dir, "overlay", "create", own)
	fatalLine(t, r, "a writable overlay partition already exists in "+own)

	ok(t, dir, "exec", "--writable", own, "sh", "-c", "echo in-sif > /data/f")
	if r := ok(t, dir, "exec", own, "cat", "/data/f"); r.stdout != "in-sif\n" {
		t.Fatalf("read back %q, want in-sif", r.stdout)
	}
	fsckClean(t, own, overlayOffset(t, own))
}

// overlayOffset finds the SIF's ext3 overlay partition with the sif API.
func overlayOffset(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := sif.LoadContainerFromPath(path, sif.OptLoadWithFlag(os.O_RDONLY))
	if err != nil {
		t.Fatal(err)
	}
	defer fi.UnloadContainer()
	d, err := fi.GetDescriptor(sif.WithPartitionType(sif.PartOverlay))
	if err != nil {
		t.Fatal(err)
	}
	fs, _, _, _ := d.PartitionMetadata()
	if fs != sif.FsExt3 || d.GroupID() != 1 {
		t.Errorf("overlay partition fs %v group %d, want Ext3 in group 1", fs, d.GroupID())
	}
	return d.Offset()
}

// A SIF assembled from mksquashfs output with the sif library (no husk
// build) runs.
func TestForeignSIF(t *testing.T) {
	setup(t)
	debianSIF(t)
	dir := workDir(t)
	sq := filepath.Join(dir, "root.sqfs")
	tool(t, "mksquashfs", filepath.Join(cacheDir(), "rootfs"), sq, "-noappend", "-quiet",
		"-comp", "lz4")
	f, err := os.Open(sq)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	di, err := sif.NewDescriptorInput(sif.DataPartition, f,
		sif.OptPartitionMetadata(sif.FsSquash, sif.PartPrimSys, "amd64"))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "foreign.sif")
	fi, err := sif.CreateContainerAtPath(out, sif.OptCreateWithDescriptors(di),
		sif.OptCreateWithDescriptorCapacity(8))
	if err != nil {
		t.Fatal(err)
	}
	if err := fi.UnloadContainer(); err != nil {
		t.Fatal(err)
	}
	os.Chmod(out, 0o644)
	if r := ok(t, dir, "exec", out, "python3", "-c", "print(6*7)"); r.stdout != "42\n" {
		t.Fatalf("python3 printed %q", r.stdout)
	}
}

func TestBadInputsFailWithOneFatalLine(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	random := make([]byte, 1<<16)
	for i := range random {
		random[i] = byte(i*131 + i>>7)
	}
	corrupt := append([]byte{}, data[:1<<20]...)
	// Keep the squashfs magic but break its tables: zero the superblock's
	// table pointers region and the data after it.
	off := primOffset(t, img)
	for i := off + 40; i < off+96; i++ {
		corrupt[i] = 0xff
	}
	corrupt = append(corrupt, data[1<<20:]...)
	a, b := overlayImg(t, dir), filepath.Join(dir, "b.img")
	ok(t, dir, "overlay", "create", b)
	// An overlay whose superblock names a first inode past its inodes.
	sb := filepath.Join(dir, "sb.img")
	ok(t, dir, "overlay", "create", "--size", "64", sb)
	f, err := os.OpenFile(sb, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteAt([]byte{0x0b, 0xca, 0, 0}, 1024+0x54) // s_first_ino
	f.Close()
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"truncated SIF", []string{"exec", write("trunc.sif", data[:20000]), "true"},
			[]string{"trunc.sif", "truncated SIF"}},
		{"random file", []string{"exec", write("random.bin", random), "true"},
			[]string{"random.bin", "unknown image format"}},
		{"corrupt squashfs", []string{"exec", write("corrupt.sif", corrupt), "true"},
			[]string{"corrupt.sif"}},
		{"missing file", []string{"exec", filepath.Join(dir, "nope.sif"), "true"},
			[]string{"nope.sif", "not found"}},
		{"two writable overlays", []string{"exec", "-o", a, "-o", b, img, "true"},
			[]string{"you can't specify more than one writable overlay"}},
		{"bad flag", []string{"exec", "--no-such-flag", img, "true"},
			[]string{"--no-such-flag"}},
		{"missing command", []string{"exec", img, "no-such-command"},
			[]string{"no-such-command"}},
		{"corrupt overlay", []string{"exec", "-o", sb, img, "true"},
			[]string{sb, "corrupt superblock", "e2fsck -f " + sb}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fatalLine(t, husk(t, dir, c.args...), c.want...)
		})
	}
}

func primOffset(t *testing.T, path string) int {
	t.Helper()
	fi, err := sif.LoadContainerFromPath(path, sif.OptLoadWithFlag(os.O_RDONLY))
	if err != nil {
		t.Fatal(err)
	}
	defer fi.UnloadContainer()
	d, err := fi.GetDescriptor(sif.WithPartitionType(sif.PartPrimSys))
	if err != nil {
		t.Fatal(err)
	}
	return int(d.Offset())
}

// Two writers on one overlay: the second fails with Apptainer's text
// while the first holds it. A directory overlay is locked the same way
// (Apptainer does not lock one; husk's writes through two containers at
// once were lost), with the lock file in its work/.
func TestOverlayLock(t *testing.T) {
	setup(t)
	img := debianSIF(t)
	for _, kind := range []string{"image", "directory"} {
		t.Run(kind, func(t *testing.T) {
			dir := workDir(t)
			ov := filepath.Join(dir, "ovd")
			if kind == "image" {
				ov = overlayImg(t, dir)
			} else {
				if err := os.Mkdir(ov, 0o755); err != nil {
					t.Fatal(err)
				}
				chown(t, ov)
			}
			overlayLock(t, img, dir, ov, kind == "image")
		})
	}
}

// TestOverlayDirShared: a directory overlay in a directory a group shares
// (set-group-ID, of a group the user namespace does not map) takes files
// from each user in turn: the lock file the first made is one the next
// may lock (it was 0644, and the next was refused for good), and files get
// made there (each create failed with EINVAL, from a chown to the
// unmapped group). A reader of an overlay without work/ yet takes the
// lock too, so a writer starting with it is refused.
func TestOverlayDirShared(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	shared := filepath.Join(dir, "shared")
	if err := os.Mkdir(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(shared, 0o2777) // root's group, which no user namespace maps
	os.Chmod(dir, 0o755)     // for the other user
	ok(t, dir, "exec", "--overlay", shared, img, "sh", "-c", "echo a > /a")
	const otherUID = testUID + 2 // a user without a passwd entry will do
	home2 := filepath.Join(dir, "home2")
	if err := os.Mkdir(home2, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chown(home2, otherUID, otherUID)
	other := func(args ...string) result {
		cmd := userCmd(home2, args...)
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: otherUID, Gid: otherUID}
		cmd.Env = append(cmd.Env, "HOME="+home2, "HUSK_CONFIGDIR="+home2, "TMPDIR="+home2)
		return runCmd(t, cmd)
	}
	// upper/ is the first user's (0755): the other reads, and may write
	// only where the users' modes let each other.
	if r := other("exec", "--overlay", shared, img, "cat", "/a"); r.code != 0 ||
		r.stdout != "a\n" {
		t.Errorf("another user's writable use of the shared overlay: %s", r)
	}

	fresh := filepath.Join(dir, "fresh")
	if err := os.MkdirAll(filepath.Join(fresh, "upper"), 0o755); err != nil {
		t.Fatal(err)
	}
	chown(t, fresh)
	chown(t, filepath.Join(fresh, "upper"))
	holdOverlay(t, img, dir, fresh+":ro", "reading")
	fatalLine(t, husk(t, dir, "exec", "--overlay", fresh, img, "true"),
		"can't open "+fresh+" for writing, currently in use by another process")
}

// holdOverlay starts a container that uses the --overlay value ov until
// the stop it returns is called (or the test ends), once it runs: it
// touches marker in dir.
func holdOverlay(t *testing.T, img, dir, ov, marker string) (stop func() error) {
	t.Helper()
	cmd := userCmd(dir, "exec", "-B", dir+":/w", "--overlay", ov, img, "sh", "-c",
		"touch /w/"+marker+"; sleep 600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
			err = cmd.Wait()
		})
		return err
	}
	t.Cleanup(func() { stop() })
	waitFile(t, filepath.Join(dir, marker))
	return stop
}

func overlayLock(t *testing.T, img, dir, ov string, isImage bool) {
	stopFirst := holdOverlay(t, img, dir, ov, "started")

	fatalLine(t, husk(t, dir, "exec", "--overlay", ov, img, "true"),
		"can't open "+ov+" for writing, currently in use by another process")
	fatalLine(t, husk(t, dir, "exec", "--overlay", ov+":ro", img, "true"),
		"can't open "+ov+" for reading, currently in use for writing by another process")

	err := stopFirst()
	if ee, isExit := err.(*exec.ExitError); err != nil && !isExit {
		t.Fatal(err)
	} else if ee != nil {
		t.Logf("first run ended: %v", ee)
	}
	if isImage {
		fsckClean(t, ov, 0)
	}
	// Readers share once the writer is gone, and keep a writer out.
	holdOverlay(t, img, dir, ov+":ro", "reading")
	ok(t, dir, "exec", "--overlay", ov+":ro", img, "true")
	fatalLine(t, husk(t, dir, "exec", "--overlay", ov, img, "true"),
		"can't open "+ov+" for writing, currently in use by another process")
}

// The image's /.singularity.d is honoured: env scripts are sourced in
// order, APPTAINERENV_ values override them, run executes the runscript
// with its arguments, and shell starts bash. The files come from a
// read-only directory overlay, so the cached image stays as built.
func TestSingularityDir(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	sd := filepath.Join(dir, "meta", ".singularity.d")
	os.MkdirAll(filepath.Join(sd, "env"), 0o755)
	files := map[string]string{
		"env/90-environment.sh": "export FROM_IMAGE=image OVERRIDDEN=image\n",
		"env/99-base.sh":        "export ORDER=\"${FROM_IMAGE}-99\"\n",
		"runscript":             "#!/bin/sh\necho \"runscript $# $1 $FROM_IMAGE $OVERRIDDEN\"\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(sd, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	meta := filepath.Join(dir, "meta")

	r := ok(t, dir, "exec", "--overlay", meta+":ro", "--env", "OVERRIDDEN=cli", img,
		"sh", "-c", "echo $FROM_IMAGE $ORDER $OVERRIDDEN")
	if r.stdout != "image image-99 cli\n" {
		t.Errorf("exec env: %q, want \"image image-99 cli\"", r.stdout)
	}
	r = ok(t, dir, "run", "--overlay", meta+":ro", img, "arg1", "arg2")
	if r.stdout != "runscript 2 arg1 image image\n" {
		t.Errorf("run: %q", r.stdout)
	}
	// Without a runscript, run falls back to /bin/sh with Apptainer's INFO.
	cmd := userCmd(dir, "run", img)
	cmd.Stdin = strings.NewReader("echo from-sh\n")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "No runscript found in container, "+
		"executing /bin/sh") || !strings.Contains(string(out), "from-sh") {
		t.Errorf("run without runscript: %v\n%s", err, out)
	}
	cmd = userCmd(dir, "shell", img)
	cmd.Stdin = strings.NewReader("echo $SHELL; exit 4\n")
	out, err = cmd.Output()
	if ee, isExit := err.(*exec.ExitError); !isExit || ee.ExitCode() != 4 ||
		string(out) != "/bin/bash\n" {
		t.Errorf("shell: %v, %q; want exit 4 and /bin/bash", err, out)
	}
}

// A sandbox directory the user owns is written in place with --writable;
// without it, it is read-only. The sandbox is a few files of the cached
// rootfs (dash, cat and the C library).
func TestWritableSandbox(t *testing.T) {
	setup(t)
	debianSIF(t)
	dir := workDir(t)
	sbx := filepath.Join(dir, "sbx")
	copyRootfs(t, sbx, "bin", "usr/bin/dash", "usr/bin/sh", "usr/bin/cat")
	tool(t, "chown", "-R", strconv.Itoa(testUID)+":"+strconv.Itoa(testUID), sbx)

	r := husk(t, dir, "exec", sbx, "sh", "-c", "echo x > /f")
	if r.code == 0 || !strings.Contains(r.stderr, "Read-only file system") {
		t.Fatalf("write without --writable: %s", r)
	}
	ok(t, dir, "exec", "--writable", sbx, "sh", "-c", "echo in-place > /f")
	if b, err := os.ReadFile(filepath.Join(sbx, "f")); err != nil || string(b) != "in-place\n" {
		t.Fatalf("sandbox file: %q, %v", b, err)
	}
	// Mount points for the home directory and binds did not land in it.
	if _, err := os.Stat(filepath.Join(sbx, "home")); err == nil {
		t.Errorf("mount points were created in the sandbox directory")
	}
}

// TestStageNames: ps and top show the stages by name, not as "exe" (the
// payload's parent is stage 2, whose parent is stage 1 in the host's PID
// namespace, seen here through /proc as the container shares it).
func TestStageNames(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	r := ok(t, dir, "exec", img, "sh", "-c",
		`p2=$(cut -d' ' -f4 /proc/$PPID/stat); cat /proc/$PPID/comm /proc/$p2/comm`)
	if r.stdout != "husk-stage2\nhusk-stage1\n" {
		t.Errorf("stage names %q, want husk-stage2 and husk-stage1", r.stdout)
	}
}
