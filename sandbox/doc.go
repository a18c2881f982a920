// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

// Package sandbox starts a container without privileges: it runs a
// command in new user and mount namespaces, on a root file system built
// by a [Mounter] (husk's FUSE union), with Apptainer's default mounts.
//
// # Process model
//
// Go cannot unshare(CLONE_NEWUSER) in a multithreaded process, so each
// namespace step re-executes the binary (/proc/self/exe) with clone flags.
// [Main], called first thing in main, turns such a re-execution into its
// stage; the stage is marked by the environment variable _HUSK_STAGE.
//
//   - Stage 0 is [Run], in the husk process, as the user. It creates a
//     session directory in $TMPDIR, starts stage 1 with CLONE_NEWUSER and
//     CLONE_NEWNS mapping root to the user (one id, setgroups denied),
//     sends it the [Spec] on a pipe, forwards signals and returns stage
//     1's status. With --fakeroot and a range of at least 65536 ids for
//     the user in /etc/subuid and /etc/subgid, ids 1..N map to the range
//     as in Apptainer (newuidmap and newgidmap write the maps, and stage 1
//     re-executes itself to gain its capabilities; see fakeroot_linux.go);
//     without a range or the helpers, husk warns once that files cannot be
//     chowned to other ids, and maps root only. The image files are passed
//     as fds 3.. (their OFD locks live as long as stage 1 holds them).
//     The session directory is flock-ed and the lock inherited by stages
//     1 and 3, so that later runs can remove the directories of husks
//     killed with SIGKILL, and only those (stale_linux.go).
//   - Stage 1 is root of the new user namespace and the FUSE server. It
//     makes every mount private, mounts a 64 MiB tmpfs on the session
//     directory, has the Mounter mount the union at <session>/final,
//     binds the default host paths and the user binds into it (detaching
//     its own session mounts from a bind of /tmp or any directory holding
//     them), writes the passwd and group files into the session and
//     binds them over the container's. Outside instances and without --pid it starts stage 2
//     before any of that, so stage 2's exec and Go start-up overlap the
//     mounts; stage 2 waits for the plan on a pipe. Then stage 1 waits for
//     stage 2, unmounts everything, and the Mounter unmounts, syncs and
//     closes the union.
//   - Stage 2 runs in its own mount namespace (and PID, UTS, IPC
//     namespaces for --pid, --hostname, --ipc), still as stage 1's root.
//     It mounts a new /proc with --pid (and a new mqueue with --ipc), sets
//     the host name, pivots into the union and starts the payload as a
//     child subreaper (or PID 1). When the payload exits it terminates
//     what the payload left behind (SIGTERM, 2 s, SIGKILL), so nothing
//     writes to the union while stage 1 syncs it, and exits with the
//     payload's status.
//   - The payload runs as the user's own uid and gid in a nested user
//     namespace that maps them to stage 1's root, without capabilities
//     and with no_new_privs; with --fakeroot it runs as stage 1's root.
//
// Stages do not print: their log records and their fatal error travel to
// stage 0 on a pipe and come out of the *slog.Logger given to Run (debug
// traces of each step, with the ids after each namespace step).
//
// # fusermount3 mode
//
// Where the kernel refuses stage 1's FUSE mount with EPERM although
// /dev/fuse opens (a kernel before 4.18, an LSM or seccomp policy), Run
// tries again with the union mounted through the setuid fusermount3 of
// fuse3, as go-fuse does outside namespaces (one debug line, as quiet
// as Apptainer); [FusermountEnv] (HUSK_FUSERMOUNT=1) selects that mode
// from the start, HUSK_FUSERMOUNT=0 turns the fallback off. fusermount3
// mounts in its caller's mount namespace, and a copy of that mount in
// stage 1's namespace would be locked there, so the union is served from
// outside the container:
//
//   - Stage 3, started by stage 0 in the host's namespaces as the user,
//     gets the image files and has the Mounter mount the union (with
//     [Spec.Fusermount] set) at <session>.root, a 0700 directory next to
//     the session directory; it then creates the mount points stage 1
//     asks for ([Mounted.Mountpoint]) over a unix socket.
//   - Stage 1 binds that directory as the container root instead of
//     mounting FUSE; the binds, stage 2 and the payload are as usual.
//   - When stage 1 has exited, stage 3 unmounts (fusermount3 -u), syncs
//     and closes the layers, removes the directory and exits; stage 0
//     waits for it (at most 10 s: processes that outlived a killed stage
//     1 keep the union in use, and stage 3 serves them until they exit)
//     and reports its errors. Stage 3 has no parent-death signal and
//     ignores the forwarded signals, so a killed husk still leaves a
//     synced overlay and no mount; if stage 3 itself dies, stage 0
//     detaches its dead mount with fusermount3 -u -z.
//
// Without allow_other, which fusermount3 grants only to root or with
// user_allow_other in /etc/fuse.conf, the kernel lets only the mounting
// user's own uid and gid into the mount: that is what the payload runs
// as, and --fakeroot's root, but ids of an /etc/subuid range would get
// EACCES, so in this mode --fakeroot maps root only (with a warning)
// unless husk runs as root. --writable-tmpfs keeps its upper in /dev/shm
// (no size cap: stage 3 cannot mount a tmpfs). Instances work the same
// way, their stage 3 living as long as the instance.
//
// # Instances
//
// [RunInstance] runs a container that stays up after its payload exits
// (until stage 2 gets SIGINT, SIGTERM, SIGHUP or SIGQUIT). Its stage 1
// also accepts [Join] requests on a unix socket the caller listens on:
// the client passes its stdin, stdout and stderr with SCM_RIGHTS and the
// argv, environment and working directory as JSON; stage 1 starts a new
// stage 2 in a copy of its mount namespace, so the joined command runs on
// the same union served by the same FUSE server (the images are never
// opened twice), relays the client's signals and returns the status. Go
// cannot setns(2) into a user namespace from a multithreaded process,
// hence this design. Joined commands get new PID, IPC and UTS namespaces
// when the instance has them, not the instance's own. When the instance
// stops, joined commands get SIGTERM, then SIGKILL after 5 s, before the
// union is synced.
//
// # Status and errors
//
// Run returns the payload's exit code, or 128+N when signal N killed it.
// An error means the container could not be set up, the payload could not
// be started (`exec <x> failed: ...`), or the union could not be
// unmounted cleanly afterwards; the status is then 255 and the error is
// one line meant for the user, naming the fix where the host is at fault
// (user namespaces disabled by sysctl or AppArmor, /dev/fuse not
// accessible, a kernel too old for FUSE in a user namespace).
//
// SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are forwarded to
// the payload. When a terminal's foreground process group is husk's, the
// terminal already delivers SIGINT, SIGQUIT and SIGHUP to the payload, and
// these are not forwarded again (COMPAT 7.7); it also stops and resumes
// the whole group (^Z, fg). Without one, SIGTSTP and SIGCONT are forwarded
// too, and SIGTSTP stops husk after the payload, as Apptainer's master.
// A signal that reaches a stage before it catches signals (a ^C in the
// first milliseconds) ends the run as the payload's death by it.
//
// # Mounts (COMPAT 7.2)
//
// In order: /proc (rbind, or a new procfs with --pid), /sys (rbind), /dev
// (rbind, or a minimal staged /dev with --contain), /etc/localtime,
// /etc/hosts, /etc/resolv.conf, /tmp and /var/tmp (session directories
// with --contain), the home directory (at /root with --fakeroot), the
// working directory when the container does not have it, the user binds,
// then /etc/passwd, /etc/group and /etc/hostname. Every bind is nosuid and
// nodev (/dev only nosuid); read-only binds are read-only recursively.
// Destinations are resolved inside the container, symbolic links
// included, and missing ones are created with [Mounted.Mountpoint]; when
// that fails the mount is skipped with a warning (fatal for home).
//
// # Usage
//
//	func main() {
//		sandbox.Main(glue.Mounter{}) // never returns in a stage process
//		...
//		status, err := sandbox.Run(ctx, spec, imageFiles, logger)
//		if err != nil {
//			fmt.Fprintf(os.Stderr, "FATAL:   %v\n", err)
//		}
//		os.Exit(status)
//	}
//
// # Spec fields beyond the basics
//
// Spec.Scratch (--scratch: fresh directories in the session tmpfs, or
// under Spec.Workdir), Spec.Workdir (--workdir: where --contain takes
// /tmp, /var/tmp and home from), Spec.DNS (--dns: a resolv.conf written
// into the session), Spec.Net (--network none: a new network namespace
// with loopback up) and Spec.Caps (--add-caps, --drop-caps, --no-privs:
// ambient capabilities for a non-root payload, the bounding set under
// --fakeroot). [RunShared] serves --sharens: later commands of the same
// parent join the first one's container.
//
// Spec.Seccomp (--security seccomp:FILE, read with [ReadSeccompProfile]):
// an OCI/Docker seccomp profile compiled to BPF (go-seccomp-bpf) in
// stage 2 and loaded by a shim (this binary re-executed) between stage
// 2's fork and the payload's exec, so that neither stage 2 nor its clone
// of the payload is confined; it stacks with the mknod filter below. A
// dynamically linked husk starts the shim through the host's ELF
// interpreter and libraries, opened before the pivot (hostLoader), so it
// runs in images without glibc or with an older one. Spec.FuseMounts (--fusemount, see
// [ParseFuseMount]): stage 1 mounts /dev/fuse at each mount point after
// the binds and starts the FUSE program with /dev/fd/3 in its place,
// from the host side or chrooted into the container; at exit it stops
// them (SIGTERM) and unmounts their mounts before the union's Unmount.
//
// # Device nodes
//
// The kernel makes char and block devices only for CAP_MKNOD in the
// host's user namespace. With --fakeroot, stage 1 installs a seccomp
// filter (user notification) on the thread that forks each stage 2: the
// container's mknod and mknodat of devices (not 0/0 whiteouts) wait for
// stage 1, which resolves the parent directory as the caller would and,
// when the caller has CAP_MKNOD in the container's user namespace and
// may write there and the parent is on the union, makes the node with
// [DeviceMaker] (the caller's fsuid, fsgid and umask). Every other such
// call goes back to the kernel, which answers it as without the filter
// (EPERM in the end). Needs Linux 5.0 (5.5 for the kernel's own errors);
// without, mknod fails as before. See mknod_linux.go.
//
// # Not supported
//
//   - In fusermount3 mode: --fakeroot with an /etc/subuid range (root
//     only), the size cap of --writable-tmpfs, device nodes (they are
//     made in stage 1's union, which is stage 3's there).
//   - Device nodes without --fakeroot, outside the union, in a nested user
//     namespace, or in a directory upper (its host refuses them); POSIX
//     ACLs are not consulted for them (see "Device nodes").
//   - Apptainer's setuid mode, networks other than none, cgroups and
//     --boot; seccomp profiles with SCMP_ACT_NOTIFY, or rules for other
//     architectures than the native one.
//   - --fusemount needs the kernel to allow FUSE mounts in husk's user
//     namespace; it has no fusermount3 fallback.
//   - A symbolic /etc/resolv.conf is bound as the file it points to, not
//     reproduced; /dev/console is not staged with --contain.
//   - File descriptors other than stdin, stdout and stderr that husk
//     inherited are not passed to the payload.
//   - With --no-mount proc, /proc is mounted while the payload starts (Go
//     writes its uid_map there) and unmounted right after.
//
// # Known pitfalls
//
//   - Main must run before anything else in main: a stage process reads
//     its fds 3.. at once. The stages keep husk's environment; the payload
//     gets Spec.Env only.
//   - Stage 1 is the FUSE server and must not block on the union itself;
//     Mounted.Mountpoint exists so that mount points are created in the
//     layers, not through the mount.
//   - Tests re-execute the test binary as the stages (see main_test.go),
//     as an unprivileged uid, so it must be executable by that uid.
package sandbox
