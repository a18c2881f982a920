// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// mknodScript runs in the container: devices of every kind of call, and
// the calls stage 1 must leave to the kernel. Each line of output is
// checked by TestE2EMknodFakeroot.
const mknodScript = `
err() { "$@" 2>&1 | sed 's/.*: //'; }
mkdir /dev2 /dev3 && ln -s /dev3 /dev2/abs
mknod /dev2/null c 1 3 && stat -c 'null %F %t,%T %u:%g %a' /dev2/null
mknod /dev2/sda b 8 0 && stat -c 'sda %F %t,%T %a' /dev2/sda
echo "exists $(err mknod /dev2/null c 1 3)"
echo "noparent $(err mknod /nope/x c 1 3)"
echo "hostbind $(err mknod /tmp/husk-mknod-$$ c 1 3)"
echo "nested $(err unshare -U -r mknod /dev2/nested c 1 3)"
echo "nocap $(err setpriv --bounding-set -mknod mknod /dev2/nocap c 1 3)"
echo "nonroot $(err setpriv --reuid 42 mknod /dev2/u42 c 1 3)"
echo "self $(mknod /proc/self/root/dev2/s1 c 1 9 && cd /dev2 &&
	mknod /proc/thread-self/cwd/s2 c 1 9 && stat -c %t,%T s1 s2 | tr '\n' ' ' && rm s1 s2)"
cd /dev2 && python3 -c '
import ctypes, os
fd = os.open("/dev2", os.O_RDONLY)
os.chdir("/")
os.mknod("abs/at", 0o20640, os.makedev(1, 5), dir_fd=fd)
libc = ctypes.CDLL(None, use_errno=True)
if libc.syscall(133, b"dev2/old", 0o20666, os.makedev(1, 7)) != 0:
    print("mknod syscall", ctypes.get_errno())
os.umask(0o077)
os.mknod("/dev2/umask", 0o20666, os.makedev(1, 8))
'
stat -c '%n %F %t,%T %a' /dev3/at /dev2/old /dev2/umask
chmod 600 /dev2/null && chown 5:6 /dev2/null && mv /dev2/null /dev3/null &&
	rm /dev2/sda && stat -c '%n %a %u:%g %t,%T' /dev3/null
ls /dev2 /dev3 | tr '\n' ' '; echo
`

// TestE2EMknodFakeroot: in a --fakeroot container as an unprivileged
// user, mknod of char and block devices on the union works (mknod,
// mknodat with a dirfd, absolute symbolic links resolved inside the
// container, paths through /proc/self), with the umask, and the devices are real ext3 device
// inodes that e2fsck accepts and a second container sees. Calls the
// kernel must refuse still fail as the kernel says: EEXIST, ENOENT, a
// host bind, a nested user namespace, a caller without CAP_MKNOD, one
// without write permission. Without --fakeroot, mknod fails with EPERM.
func TestE2EMknodFakeroot(t *testing.T) {
	e2eNeedUser(t, e2eUser, e2eUID, true)
	sif, dir := e2eSIF(t), e2eDir(t, e2eUID)
	img := filepath.Join(dir, "ov.img")
	e2eOK(t, e2eUID, dir, nil, "overlay", "create", "--fakeroot", "--size", "64", img)

	r := e2eOK(t, e2eUID, dir, nil, "exec", "--fakeroot", "--overlay", img, sif, "sh", "-c",
		mknodScript)
	want := `null character special file 1,3 0:0 644
sda block special file 8,0 644
exists File exists
noparent No such file or directory
hostbind Operation not permitted
nested Operation not permitted
nocap Operation not permitted
nonroot Permission denied
self 1,9 1,9 
/dev3/at character special file 1,5 640
/dev2/old character special file 1,7 644
/dev2/umask character special file 1,8 600
/dev3/null 600 5:6 1,3
/dev2: abs old umask  /dev3: at null 
`
	if r.stdout != want {
		t.Errorf("got\n%s\nwant\n%s\nstderr:\n%s", r.stdout, want, r.stderr)
	}
	e2fsckClean(t, img)
	out, err := exec.Command("debugfs", "-R", "stat /upper/dev3/null", img).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Type: character special") ||
		!strings.Contains(string(out), "Device major/minor number: 01:03") {
		t.Errorf("debugfs stat /upper/dev3/null: %v\n%s", err, out)
	}
	if got := debugfsOwner(t, img, "/upper/dev3/null"); got != "5 6" {
		t.Errorf("debugfs: /upper/dev3/null owned by %s, want 5 6", got)
	}

	// A second container sees them.
	r = e2eOK(t, e2eUID, dir, nil, "exec", "--fakeroot", "--overlay", img, sif,
		"stat", "-c", "%n %F %t,%T", "/dev3/null", "/dev2/old")
	if want := "/dev3/null character special file 1,3\n" +
		"/dev2/old character special file 1,7\n"; r.stdout != want {
		t.Errorf("second run:\n%s\nwant\n%s", r.stdout, want)
	}

	// Without --fakeroot nothing is intercepted: the kernel refuses.
	r = e2eRun(t, e2eUID, dir, nil, "exec", "--writable-tmpfs", sif, "sh", "-c",
		"mknod /x c 1 3 2>&1 | sed 's/.*: //'")
	if r.stdout != "Operation not permitted\n" {
		t.Errorf("without --fakeroot: %v", r)
	}
}

// TestE2EMknodInstance: commands joined to a --fakeroot instance make
// devices too (stage 1 serves their stage 2's filter).
func TestE2EMknodInstance(t *testing.T) {
	e2eNeedUser(t, e2eUser, e2eUID, true)
	sif, dir := e2eSIF(t), e2eDir(t, e2eUID)
	img := filepath.Join(dir, "ov.img")
	env := []string{"HUSK_CONFIGDIR=" + filepath.Join(dir, "cfg")}
	e2eOK(t, e2eUID, dir, env, "overlay", "create", "--fakeroot", "--size", "64", img)
	e2eOK(t, e2eUID, dir, env, "instance", "start", "--fakeroot", "--overlay", img, sif,
		"mk")
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			e2eOK(t, e2eUID, dir, env, "instance", "stop", "mk")
		}
	}
	t.Cleanup(stop)
	r := e2eOK(t, e2eUID, dir, env, "exec", "instance://mk", "sh", "-c",
		"mknod /inst c 4 5 && stat -c '%F %t,%T' /inst")
	if r.stdout != "character special file 4,5\n" {
		t.Errorf("joined mknod: %v", r)
	}
	stop()
	e2fsckClean(t, img)
	out, err := exec.Command("debugfs", "-R", "stat /upper/inst", img).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Device major/minor number: 04:05") {
		t.Errorf("debugfs stat /upper/inst: %v\n%s", err, out)
	}
}
