// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Mount attributes. Every bind is nosuid and nodev (COMPAT 7.2), except
// /dev, whose device nodes must stay usable.
const (
	attrBind = unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV
	attrDev  = unix.MOUNT_ATTR_NOSUID
)

// hostMount is one bind mount from the host (or the session tmpfs) into
// the container.
type hostMount struct {
	// Tag names the kind of mount in messages, as Apptainer's tags do
	// (kernel, dev, hostfs, home, binds, tmp, cwd, files).
	Tag      string
	Src, Dst string
	Attr     uint64
	// Optional mounts are skipped quietly when Src does not exist.
	Optional bool
	// Fatal mounts fail the run when Dst cannot be created.
	Fatal bool
	// IfAbsent mounts are made only when Dst does not exist yet.
	IfAbsent bool
	// Session says Src is in the session tmpfs: mount points below Dst
	// may be created there.
	Session bool
	// NotSameAs skips the mount when Dst resolves to the same container
	// path as this one (/var/tmp linked to /tmp).
	NotSameAs string
	// Make creates Src before the mount when it does not exist: a
	// directory of this mode (missing parents 0755), or, with Content, a
	// file of this mode holding Content.
	Make    os.FileMode
	Content []byte
}

// defaultMounts lists the mounts of COMPAT 7.2 in the order they are made:
// kernel file systems, /dev, the bind-path files, /tmp, home, the working
// directory, then the user binds, so that narrower and user-chosen mounts
// land on top of broader ones. passwd, group and hostname come after,
// from stage 1 (identity_linux.go).
func defaultMounts(p *plan, sess *session) []hostMount {
	s := p.Spec
	var ms []hostMount
	add := func(m hostMount) { ms = append(ms, m) }

	if !s.skips("proc", "/proc") && !s.PID {
		add(hostMount{Tag: "kernel", Src: "/proc", Dst: "/proc", Attr: attrBind})
	}
	if !s.skips("sys", "/sys") {
		add(hostMount{Tag: "kernel", Src: "/sys", Dst: "/sys", Attr: attrBind})
	}
	// --no-mount dev leaves the image's own /dev, as Apptainer's
	// addDevMount does ("Not mounting /dev inside the container"): in a
	// user namespace its device nodes are unusable (the union is nodev),
	// there as here; husk's launcher does not need them.
	if !s.skips("dev", "/dev") {
		m := hostMount{Tag: "dev", Src: "/dev", Dst: "/dev", Attr: attrDev}
		if s.Contain {
			m.Src, m.Session = sess.path("dev"), true
		}
		add(m)
	}
	for _, f := range []string{"/etc/localtime", "/etc/hosts"} {
		if s.skips("bind-paths", f) {
			continue
		}
		m := hostMount{Tag: "hostfs", Src: f, Dst: f, Attr: attrBind, Optional: true}
		if f == "/etc/hosts" && s.Contain && s.Net {
			// The host's names mean nothing in a network namespace of
			// its own: Apptainer writes a localhost-only file.
			m.Src, m.Make, m.Content, m.Session = sess.path("hosts"), 0o644, defaultHosts, true
		}
		add(m)
	}
	if len(s.DNS) > 0 {
		// --dns replaces the host file even with --no-mount files, as
		// Apptainer's generated resolv.conf does.
		add(hostMount{Tag: "files", Src: sess.path("resolv.conf"), Dst: "/etc/resolv.conf",
			Attr: attrBind, Make: 0o644, Content: resolvConf(s.DNS), Session: true})
	} else if !s.skips("files", "/etc/resolv.conf") {
		// TODO(resolv): Apptainer reproduces a symlink into /run and binds
		// its directory; this binds the file it points to.
		add(hostMount{Tag: "files", Src: "/etc/resolv.conf", Dst: "/etc/resolv.conf",
			Attr: attrBind, Optional: true})
	}

	// With --contain and --workdir, /tmp, /var/tmp and home live in the
	// work directory and outlast the container, as in Apptainer.
	work := s.Contain && s.Workdir != ""
	if !s.skips("tmp", "/tmp") {
		tmp, varTmp := "/tmp", "/var/tmp"
		var mode os.FileMode
		switch {
		case work:
			tmp, varTmp = filepath.Join(s.Workdir, "tmp"), filepath.Join(s.Workdir, "var_tmp")
			mode = 0o777 | os.ModeSticky
		case s.Contain:
			tmp, varTmp = sess.path("tmp"), sess.path("var_tmp")
		}
		session := s.Contain && !work
		add(hostMount{Tag: "tmp", Src: tmp, Dst: "/tmp", Attr: attrBind,
			Session: session, Make: mode})
		add(hostMount{Tag: "tmp", Src: varTmp, Dst: "/var/tmp", Attr: attrBind,
			NotSameAs: "/tmp", Session: session, Make: mode})
	}

	if !s.NoHome && !s.skips("home", "") {
		src, dst := s.homeSrcDst()
		private := s.Contain && s.Home == ""
		var mode os.FileMode
		switch {
		case private && work:
			src, mode = filepath.Join(s.Workdir, "home"), 0o700
		case private:
			src = sess.path("home")
		}
		// An explicit --home must exist; a default home that does not
		// (nobody's /nonexistent) is skipped like a bind path.
		add(hostMount{Tag: "home", Src: src, Dst: dst, Attr: attrBind,
			Optional: s.Home == "" && mode == 0, Fatal: true, Session: private && !work,
			Make: mode})
	}

	for _, d := range s.Scratch {
		m := hostMount{Tag: "scratch", Dst: filepath.Clean(d), Attr: attrBind, Fatal: true,
			Make: 0o750}
		if s.Workdir != "" {
			m.Src = filepath.Join(s.Workdir, "scratch", m.Dst)
		} else {
			m.Src, m.Session = sess.path(filepath.Join("scratch", m.Dst)), true
		}
		add(m)
	}

	// The working directory only when the container does not already have
	// it (through the home or /tmp mounts, or from the image): binding
	// the host's /usr/bin over the container's would break it.
	if !s.Contain && !s.skips("cwd", "") && p.HostCwd != "/" && p.HostCwd != "" {
		add(hostMount{Tag: "cwd", Src: p.HostCwd, Dst: p.HostCwd, Attr: attrBind,
			Optional: true, IfAbsent: true})
	}

	for _, b := range s.Binds {
		add(hostMount{Tag: "binds", Src: b.Src, Dst: b.Dst, Attr: b.attr()})
	}
	return ms
}

// bindInto makes m in the container rooted at final. Destinations are
// resolved inside the container; a missing one is created through the
// Mounter, and skipped with a warning when it cannot be (COMPAT 7.2).
func (st *stage1State) bindInto(m hostMount) error {
	if m.Make != 0 {
		if err := makeSource(m); err != nil {
			return fmt.Errorf("creating mount source %s [%s]: %w", m.Src, m.Tag,
				unwrapPath(err))
		}
	}
	fi, err := os.Stat(m.Src)
	if err != nil {
		if m.Optional && errors.Is(err, os.ErrNotExist) {
			st.log.Debug("skipping mount, no source", "src", m.Src, "tag", m.Tag)
			return nil
		}
		return fmt.Errorf("mount source %s [%s]: %w", m.Src, m.Tag, unwrapPath(err))
	}
	if m.Tag == "binds" && st.plan.Spec.PID && underProc(m.Dst) {
		// The container's procfs is mounted in stage 2; resolved here,
		// the path would go through the image's /proc directory (whose
		// links could send the bind anywhere). Stage 2 binds it over
		// its procfs (rebindProc).
		return nil
	}
	dst, err := resolveIn(st.final, m.Dst)
	if errors.Is(err, errProcEntry) {
		if m.Optional {
			st.log.Warn(fmt.Sprintf("Skipping mount %s [%s]: %s leads to a process's "+
				"/proc entry", m.Src, m.Tag, m.Dst))
			return nil
		}
		return procEntryError(m.Dst, m.Tag)
	}
	if err != nil {
		// The path in err is in husk's staging directory, not the
		// container's: m.Dst names it.
		return fmt.Errorf("mount destination %s [%s]: %w", m.Dst, m.Tag, unwrapPath(err))
	}
	if dst == "/" {
		// Stacked on the root, a bind would hide the image, and the
		// union's unmount would take it off instead of the union.
		if m.Optional {
			st.log.Warn(fmt.Sprintf("Skipping mount %s [%s]: %s is the container's root",
				m.Src, m.Tag, m.Dst))
			return nil
		}
		return fmt.Errorf("mount destination %s [%s]: cannot bind over the container's "+
			"root directory; bind to a directory below it", m.Dst, m.Tag)
	}
	target := filepath.Join(st.final, dst)
	if m.NotSameAs != "" {
		if other, err := resolveIn(st.final, m.NotSameAs); err == nil && other == dst {
			st.log.Debug("not mounting, same as "+m.NotSameAs, "dst", m.Dst, "tag", m.Tag)
			return nil
		}
	}

	if _, err := os.Lstat(target); errors.Is(err, os.ErrNotExist) {
		if err := st.mountpoint(dst, fi.IsDir()); err != nil {
			if m.Fatal {
				return fmt.Errorf("can't create %s destination %s in the container: %w",
					m.Tag, dst, unwrapPath(err))
			}
			st.log.Warn(fmt.Sprintf("Skipping mount %s [%s]: %s doesn't exist in container",
				m.Src, m.Tag, dst), "error", err)
			return nil
		}
	} else if err != nil {
		return fmt.Errorf("mount destination %s [%s]: %w", dst, m.Tag, err)
	} else if m.IfAbsent {
		st.log.Debug("not mounting, present in container", "dst", dst, "tag", m.Tag)
		return nil
	}

	// Errors name the destination as the container sees it, not the
	// staging directory it is mounted in from here.
	if tfi, err := os.Stat(target); err == nil && tfi.IsDir() != fi.IsDir() {
		what := "a directory onto a file"
		if tfi.IsDir() {
			what = "a file onto a directory"
		}
		return fmt.Errorf("bind %s to %s [%s]: cannot bind %s", m.Src, dst, m.Tag, what)
	}
	if err := bindMount(m.Src, target, m.Attr); err != nil {
		st.log.Debug("bind failed", "error", err)
		var me *mountError
		if errors.As(err, &me) {
			err = me.Err
		}
		return fmt.Errorf("bind %s to %s [%s]: %w", m.Src, dst, m.Tag, err)
	}
	if err := st.hideSession(m.Src, target); err != nil {
		return fmt.Errorf("[%s]: %w", m.Tag, err)
	}
	st.binds = append(st.binds, madeBind{dst: dst, src: m.Src, session: m.Session})
	st.log.Debug("mounted", "tag", m.Tag, "src", m.Src, "dst", dst)
	return nil
}

// hideSession detaches this run's own staging mounts from the copy of
// src just bound recursively at target, when src holds them: the
// session tmpfs (with the container root below it) and, in fusermount3
// mode, the union's mount point, both next to each other in the temp
// directory. With the default /tmp bind or a user bind of /tmp they
// would show in the container as a second copy of its root and of the
// session's files, which Apptainer, whose session directory is not under
// /tmp, never shows. The copies are private (stage 1 made its tree
// private), so detaching them leaves the originals alone. Their empty
// directories stay, as they are on the host.
//
// TODO: fusermount3 mode's <session>.root stays visible: it is a host
// mount, locked into stage 1's namespace (mount_namespaces(7)), so its
// copy cannot be detached (EINVAL); stage 3 would have to mount the
// union outside the temp directory.
func (st *stage1State) hideSession(src, target string) error {
	real, err := filepath.EvalSymlinks(src)
	if err != nil {
		real = src
	}
	for _, dir := range []string{st.plan.Session, st.plan.HostUnion} {
		if dir == "" {
			continue
		}
		rel, err := filepath.Rel(real, dir)
		if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
			continue
		}
		t := filepath.Join(target, rel)
		err = unix.Unmount(t, unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			continue // not mounted in this copy (a locked <session>.root: EINVAL)
		}
		if err != nil {
			return &os.PathError{Op: "umount", Path: t, Err: err}
		}
		st.log.Debug("session mounts hidden", "in", target, "path", t)
	}
	return nil
}

// attr is the mount attributes of user bind b.
func (b Bind) attr() uint64 {
	if b.ReadOnly {
		return attrBind | unix.MOUNT_ATTR_RDONLY
	}
	return attrBind
}

// underProc says whether the container path dst is below /proc.
func underProc(dst string) bool {
	return strings.HasPrefix(filepath.Clean("/"+dst), "/proc/")
}

// procEntry returns the /proc/PID, /proc/self or /proc/thread-self that
// the container path dst lies in, or "". Followed while the container is
// set up, such a path leads to one of husk's own processes.
func procEntry(dst string) string {
	parts := strings.SplitN(strings.TrimPrefix(filepath.Clean(dst), "/"), "/", 3)
	if len(parts) < 2 || parts[0] != "proc" {
		return ""
	}
	e := parts[1]
	if e == "self" || e == "thread-self" || strings.Trim(e, "0123456789") == "" {
		return "/proc/" + e
	}
	return ""
}

// makeSource creates m.Src as m.Make says, leaving an existing one alone
// (a work directory's tmp of an earlier run).
func makeSource(m hostMount) error {
	if _, err := os.Lstat(m.Src); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(m.Src), 0o755); err != nil {
		return err
	}
	if m.Content != nil {
		return os.WriteFile(m.Src, m.Content, m.Make.Perm())
	}
	if err := os.Mkdir(m.Src, m.Make.Perm()); err != nil {
		return err
	}
	// Mkdir applies the umask and drops the sticky bit.
	return os.Chmod(m.Src, m.Make)
}

// defaultHosts is Apptainer's /etc/hosts for --contain with a network
// namespace.
var defaultHosts = []byte(`127.0.0.1   localhost
::1         localhost ip6-localhost ip6-loopback
ff02::1     ip6-allnodes
ff02::2     ip6-allrouters
`)

// resolvConf is the /etc/resolv.conf written for --dns.
func resolvConf(servers []string) []byte {
	var b []byte
	for _, s := range servers {
		b = fmt.Appendf(b, "nameserver %s\n", s)
	}
	return b
}

// madeBind is a bind mount stage 1 made in the container.
type madeBind struct {
	dst, src string
	session  bool
}

// mountpoint creates the missing dst. Below one of stage 1's own binds,
// the entry belongs in that bind's source, not in the union it hides:
// it is created there when the source is in the session tmpfs, and
// refused when it is a host directory, which husk does not modify.
func (st *stage1State) mountpoint(dst string, dir bool) error {
	for i := len(st.binds) - 1; i >= 0; i-- {
		b := st.binds[i]
		rel, ok := strings.CutPrefix(dst, strings.TrimSuffix(b.dst, "/")+"/")
		if !ok {
			continue
		}
		if !b.session {
			return fmt.Errorf("%s is in host directory %s bound at %s", dst, b.src, b.dst)
		}
		p := filepath.Join(b.src, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if dir {
			return os.Mkdir(p, 0o755)
		}
		return os.WriteFile(p, nil, 0o644)
	}
	return st.mounted.Mountpoint(dst, dir)
}

// unwrapPath drops the *os.PathError around err: the caller names the
// path already.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// stageDev builds the minimal /dev of --contain in dir (COMPAT 7.2):
// device files bound from the host (a user namespace cannot mknod),
// the usual symbolic links, a private shm and a new devpts instance.
func stageDev(dir string, devpts bool) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	for _, n := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		f, err := os.OpenFile(filepath.Join(dir, n), os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		f.Close()
		if err := mount("/dev/"+n, filepath.Join(dir, n), "", unix.MS_BIND, ""); err != nil {
			return err
		}
	}
	links := [][2]string{{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
		{"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"}}
	for _, l := range links {
		if err := os.Symlink(l[0], filepath.Join(dir, l[1])); err != nil {
			return err
		}
	}
	for _, d := range []string{"shm", "pts", "mqueue"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := mount("tmpfs", filepath.Join(dir, "shm"), "tmpfs",
		unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
		return err
	}
	if !devpts {
		return nil
	}
	// No gid=5 (tty): that group is not mapped in the namespace.
	return mount("devpts", filepath.Join(dir, "pts"), "devpts",
		unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620")
}
