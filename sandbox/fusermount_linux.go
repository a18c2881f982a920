// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// The fusermount3 fallback. Where the kernel or a policy refuses the
// FUSE mount in husk's user namespace (kernels before 4.18, an LSM or a
// seccomp profile) but the setuid fusermount3 of fuse3 works, the union
// is mounted through fusermount3 in the host's mount namespace by a
// server process of its own (stage 3, hostserve_linux.go), and stage 1
// binds that mount as the container root instead of mounting FUSE.

// FusermountEnv selects how the union is mounted: "1" (or "yes",
// "true") always through fusermount3, "0" (or "no", "false") never, and
// unset or anything else: by stage 1 itself, falling back to fusermount3
// when the kernel refuses that mount and a setuid fusermount3 is found.
const FusermountEnv = "HUSK_FUSERMOUNT"

// fusermountChoice is what FusermountEnv asks for.
type fusermountChoice int

const (
	fusermountAuto fusermountChoice = iota
	fusermountAlways
	fusermountNever
)

// fusermountSetting reads FusermountEnv; spec.Fusermount forces it.
func fusermountSetting(spec *Spec) fusermountChoice {
	if spec.Fusermount {
		return fusermountAlways
	}
	switch strings.ToLower(os.Getenv(FusermountEnv)) {
	case "1", "yes", "true":
		return fusermountAlways
	case "0", "no", "false":
		return fusermountNever
	}
	return fusermountAuto
}

// mountRefusedStatus is stage 1's exit status when the kernel refused
// its FUSE mount with EPERM while /dev/fuse opens: a fusermount3 mount
// may still work. It cannot be a payload's status: stage 1 uses it only
// before the payload started.
const mountRefusedStatus = 254

// mountRefused reports whether err, from the Mounter in stage 1, is the
// kernel's or a policy's refusal of the FUSE mount in the user namespace
// (the cases explainMountError words as such), which fusermount3 may
// get around; an inaccessible /dev/fuse is the administrator's to fix.
func mountRefused(err error) bool {
	var errno syscall.Errno
	return errors.As(err, &errno) && errno == syscall.EPERM && CheckFUSE() == nil
}

// refusedError is stage 1's refused mount, reported to stage 0: err is
// the explanation for the user.
type refusedError struct{ err error }

func (e *refusedError) Error() string { return e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

// fusermountNames are where go-fuse looks for the helper, in order; tests
// change them.
var fusermountNames = []string{"fusermount3", "/bin/fusermount3", "fusermount",
	"/bin/fusermount"}

// lookFusermount finds fusermount3 (or fusermount) as go-fuse does: on
// PATH, else in /bin. Unless the caller is root it must be setuid root.
func lookFusermount() (string, error) {
	var path string
	for _, name := range fusermountNames {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		return "", errors.New("install fuse3 (fusermount3): husk then mounts through it")
	}
	if os.Geteuid() == 0 {
		return path, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid != 0 || fi.Mode()&os.ModeSetuid == 0 {
		return "", fmt.Errorf("%s is not setuid root, so husk cannot mount through it "+
			"(chmod u+s %s)", path, path)
	}
	return path, nil
}

// fallBack decides, after stage 1 reported refused, whether to run again
// through fusermount3; it returns the error for the user when not.
func fallBack(choice fusermountChoice, refused *refusedError, log *slog.Logger) error {
	if choice == fusermountNever {
		return refused.err
	}
	path, err := lookFusermount()
	if err != nil {
		return fmt.Errorf("%w; or %v", refused.err, err)
	}
	// Apptainer prints nothing when it mounts through fusermount3.
	log.Debug("the FUSE mount in the user namespace was refused, mounting through "+path,
		"error", refused.err)
	return nil
}

// stage1IDs is stage 1's id mapping. Through fusermount3 the mount has
// no allow_other (fusermount3 refuses it to users without
// user_allow_other in /etc/fuse.conf), and the kernel then lets only the
// mounting user's own uid and gid in: ids of an /etc/subuid range would
// get EACCES on every file, so --fakeroot maps root only.
func stage1IDs(p *plan, log *slog.Logger) (idMapping, *idHelpers) {
	spec := p.Spec
	if p.HostUnion == "" || !spec.Fakeroot || spec.UID == 0 {
		return stage1Mapping(p, log)
	}
	log.Warn("--fakeroot maps root only when the container is mounted through " +
		"fusermount3: files cannot be chowned to other ids, so apt, dpkg and other tools " +
		"that change owners fail")
	return rootMapping(spec.UID, spec.GID), nil
}
