// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// TestE2EHostProblems: where the host cannot run a rootless container,
// husk says what and how to fix it in one line and exits 255. Each host
// is simulated for one run of husk as husktest: /dev/fuse hidden or made
// root-only in a private mount namespace, user namespaces disabled by
// max_user_namespaces=0 in a user namespace of the test's own.
func TestE2EHostProblems(t *testing.T) {
	e2eNeedUser(t, e2eUser, e2eUID, true)
	sif, dir := e2eSIF(t), e2eDir(t, e2eUID)
	husk := e2eHusk(t)
	rootOnly := filepath.Join(dir, "fuse-root-only")
	if err := os.WriteFile(rootOnly, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	asUser := "exec setpriv --reuid " + strconv.Itoa(e2eUID) + " --regid " +
		strconv.Itoa(e2eUID) + " --clear-groups " + husk + " exec " + sif + " true"
	// A /dev without fuse: a tmpfs with the usual character devices.
	noFuseDev := "mount -t tmpfs -o mode=0755 none /dev && " +
		"mknod -m 666 /dev/null c 1 3 && mknod -m 666 /dev/zero c 1 5 && " +
		"mknod -m 666 /dev/urandom c 1 9 && mknod -m 666 /dev/random c 1 8 && " +
		"mknod -m 666 /dev/tty c 5 0 && "

	tests := []struct {
		name   string
		script string
		userns bool // run the script as root of a new user namespace
		want   string
	}{
		{"dev fuse root only", "mount --bind " + rootOnly + " /dev/fuse && " + asUser, false,
			"FATAL:   mounting the container: /dev/fuse is not accessible (permission " +
				"denied): ask your administrator to make it mode 0666, the distribution " +
				"default (chmod 0666 /dev/fuse)\n"},
		{"dev fuse missing", noFuseDev + asUser, false,
			"FATAL:   mounting the container: /dev/fuse does not exist (no such file or " +
				"directory): ask your administrator to load the fuse kernel module " +
				"(modprobe fuse)\n"},
		{"no user namespaces", "echo 0 >/proc/sys/user/max_user_namespaces && " + asUser,
			true, "FATAL:   cannot create a user namespace: user namespaces are disabled " +
				"(/proc/sys/user/max_user_namespaces is 0); ask your administrator to run " +
				"sysctl -w user.max_user_namespaces=15000\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cmd *exec.Cmd
			if tt.userns {
				cmd = exec.Command("sh", "-c", tt.script)
				ids := []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1},
					{ContainerID: e2eUID, HostID: e2eUID, Size: 1}}
				cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER,
					UidMappings: ids, GidMappings: ids, GidMappingsEnableSetgroups: true}
			} else {
				cmd = exec.Command("unshare", "-m", "--propagation", "private",
					"sh", "-c", tt.script)
			}
			cmd.Dir = dir
			cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
				"HOME=" + dir, "TMPDIR=" + dir, "LANG=C"}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 255 {
				t.Fatalf("want exit 255, got %v\nstdout:\n%s\nstderr:\n%s", err, &stdout,
					&stderr)
			}
			if stderr.String() != tt.want {
				t.Errorf("stderr\n%s\nwant\n%s", &stderr, tt.want)
			}
		})
	}
}
