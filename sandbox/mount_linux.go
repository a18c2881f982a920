// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// mountError is a failed mount(2), with the flags spelled out.
type mountError struct {
	Op, Source, Target string
	Flags              uintptr
	Err                error
}

func (e *mountError) Error() string {
	s := e.Op + " " + e.Target
	if e.Source != "" {
		s = e.Op + " " + e.Source + " on " + e.Target
	}
	if e.Flags != 0 {
		s += " (" + mountFlagString(e.Flags) + ")"
	}
	return s + ": " + e.Err.Error()
}

func (e *mountError) Unwrap() error { return e.Err }

var mountFlagNames = []struct {
	flag uintptr
	name string
}{
	{unix.MS_RDONLY, "MS_RDONLY"}, {unix.MS_NOSUID, "MS_NOSUID"},
	{unix.MS_NODEV, "MS_NODEV"}, {unix.MS_NOEXEC, "MS_NOEXEC"},
	{unix.MS_REMOUNT, "MS_REMOUNT"}, {unix.MS_BIND, "MS_BIND"},
	{unix.MS_REC, "MS_REC"}, {unix.MS_PRIVATE, "MS_PRIVATE"},
	{unix.MS_NOATIME, "MS_NOATIME"}, {unix.MS_NODIRATIME, "MS_NODIRATIME"},
	{unix.MS_RELATIME, "MS_RELATIME"}, {unix.MS_STRICTATIME, "MS_STRICTATIME"},
}

func mountFlagString(f uintptr) string {
	var names []string
	for _, n := range mountFlagNames {
		if f&n.flag != 0 {
			names = append(names, n.name)
			f &^= n.flag
		}
	}
	if f != 0 {
		names = append(names, fmt.Sprintf("%#x", f))
	}
	return strings.Join(names, "|")
}

// mount is mount(2) returning a *mountError.
func mount(source, target, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		op := "mount"
		if fstype != "" {
			op = "mount " + fstype
		}
		return &mountError{Op: op, Source: source, Target: target, Flags: flags, Err: err}
	}
	return nil
}

// mountSetattr is mount_setattr(2); tests replace it to take the path of
// kernels older than 5.12.
var mountSetattr = unix.MountSetattr

// bindMount binds src (recursively) on target and restricts the new
// mounts to attr (unix.MOUNT_ATTR_*: nosuid, nodev, rdonly).
//
// In a user namespace a bind mount inherits the locked flags of its
// source (nosuid, nodev, noexec, rdonly, atime) and a remount must repeat
// them or fail with EPERM. mount_setattr(2) only adds flags and applies
// them to the whole tree with AT_RECURSIVE, which the old remount cannot;
// kernels before 5.12 fall back to a remount of the top mount that keeps
// the source's flags (statfs) as runc does.
func bindMount(src, target string, attr uint64) error {
	if err := mount(src, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	if attr == 0 {
		return nil
	}
	err := mountSetattr(unix.AT_FDCWD, target, unix.AT_RECURSIVE,
		&unix.MountAttr{Attr_set: attr})
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.ENOSYS) {
		return &mountError{Op: "mount_setattr", Target: target, Err: err}
	}

	var st unix.Statfs_t
	if err := unix.Statfs(target, &st); err != nil {
		return &os.PathError{Op: "statfs", Path: target, Err: err}
	}
	flags := uintptr(unix.MS_BIND|unix.MS_REMOUNT) | lockedFlags(st.Flags)
	if attr&unix.MOUNT_ATTR_RDONLY != 0 {
		flags |= unix.MS_RDONLY
	}
	if attr&unix.MOUNT_ATTR_NOSUID != 0 {
		flags |= unix.MS_NOSUID
	}
	if attr&unix.MOUNT_ATTR_NODEV != 0 {
		flags |= unix.MS_NODEV
	}
	return mount("", target, "", flags, "")
}

// lockedFlags converts statfs(2) f_flags (ST_*) to the MS_* flags a
// remount must keep.
func lockedFlags(f int64) uintptr {
	var ms uintptr
	for _, m := range []struct {
		st int64
		ms uintptr
	}{
		{unix.ST_RDONLY, unix.MS_RDONLY}, {unix.ST_NOSUID, unix.MS_NOSUID},
		{unix.ST_NODEV, unix.MS_NODEV}, {unix.ST_NOEXEC, unix.MS_NOEXEC},
		{unix.ST_NOATIME, unix.MS_NOATIME}, {unix.ST_NODIRATIME, unix.MS_NODIRATIME},
		{unix.ST_RELATIME, unix.MS_RELATIME},
	} {
		if f&m.st != 0 {
			ms |= m.ms
		}
	}
	return ms
}

// maxSymlinks bounds symbolic link resolution, as the kernel's MAXSYMLINKS.
const maxSymlinks = 40

// errProcEntry refuses a mount destination that leads through a process's
// /proc entry (procEntry).
var errProcEntry = errors.New("it leads through a process's /proc entry, which would be " +
	"one of husk's setup processes, not the container's")

// procEntryError is the error for a mount destination dst (of tag) that
// resolveIn refused with errProcEntry.
func procEntryError(dst, tag string) error {
	return fmt.Errorf("mount destination %s [%s]: cannot bind onto a process's /proc "+
		"entry: it would be one of husk's setup processes, not a process of the container",
		dst, tag)
}

// resolveIn returns the absolute container path that p designates when
// root is the container's root: symbolic links are followed as the
// container would follow them (absolute targets start at root, ".." stops
// at root), so a mount destination can never escape into the host. The
// first missing component and everything after it are kept as given. A
// path through /proc/self, /proc/thread-self or /proc/PID is refused
// (errProcEntry).
func resolveIn(root, p string) (string, error) {
	rest := strings.Split(filepath.Clean("/"+p), "/")
	cur := "/"
	links := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, c)
		if procEntry(next) != "" {
			// /dev/stdin is /proc/self/fd/0: followed here, it led to
			// whatever stage 1's stdin was (/dev/null, or a host file).
			return "", &os.PathError{Op: "resolve", Path: p, Err: errProcEntry}
		}
		fi, err := os.Lstat(filepath.Join(root, next))
		if errors.Is(err, os.ErrNotExist) {
			// Join cleans: a ".." after the missing name can still lead
			// into /proc.
			r := filepath.Join(append([]string{next}, rest...)...)
			if procEntry(r) != "" {
				return "", &os.PathError{Op: "resolve", Path: p, Err: errProcEntry}
			}
			return r, nil
		}
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxSymlinks {
			return "", &os.PathError{Op: "resolve", Path: p, Err: syscall.ELOOP}
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			cur = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return cur, nil
}

// unmountUnder detaches every mount stacked on the mount at dir.
//
// Only the direct children are unmounted: MNT_DETACH takes each one's
// subtree with it. Unmounting deeper ones one by one would fail, since
// host mounts copied into a user namespace are locked to their parent
// (mount_namespaces(7)) and can only go together with it.
//
// umount(2) takes a path and detaches the topmost mount there, so a
// destination with several mounts stacked on it (a user bind over /tmp
// lands on the default /tmp bind) is unmounted once per mount until it
// is no mount point any more (EINVAL). Leaving the bottom one would keep
// dir busy, and the union's unmount would then retry for a third of a
// second before detaching it lazily.
func unmountUnder(dir string) error {
	// thread-self: a test may call this from a thread that has a mount
	// namespace of its own; in stage 1 it is the process's.
	b, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		return err
	}
	type entry struct{ id, parent, target string }
	var ents []entry
	top := ""
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		e := entry{id: f[0], parent: f[1], target: unescapeMountinfo(f[4])}
		ents = append(ents, e)
		if e.target == dir {
			top = e.id // the last one listed is the top of a stack
		}
	}
	if top == "" {
		return nil
	}
	// How many mounts each path has at most: the children of top there,
	// and what is stacked on them at the same path.
	stacked := map[string]int{}
	for _, e := range ents {
		stacked[e.target]++
	}
	var first error
	done := map[string]bool{}
	for _, e := range ents {
		if e.parent != top || done[e.target] {
			continue
		}
		done[e.target] = true
		for range stacked[e.target] {
			err := unix.Unmount(e.target, unix.MNT_DETACH)
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
				break // no mount point there any more
			}
			if err != nil {
				if first == nil {
					first = &os.PathError{Op: "umount", Path: e.target, Err: err}
				}
				break
			}
		}
	}
	return first
}

// unescapeMountinfo undoes the octal escapes (\040 for space...) of
// /proc/self/mountinfo fields.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range []byte(s[i+1 : i+4]) {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + c - '0'
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
