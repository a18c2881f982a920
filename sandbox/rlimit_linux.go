// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// A command that joins an instance is started by the instance's stage 1,
// not by the husk that asked for it, so it would run under the limits the
// instance was started with. Apptainer's joined command is its caller's
// child and has the caller's: a Slurm job's `ulimit -v` or `-n` holds in
// it. So [Join] sends the caller's limits, and the joined stage 2 takes
// them on before it starts the command; a hard limit can only be lowered,
// so where the instance's is lower, that one stays.

// Rlimit is one resource limit (setrlimit(2)) of a joining caller.
type Rlimit struct {
	Resource int
	Cur, Max uint64
}

// joinedLimits are the resources whose limits a joined command takes
// from its caller.
var joinedLimits = []int{unix.RLIMIT_AS, unix.RLIMIT_CORE, unix.RLIMIT_CPU,
	unix.RLIMIT_DATA, unix.RLIMIT_FSIZE, unix.RLIMIT_LOCKS, unix.RLIMIT_MEMLOCK,
	unix.RLIMIT_MSGQUEUE, unix.RLIMIT_NICE, unix.RLIMIT_NOFILE, unix.RLIMIT_NPROC,
	unix.RLIMIT_RTPRIO, unix.RLIMIT_RTTIME, unix.RLIMIT_SIGPENDING, unix.RLIMIT_STACK}

// callerLimits returns this process's limits of joinedLimits, with the
// soft limit on open files this process started with.
func callerLimits() []Rlimit {
	var out []Rlimit
	for _, r := range joinedLimits {
		var l unix.Rlimit
		if unix.Getrlimit(r, &l) != nil {
			continue
		}
		if r == unix.RLIMIT_NOFILE {
			l.Cur = startNoFile(l)
		}
		out = append(out, Rlimit{Resource: r, Cur: l.Cur, Max: l.Max})
	}
	return out
}

// startNoFile is the soft limit on open files this process started with,
// cur being the limit now. The Go runtime raises it to one below the hard
// limit as it starts, and gives children the one it found; a program that
// uses select(2) needs it (an fd_set holds 1024), so a joined command
// must get the caller's too, as a plain run's command does. Only a child
// can tell it: a shell, asked for its soft limit.
func startNoFile(cur unix.Rlimit) uint64 {
	if cur.Max == unix.RLIM_INFINITY || cur.Cur != cur.Max-1 {
		return cur.Cur // not raised
	}
	sh := exec.Command("/bin/sh", "-c", "ulimit -Sn")
	sh.Env = []string{"PATH=/usr/bin:/bin"}
	out, err := sh.Output()
	if err != nil {
		return cur.Cur
	}
	s := strings.TrimSpace(string(out))
	if s == "unlimited" {
		return cur.Max
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > cur.Max {
		return cur.Cur
	}
	return n
}

// joinedLimit is the limit a joined command gets: the caller's, with its
// hard limit no higher than own's (the instance's), which it cannot raise.
func joinedLimit(caller Rlimit, own unix.Rlimit) unix.Rlimit {
	l := unix.Rlimit{Cur: caller.Cur, Max: min(caller.Max, own.Max)}
	l.Cur = min(l.Cur, l.Max)
	return l
}

// applyLimits sets this process's limits to those a joined command gets
// from its caller; a failure is a warning, and that limit stays the
// instance's.
func applyLimits(limits []Rlimit, log *slog.Logger) {
	for _, c := range limits {
		var own unix.Rlimit
		if err := unix.Getrlimit(c.Resource, &own); err != nil {
			continue
		}
		l := joinedLimit(c, own)
		if l == own {
			continue
		}
		// syscall's, not unix's: Go starts children with the open-files
		// limit the process had at its start unless this call set it.
		sl := syscall.Rlimit{Cur: l.Cur, Max: l.Max}
		if err := syscall.Setrlimit(c.Resource, &sl); err != nil {
			log.Warn(fmt.Sprintf("the joined command keeps the instance's limit %d "+
				"(%d, hard %d) instead of yours (%d, hard %d)", c.Resource, own.Cur,
				own.Max, c.Cur, c.Max), "error", err)
		}
	}
}

// noFileMax is the hard limit on open files a joined command gets, given
// its caller's limits.
func noFileMax(limits []Rlimit) uint64 {
	var own unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &own); err != nil {
		return 0
	}
	for _, c := range limits {
		if c.Resource == unix.RLIMIT_NOFILE {
			return joinedLimit(c, own).Max
		}
	}
	return own.Max
}

// minOpenFiles is the least limit on open files a container is started
// under. Below about 24, stage 1 (which gets the image files, the
// caller's descriptors and its pipes) ran out of descriptors in its Go
// start-up, where go-fuse's splice package panics; above that each layer
// and bind takes more. Any system's default is far above it (1024).
const minOpenFiles = 64

// checkOpenFiles refuses a limit on open files below minOpenFiles, in one
// line that says how to raise it, before anything starts.
func checkOpenFiles() error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur >= minOpenFiles {
		return nil
	}
	return fmt.Errorf("the limit on open files is %d, too low to start a container: husk "+
		"needs %d (raise it with ulimit -n)", lim.Cur, minOpenFiles)
}

// minFreeTasks is how many processes and threads a container needs below
// the user's limit on them (ulimit -u, which counts both): husk's own
// run about 34 (husk 7, stage 1 12, stage 2 8, the guard 6) before the
// command starts one. Short of it, a stage's Go runtime died of a failed
// pthread_create with hundreds of lines of trace, or the command's start
// failed with a bare "resource temporarily unavailable".
const minFreeTasks = 48

// checkTasks refuses a limit on processes too low for a container, in one
// line, before anything starts. Containers started at once can still take
// what another counted on; this catches a limit that is simply too low.
// Only limits up to 4096 are checked (each check reads the status of
// every process), and root's is not enforced.
func checkTasks() error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NPROC, &lim); err != nil || lim.Cur > 4096 ||
		os.Getuid() == 0 {
		return nil
	}
	used := userTasks(os.Getuid())
	if lim.Cur >= used+minFreeTasks {
		return nil
	}
	return fmt.Errorf("the limit on processes is %d and %d are in use by this user: too few "+
		"left to start a container, which needs %d (raise it with ulimit -u)", lim.Cur, used,
		minFreeTasks)
}

// userTasks counts the tasks (threads) of the processes whose real user is
// uid, as the limit on processes counts them.
func userTasks(uid int) uint64 {
	paths, _ := filepath.Glob("/proc/[0-9]*/status")
	var n uint64
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		mine := false
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), ":")
			fields := strings.Fields(v)
			switch {
			case k == "Uid" && len(fields) > 0:
				mine = fields[0] == strconv.Itoa(uid)
			case k == "Threads" && mine && len(fields) > 0:
				t, _ := strconv.ParseUint(fields[0], 10, 64)
				n += t
			}
		}
		f.Close()
	}
	return n
}
