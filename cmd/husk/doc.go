// Command husk runs Apptainer/Singularity SIF images without root, setuid
// helpers, FUSE helper binaries or kernel overlayfs.
//
//	husk exec IMAGE CMD [ARGS...]     run a command
//	husk run IMAGE [ARGS...]          run /.singularity.d/runscript (else /bin/sh)
//	husk shell IMAGE                  /bin/bash --norc (else /bin/sh), prompt "Apptainer> "
//	husk overlay create [--size MiB] [--sparse] [--create-dir DIR]... [--fakeroot] IMAGE
//	husk build OUT.sif ROOTFS_DIR
//	husk version
//
// Flags follow Apptainer's names and environment variables (COMPAT §3.2,
// §6, §7): --overlay/-o PATH[:ro] (repeatable, comma lists,
// APPTAINER_OVERLAY), --writable/-w, --writable-tmpfs, --bind/-B,
// --fakeroot/-f, --home, --no-home, --pwd, --cleanenv/-e, --env K=V,
// --pid/-p, --ipc/-i, --contain/-c, --containall/-C, --no-mount,
// --hostname, and the global --debug. HUSK_* variables are read before
// APPTAINER_* ones.
//
// # Parsing
//
// Kong parses husk's flags wherever they appear before the container
// command, including between IMAGE and the command, where Apptainer would
// stop: `husk exec img.sif -w ls` means --writable. A command that starts
// with "-" goes after "--", which husk removes.
//
// # Output and exit status
//
// husk is quiet unless something is wrong: WARNING lines for degraded
// behaviour, and on failure one line "FATAL:   <what and where>" with exit
// status 255. Otherwise the exit status is the container command's; when
// signal N killed it, husk re-raises N on itself (terminating signals
// without a core dump) or exits 128+N. --debug adds DEBUG lines (layer stack,
// namespace steps, mounts).
//
// # Environment
//
// The host environment is forwarded except HOME, PATH, LD_LIBRARY_PATH,
// PS1, PROMPT_COMMAND and APPTAINER_*, SINGULARITY_* and HUSK_* variables;
// HOME is the container home and PATH Apptainer's default. APPTAINER_NAME,
// APPTAINER_CONTAINER, APPTAINER_COMMAND and APPTAINER_ENVIRONMENT (and the
// SINGULARITY_ names) are set. The payload runs through /bin/sh, which
// sources /.singularity.d/env/*.sh in order and then applies
// SINGULARITYENV_X, APPTAINERENV_X, HUSKENV_X and --env X=v (in rising
// precedence) before the action.
//
// Known gaps: host variables are visible while the image's env scripts run
// (Apptainer clears them and restores them afterwards), APPTAINERENV_
// values are not shell-evaluated (as with Apptainer's --no-eval), images
// without /bin/sh cannot run, --env-file, --no-env, --mount, --security,
// --userns and instances are not implemented. The sandbox reports a
// death by signal N as status 128+N, so a command that exits 130 on its
// own also makes husk re-raise SIGINT.
package main
