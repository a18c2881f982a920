// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// --fakeroot with subordinate ids (COMPAT 7.8).
//
// An unprivileged process can write only a one-line id map of its own
// ids; mapping the user's /etc/subuid range takes the setuid helpers
// newuidmap(1) and newgidmap(1), which must be run from outside the new
// namespace on the child's pid. Go writes the maps of a SysProcAttr
// between clone and exec and has no hook to run a helper instead, so:
//
//  1. stage 0 starts stage 1 with CLONE_NEWUSER and no maps, and with
//     idmapEnv=wait;
//  2. stage 1 has exec'd as an unmapped uid and holds no capabilities;
//     it blocks reading one byte from the spec pipe;
//  3. stage 0 runs newuidmap and newgidmap on its pid, then writes the
//     byte followed by the plan;
//  4. stage 1 re-executes itself: now uid 0 of its namespace, the exec
//     gives it every capability there (capabilities(7)). The kernel
//     clears the parent-death signal on that exec (the permitted set
//     grew), so it sets it again.
//
// Without a range or without the helpers, stage 1 gets the one-id map
// and husk warns once about what cannot work.

// idmapEnv tells a stage 1 process where it is in the steps above.
const idmapEnv = "_HUSK_IDMAP"

// idHelpers are the paths of newuidmap and newgidmap.
type idHelpers struct{ uid, gid string }

// lookIDHelpers finds newuidmap and newgidmap on PATH or in /usr/bin
// (PATH may be the container's, or empty).
func lookIDHelpers() (idHelpers, error) {
	var h idHelpers
	for _, p := range []struct {
		name string
		dst  *string
	}{{"newuidmap", &h.uid}, {"newgidmap", &h.gid}} {
		path, err := exec.LookPath(p.name)
		if err != nil {
			path, err = exec.LookPath("/usr/bin/" + p.name)
		}
		if err != nil {
			return h, fmt.Errorf("%s is not installed (package uidmap)", p.name)
		}
		if !privileged(path) {
			return h, fmt.Errorf("%s is neither setuid root nor given cap_setuid", path)
		}
		*p.dst = path
	}
	return h, nil
}

// privileged reports whether the helper at path can do its work: setuid
// root, or file capabilities (some distributions ship it so).
func privileged(path string) bool {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return false
	}
	if st.Mode&unix.S_ISUID != 0 && st.Uid == 0 {
		return true
	}
	n, err := unix.Getxattr(path, "security.capability", nil)
	return err == nil && n > 0
}

// fakerootMapping is stage 1's mapping for --fakeroot with subordinate
// ids, as Apptainer's: root inside is the user, 1..N the user's range.
func fakerootMapping(uid, gid uint32, subUIDs, subGIDs subRange) idMapping {
	return idMapping{
		UIDs: []idRange{{Container: 0, Host: uid, Size: 1},
			{Container: 1, Host: subUIDs.Start, Size: subUIDs.Count}},
		GIDs: []idRange{{Container: 0, Host: gid, Size: 1},
			{Container: 1, Host: subGIDs.Start, Size: subGIDs.Count}},
		// newgidmap allows setgroups(2) for a mapping beyond the own gid.
		Setgroups: true,
	}
}

// stage1Mapping picks stage 1's id mapping. helpers is set when the
// mapping must be written by newuidmap and newgidmap.
func stage1Mapping(p *plan, log *slog.Logger) (idMapping, *idHelpers) {
	spec := p.Spec
	single := rootMapping(spec.UID, spec.GID)
	if !spec.Fakeroot {
		return single, nil
	}
	if spec.UID == 0 {
		// Host root may write any mapping itself: the same ids inside.
		all := []idRange{{Container: 0, Host: 0, Size: 1 + minSubIDs}}
		return idMapping{UIDs: all, GIDs: all, Setgroups: true}, nil
	}
	name := p.User.Name
	if name == "" {
		name = spec.Username
	}
	m, h, err := subIDMapping(spec.UID, spec.GID, name)
	if err != nil {
		log.Warn("--fakeroot maps root only: " + err.Error() + "; files cannot be " +
			"chowned to other ids, so apt, dpkg and other tools that change owners fail")
		return single, nil
	}
	return m, h
}

// subIDMapping is the full --fakeroot mapping of user name, or why there
// is none.
func subIDMapping(uid, gid uint32, name string) (idMapping, *idHelpers, error) {
	subUIDs, err := subIDRange(subUIDFile, name, uid)
	if err != nil {
		return idMapping{}, nil, err
	}
	subGIDs, err := subIDRange(subGIDFile, name, uid)
	if err != nil {
		return idMapping{}, nil, err
	}
	h, err := lookIDHelpers()
	if err != nil {
		return idMapping{}, nil, err
	}
	return fakerootMapping(uid, gid, subUIDs, subGIDs), &h, nil
}

// write writes m into the user namespace of pid with the helpers.
func (h *idHelpers) write(pid int, m idMapping) error {
	for _, c := range []struct {
		bin    string
		ranges []idRange
	}{{h.uid, m.UIDs}, {h.gid, m.GIDs}} {
		args := []string{strconv.Itoa(pid)}
		for _, r := range c.ranges {
			args = append(args, strings.Fields(r.String())...)
		}
		cmd := exec.Command(c.bin, args...)
		// In a process group of its own: a ^C or a kill of husk's group
		// while the container starts is for the command (stage 0 passes
		// it on), and killed, the helper failed the start with a FATAL.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		out, err := cmd.CombinedOutput()
		if v, _ := readSysctl("kernel/apparmor_restrict_unprivileged_userns"); err != nil &&
			v == "1" {
			// Ubuntu 24.04: the namespace has no capabilities to map.
			return usernsError(syscall.EPERM)
		}
		if err != nil {
			msg := strings.TrimSpace(string(out))
			if msg == "" {
				msg = err.Error()
			}
			return &helperError{err: err, msg: fmt.Sprintf("--fakeroot: %s %s failed: %s",
				c.bin, strings.Join(args, " "), msg)}
		}
	}
	return nil
}

// awaitIDMap is stage 1's side of the steps above. With idmapEnv=wait it
// waits for the maps and re-executes itself (it does not return unless
// that fails); after the re-execution it restores the parent-death
// signal. Without idmapEnv it does nothing.
func awaitIDMap(fds string) error {
	state := os.Getenv(idmapEnv)
	os.Unsetenv(idmapEnv)
	switch {
	case state == "":
		return nil
	case state == "wait":
		specFD, err := strconv.Atoi(strings.Split(fds, ",")[0])
		if err != nil {
			return fmt.Errorf("%w: fds %q", errStage, fds)
		}
		var b [1]byte
		for {
			n, err := syscall.Read(specFD, b[:])
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if n != 1 {
				// Stage 0 gave up (the helpers failed) and said why.
				return fmt.Errorf("%w: no id mapping", errStage)
			}
			break
		}
		env := append(os.Environ(), stageEnv+"=1", specFDEnv+"="+fds,
			fmt.Sprintf("%s=mapped:%d", idmapEnv, os.Getppid()))
		err = syscall.Exec("/proc/self/exe", os.Args, env)
		return fmt.Errorf("sandbox: re-executing stage 1 after newuidmap: %w", err)
	default:
		ppid, ok := strings.CutPrefix(state, "mapped:")
		if !ok {
			return fmt.Errorf("%w: %s=%q", errStage, idmapEnv, state)
		}
		if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0, 0,
			0); err != nil {
			return &os.SyscallError{Syscall: "prctl(PR_SET_PDEATHSIG)", Err: err}
		}
		if strconv.Itoa(os.Getppid()) != ppid {
			return errors.New("sandbox: husk exited while stage 1 started")
		}
		return nil
	}
}

// helperError is a failed newuidmap or newgidmap: msg for the user, err
// the exec error, which says whether a signal killed the helper.
type helperError struct {
	err error
	msg string
}

func (e *helperError) Error() string { return e.msg }
func (e *helperError) Unwrap() error { return e.err }
