// Command husk runs Apptainer/Singularity SIF images without root, setuid
// helpers, FUSE helper binaries or kernel overlayfs.
//
//	husk exec IMAGE CMD [ARGS...]     run a command
//	husk run IMAGE [ARGS...]          run /.singularity.d/runscript (else /bin/sh)
//	husk shell IMAGE                  /bin/bash --norc (else /bin/sh), prompt "Apptainer> "
//	husk test IMAGE                   run /.singularity.d/test (exit 0 if none)
//	husk instance start|run|list|stop|stats   background instances; instance://NAME joins one
//	husk inspect [--json] IMAGE       labels, runscript, environment ... from /.singularity.d
//	husk sif list|info|dump|header|new|add|del|setprim   Apptainer's siftool
//	husk overlay create [--size MiB] [--sparse] [--create-dir DIR]... [--fakeroot] IMAGE
//	husk overlay info [--json] IMAGE   size, free space, journal state
//	husk overlay resize IMAGE SIZE    grow an overlay (bare, or last in a SIF)
//	husk build OUT.sif ROOTFS_DIR
//	husk verify|sign [--keyring FILE] IMAGE    PGP signatures of a SIF (package sifsig)
//	husk completion bash|zsh|fish
//	husk version
//
// Flags follow Apptainer's names and environment variables (COMPAT §3.2,
// §6, §7): --overlay/-o PATH[:ro] (repeatable, comma lists,
// APPTAINER_OVERLAY), --writable/-w, --writable-tmpfs, --bind/-B,
// --fakeroot/-f, --home, --no-home, --pwd, --cleanenv/-e, --env K=V,
// --env-file, --no-env, --no-eval, --no-umask, --pid/-p, --ipc/-i,
// --contain/-c, --containall/-C, --no-mount, --hostname, --mount,
// --scratch/-S, --workdir/-W, --dns, --app, --sharens, --add-caps,
// --drop-caps, --no-privs, --keep-privs, --security (seccomp:FILE is
// applied), --net/-n, --network, --nv, --rocm, --fusemount, shell's --shell, and the global --debug. Every flag can also be set with HUSK_<FLAG>
// (--no-home: HUSK_NO_HOME); HUSK_* variables are read before APPTAINER_*
// and SINGULARITY_* ones. Instance records live under $HUSK_CONFIGDIR (default
// ~/.husk) in Apptainer's layout: instances/app/<host>/<user>/<name>/.
//
// # Parsing
//
// husk's flags end at IMAGE, as Apptainer's do (cobra without interspersed
// flags): endFlagsAtImage inserts "--" after IMAGE (after NAME for instance
// start and run) before kong parses, and the actions strip it again. A "--"
// the user wrote right after IMAGE is kept out of the command the same way.
//
// # Output and exit status
//
// husk is quiet unless something is wrong: WARNING lines for degraded
// behaviour, and on failure one line "FATAL:   <what and where>" with exit
// status 255. Otherwise the exit status is the container command's; when
// signal N killed it, husk re-raises N on itself (terminating signals
// without a core dump) or exits 128+N. --debug adds DEBUG lines (layer stack,
// namespace steps, mounts). Instance start and stop print Apptainer's INFO
// lines.
//
// # Environment
//
// As Apptainer (COMPAT §7.4-7.5): the host environment is forwarded except
// HOME, PATH, LD_LIBRARY_PATH and APPTAINER_*, SINGULARITY_* and HUSK_*
// variables (--cleanenv: only TERM and the proxies, LANG=C; --no-env drops
// more). The payload starts through a generated /bin/sh script (script.go)
// that sees only HOME and the APPTAINER_/SINGULARITY_ engine variables while
// it sources /.singularity.d/env/*.sh, exports SINGULARITYENV_X <
// APPTAINERENV_X < HUSKENV_X < --env-file < --env values right after
// 99-base.sh (shell-evaluated unless --no-eval), applies the PATH
// variables, restores the host variables the image left unset, unsets the
// variables left empty, sets PS1 to "Apptainer> " when empty, then runs
// the action. The umask is the caller's (0022 with --no-umask).
//
// # Differences from Apptainer
//
//   - --env-file is evaluated by husk on the host (envfile.go): KEY=VALUE,
//     export, quotes and $VAR/${VAR}/${VAR:-x} expansion; anything else,
//     command substitution included, is an error. Its values are not
//     evaluated a second time in the container.
//   - Images without /bin/sh run exec commands directly, without their env
//     scripts; run, shell and test need /bin/sh.
//   - Instances: joined commands share the instance's mount namespace,
//     union and overlay, but get a PID (and IPC, UTS) namespace of their
//     own; the record's "config" is empty and "ip" is always empty.
//     `instance stats` reads /proc, not a cgroup. --boot is refused.
//   - Capabilities (security.go, sandbox/caps.go) live in the container's
//     user namespace; --security profiles warn and are not applied;
//     networks other than --network none are refused (they need
//     Apptainer's setuid network setup).
//   - `sif add` and `sif del` as the sif library does them; `verify` and
//     `sign` use keyring files only (no key server, x509 or sigstore).
//   - inspect reads only the primary squashfs (or a sandbox directory), not
//     overlays, and does not read inspect-metadata.json.
//   - `overlay create` refuses an existing path the user cannot write
//     (exit 255, file untouched); Apptainer treats it as absent and
//     replaces it with a new overlay, destroying e.g. a chmod 444 SIF.
//   - `--overlay IMG:x` accepts only x = ro or rw; Apptainer ignores any
//     other suffix and opens the image writable (":RO" would write). An
//     empty --overlay value is an error; an empty HUSK_OVERLAY or
//     APPTAINER_OVERLAY variable means no overlay.
//   - `build` refuses an existing OUT.sif unless --force/-F is given
//     (Apptainer asks, and refuses when it cannot ask).
//   - `--bind` over /proc, /dev or /sys themselves, or over /, is refused.
//   - If husk's own supervisor (stage 1, the FUSE server) dies of a
//     signal, husk exits 255 with a FATAL line, not 128+N.
//   - Not implemented: --nvccli, OCI images and remote URIs. --userns
//     and --no-init are accepted and change nothing.
package main
