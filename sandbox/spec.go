// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Bind is one user bind mount (`--bind src[:dst[:ro|rw]]`).
type Bind struct {
	// Src is the host path, relative to the caller's working directory or
	// absolute. It must exist; symbolic links are followed.
	Src string
	// Dst is the absolute path in the container. Symbolic links in the
	// container are resolved inside the container root.
	Dst string
	// ReadOnly makes the mount (and every mount below it) read-only.
	ReadOnly bool
}

// Spec describes one container run. The CLI fills it; [Run] sends it to the
// namespace stages as JSON, so every field must survive encoding/json.
type Spec struct {
	// Args is the payload's argv. Args[0] is looked up on the PATH of Env
	// inside the container when it has no slash.
	Args RawStrings
	// Programs are the programs the payload starts first, in order (a
	// name without a slash is looked up on the default PATH). The
	// Mounter may read them ahead while the container is set up; a hint.
	Programs []string
	// Env is the payload's complete environment (KEY=value), HOME
	// included: see [Spec.ContainerHome].
	Env RawStrings
	// Cwd is the payload's working directory in the container. Empty means
	// the host working directory (the container home with Contain).
	Cwd string
	// CwdExplicit says Cwd came from --pwd: failing to enter it is fatal
	// instead of falling back to the home directory, then /.
	CwdExplicit bool
	// Umask is applied to the payload.
	Umask int

	// UID and GID are the host user's ids (os.Getuid, os.Getgid).
	UID, GID uint32
	// Username and HomeDir are the host passwd entry of UID. Run looks them
	// up in /etc/passwd when empty; users known only through NSS (LDAP,
	// sssd) must be filled in by the caller (os/user).
	Username, HomeDir string

	// Fakeroot runs the payload as uid 0 of the user namespace instead of
	// the user's own uid; the home directory is bound at /root.
	Fakeroot bool
	// Writable says the union is writable. With Fakeroot this leaves the
	// container's /etc/passwd and /etc/group alone so root can edit them
	// (COMPAT 7.3).
	Writable bool

	// NoHome skips the home directory mount (--no-home).
	NoHome bool
	// Contain uses private session directories for home, /tmp and
	// /var/tmp and does not bind the working directory (--contain).
	Contain bool
	// Home is --home "src[:dst]": the host directory to bind as home and
	// where. Empty means HomeDir at the same path (/root with Fakeroot).
	Home string
	// Binds are the user binds, mounted in order after the default mounts.
	Binds []Bind
	// Scratch lists container directories that each get a fresh, private,
	// writable directory (--scratch): <Workdir>/scratch/<dir> when
	// Workdir is set, else a directory in the session tmpfs.
	Scratch []string
	// Workdir is an absolute host directory (--workdir): with Contain,
	// /tmp, /var/tmp and the home directory come from its tmp, var_tmp and
	// home subdirectories, which are created as needed; scratch
	// directories come from its scratch subdirectory.
	Workdir string
	// DNS, when set, replaces the bound host /etc/resolv.conf with one
	// listing these name servers (--dns), one "nameserver" line each.
	DNS []string
	// NoMount lists default mounts to skip (--no-mount): the tags proc,
	// sys, dev, devpts, home, tmp, cwd, bind-paths, files, or a default
	// destination such as /etc/localtime, /etc/resolv.conf or /etc/passwd.
	// Run warns about other names and ignores them.
	NoMount []string

	// PID runs the container in a new PID namespace with a new /proc.
	PID bool
	// IPC runs the container in a new IPC namespace.
	IPC bool
	// UTS runs the container in a new UTS namespace (implied by Hostname).
	UTS bool
	// Hostname, when set, runs the container in a new UTS namespace with
	// this host name and binds an /etc/hostname holding it.
	Hostname string

	// Net runs the container in a new network namespace with only a
	// loopback interface, brought up (--network none).
	Net bool

	// Caps says which capabilities the payload keeps: see [Caps].
	Caps Caps
	// Seccomp, when set, is applied to the payload (--security seccomp:).
	Seccomp *SeccompProfile
	// FuseMounts are FUSE programs mounted in the container (--fusemount),
	// in order, after the binds.
	FuseMounts []FuseMount

	// Union is opaque to sandbox: what the [Mounter] needs to build the
	// union (layer descriptions, options).
	Union json.RawMessage
	// Files is the number of image files passed to Run; the Mounter gets
	// them back in the same order (they are fds 3.. in the stages).
	Files int

	// Instance keeps the container up after the payload (the instance's
	// startscript) exits, until stage 2 gets SIGINT, SIGTERM, SIGHUP or
	// SIGQUIT: see [RunInstance].
	Instance bool

	// Debug makes the stages send debug traces to Run's logger. Run sets
	// it when its logger is enabled for slog.LevelDebug.
	Debug bool

	// Fusermount mounts the union through the setuid fusermount3, from a
	// server process in the host's namespaces, instead of with mount(2)
	// in stage 1's user namespace (see [FusermountEnv]). Run sets it when
	// it falls back to that mode. The Mounter then runs in that server:
	// it must let go-fuse call fusermount3 (no direct mount), must not ask
	// for allow_other unless it runs as root, and sees the container's
	// processes with host ids (the user is UID, not 0).
	Fusermount bool
}

// Mounter builds the container's root filesystem. It is implemented by
// husk's glue code and registered with [Main]; it runs in stage 1, as root
// of the new user namespace, inside the new mount namespace.
type Mounter interface {
	// Mount mounts the union at target, an empty directory. files are the
	// image files given to Run, in order. The returned Mounted must keep
	// serving until its Unmount is called.
	Mount(spec *Spec, files []*os.File, target string) (Mounted, error)
}

// Mounted is a mounted union.
type Mounted interface {
	// Mountpoint creates path (absolute, in the container, symbolic links
	// already resolved) as an empty directory (dir) or an empty regular
	// file, with missing parents as directories, without going through the
	// mounted union. Afterwards the path must be visible through the union
	// (invalidate any cached negative entry). It returns an error when the
	// union cannot hold new entries; the mount is then skipped.
	Mountpoint(path string, dir bool) error
	// Unmount is called once, after the payload and everything it started
	// have exited and sandbox has unmounted what it stacked on the union.
	// It unmounts the union (lazily if still busy), waits for the server
	// to stop, syncs and closes the layers. Data safety lives here.
	Unmount() error
}

// DeviceMaker is implemented by a Mounted that can make device nodes
// itself. With --fakeroot, stage 1 intercepts mknod(2) of char and block
// devices in the container (the kernel refuses them without CAP_MKNOD in
// the host's user namespace) and calls MknodAt when the parent directory
// is on the union; see mknod_linux.go.
type DeviceMaker interface {
	// MknodAt makes name in the union directory whose inode number (as
	// stat reports it) is parentIno. mode includes the file type and is
	// already masked by the caller's umask; rdev has the kernel's
	// new_encode_dev layout (as mknod(2) takes it); uid and gid are the
	// caller's fsuid and fsgid as stage 1 sees them (as in FUSE request
	// headers). Errors should be syscall.Errno values: they are the
	// caller's mknod result.
	MknodAt(parentIno uint64, name string, mode, rdev, uid, gid uint32) error
}

// plan is what a stage receives on its spec pipe: the Spec plus what
// earlier stages decided or found out about the host.
type plan struct {
	Spec *Spec
	// Session is the host directory stage 1 mounts its tmpfs on.
	Session string
	// sessionLock is Session open and flock-ed by stage 0, for stages 1
	// and 3 to inherit (stale_linux.go); stage 0 only.
	sessionLock *os.File
	// serverPid is stage 3's pid in fusermount3 mode (stage 0 only): a
	// child of stage 0 that must outlive stage 1 (orphans_linux.go).
	serverPid int
	// HostCwd is the working directory of the husk process on the host.
	HostCwd string
	// TTYSignals is true when a terminal's foreground process group is
	// husk's: the terminal then signals every stage and the payload
	// itself, and SIGINT, SIGQUIT and SIGHUP must not be forwarded again.
	TTYSignals bool
	// User is the host passwd entry of Spec.UID (gecos and shell
	// included), Groups the host groups of the user (primary first).
	User   passwdEntry
	Groups []groupEntry
	// Inherited are the descriptors husk's caller left open above stderr
	// (inherit_linux.go), which the payload gets at these numbers.
	Inherited []int
	// inherit holds them in this stage: stage 1's are its last files,
	// stage 2's all of its files.
	inherit []*os.File
	// Limits are the resource limits of the husk that joined an
	// instance, which its command takes on (rlimit_linux.go).
	Limits []Rlimit

	// Set by stage 1 for stage 2.

	// Final is the root of the container in stage 1's mount namespace.
	Final string
	// Home is the home directory inside the container.
	Home string

	// Set by stage 0 in fusermount3 mode (hostserve_linux.go).

	// HostUnion is the host directory where stage 3 mounted the union;
	// stage 1 binds it as the container root instead of mounting one.
	HostUnion string
	// UnionFD is stage 1's fd of its socket to stage 3.
	UnionFD int
}

// validate checks what the stages rely on, so a bad Spec fails in stage 0
// with a plain message rather than halfway through the mount sequence.
func (s *Spec) validate() error {
	if len(s.Args) == 0 || s.Args[0] == "" {
		return errors.New("sandbox: no command to run")
	}
	if s.Cwd != "" && !filepath.IsAbs(s.Cwd) {
		return fmt.Errorf("sandbox: working directory %q is not absolute", s.Cwd)
	}
	for _, b := range s.Binds {
		if b.Src == "" || b.Dst == "" {
			return fmt.Errorf("sandbox: bind %q:%q: empty path", b.Src, b.Dst)
		}
		if !filepath.IsAbs(b.Dst) {
			return fmt.Errorf("sandbox: bind destination %q is not absolute", b.Dst)
		}
		if filepath.Clean(b.Dst) == "/" {
			return fmt.Errorf("sandbox: cannot bind %s over the container's root directory",
				b.Src)
		}
	}
	for _, d := range s.Scratch {
		if !filepath.IsAbs(d) || filepath.Clean(d) == "/" {
			return fmt.Errorf("sandbox: scratch directory %q is not an absolute path "+
				"below /", d)
		}
	}
	// HOST_NAME_MAX; the kernel's EINVAL would come from stage 2, unnamed.
	if len(s.Hostname) > 64 {
		return fmt.Errorf("sandbox: --hostname %.20q...: longer than 64 bytes",
			s.Hostname)
	}
	if s.Workdir != "" && !filepath.IsAbs(s.Workdir) {
		return fmt.Errorf("sandbox: work directory %q is not absolute", s.Workdir)
	}
	if err := s.Caps.validate(); err != nil {
		return err
	}
	if _, dst := s.homeSrcDst(); !filepath.IsAbs(dst) && !s.NoHome {
		return fmt.Errorf("sandbox: home directory %q is not absolute", dst)
	} else if s.Home != "" && filepath.Clean(dst) == "/" {
		return errors.New("sandbox: --home cannot be bound over the container's root " +
			"directory")
	}
	if s.Files < 0 {
		return fmt.Errorf("sandbox: negative file count %d", s.Files)
	}
	if s.Seccomp != nil {
		// A profile not read by ReadSeccompProfile is checked here, before
		// any stage starts, rather than failing in the payload's shim.
		if err := s.Seccomp.Check(); err != nil {
			return err
		}
	}
	return nil
}

// ContainerHome is the home directory inside the container: the
// destination of --home, else HomeDir, or /root with Fakeroot. The CLI
// sets HOME in Env to it.
func (s *Spec) ContainerHome() string {
	_, dst := s.homeSrcDst()
	return dst
}

// homeSrcDst returns the host directory bound as home and its path in the
// container: --home src[:dst], else the passwd home, at /root under
// fakeroot (COMPAT 7.2).
func (s *Spec) homeSrcDst() (src, dst string) {
	if s.Home != "" {
		src, dst, ok := strings.Cut(s.Home, ":")
		if !ok {
			dst = src
		}
		return src, dst
	}
	if s.Fakeroot {
		return s.HomeDir, "/root"
	}
	return s.HomeDir, s.HomeDir
}

// noMountNames are the tags NoMount accepts, besides paths.
var noMountNames = []string{"proc", "sys", "dev", "devpts", "home", "tmp", "cwd",
	"bind-paths", "files", "hostfs"}

// unknownNoMount returns the NoMount entries that name nothing.
func (s *Spec) unknownNoMount() []string {
	var bad []string
	for _, n := range s.NoMount {
		if !filepath.IsAbs(n) && !slices.Contains(noMountNames, n) {
			bad = append(bad, n)
		}
	}
	return bad
}

// skips reports whether the default mount with this tag or destination
// was disabled with NoMount.
func (s *Spec) skips(tag, dst string) bool {
	for _, n := range s.NoMount {
		if n == tag || (dst != "" && filepath.Clean(n) == dst) {
			return true
		}
	}
	return false
}
