package main

import (
	"fmt"
	"strings"
)

// The payload runs through a /bin/sh script that husk generates for each
// run, in the steps of Apptainer's built-in action script (COMPAT §7.4):
//
//  1. /bin/sh starts with only HOME and the engine's APPTAINER_ variables:
//     the host environment is not visible while the image's scripts run;
//  2. every /.singularity.d/env/*.sh is sourced in lexical order (PATH
//     set to the default before 90-environment.sh when unset, missing
//     default entries added after 10-docker*.sh, 99-runtimevars.sh
//     replaced by the built-in step 4); images without that directory
//     source /environment;
//  3. right after 99-base.sh (or after the last script) the APPTAINERENV_
//     and --env values are exported, double-quoted so that the container
//     shell expands them (single-quoted with --no-eval);
//  4. SING_USER_DEFINED_{PREPEND_PATH,APPEND_PATH,PATH} apply to PATH;
//  5. host variables the image did not set are restored, and variables
//     that ended up empty are unset;
//  6. PS1 defaults to "Apptainer> " and is re-asserted by PROMPT_COMMAND;
//  7. the action runs.
//
// Apptainer interprets all this in-process (mvdan sh) and execs the final
// command itself; husk needs a /bin/sh in the image.
//
// TODO: an image without /bin/sh cannot run; Apptainer's embedded shell
// does not need one.

// scriptPathKeys are the injected names that act on PATH in step 4
// instead of being exported.
var scriptPathKeys = map[string]string{
	"PATH":         "SING_USER_DEFINED_PATH",
	"PREPEND_PATH": "SING_USER_DEFINED_PREPEND_PATH",
	"APPEND_PATH":  "SING_USER_DEFINED_APPEND_PATH",
}

// actionBodies are the per-command tails of the script; "$@" holds the
// user's arguments.
var actionBodies = map[string]string{
	// No /dev/null here or below: with --no-mount dev the image's own
	// node is unusable (the union is nodev), and a failed redirect must
	// not read as a missing executable.
	// A path that cannot be executed fails as in Apptainer, not with the
	// shell's message (which names the script and its line) and 126;
	// dash's exec cannot be caught once it fails, so this checks first.
	"exec": `if ! __husk_c=$(command -v "$1" 2>&1); then
	echo "FATAL:   \"$1\": executable file not found in \$PATH" >&2
	exit 255
fi
case $__husk_c in
*/*) if [ -d "$__husk_c" ] || [ ! -x "$__husk_c" ]; then
	echo "FATAL:   exec $__husk_c failed: permission denied" >&2
	exit 255
fi ;;
esac
exec "$@"
`,
	"run": `if [ -x /.singularity.d/runscript ]; then exec /.singularity.d/runscript "$@"; fi
if [ -x /apptainer ]; then exec /apptainer "$@"; fi
if [ -x /singularity ]; then exec /singularity "$@"; fi
echo 'INFO:    No runscript found in container, executing /bin/sh' >&2
exec /bin/sh "$@"
`,
	"test": `if [ -x /.singularity.d/test ]; then exec /.singularity.d/test "$@"; fi
if [ -f /.singularity.d/test ]; then exec /bin/sh /.singularity.d/test "$@"; fi
echo 'INFO:    No test script found in container, exiting' >&2
exit 0
`,
	"start": `if [ -x /.singularity.d/startscript ]; then exec /.singularity.d/startscript "$@"; fi
exit 0
`,
	"shell": `if [ -n "$SINGULARITY_SHELL" ]; then exec "$SINGULARITY_SHELL" "$@"; fi
if [ -x /bin/bash ]; then SHELL=/bin/bash; export SHELL; exec /bin/bash --norc "$@"; fi
SHELL=/bin/sh; export SHELL
exec /bin/sh "$@"
`,
}

// firstOfEach keeps the first variable of each name, which restoring them
// in order gave.
func firstOfEach(vars []envVar) []envVar {
	seen := map[string]bool{}
	var out []envVar
	for _, v := range vars {
		if !seen[v.Key] {
			seen[v.Key] = true
			out = append(out, v)
		}
	}
	return out
}

// hostEnvPrefix names the variables that carry the host's environment
// into the script (launcher).
const hostEnvPrefix = "__husk_h_"

// launcher returns the argv and the initial environment of the container
// process for command.
func launcher(command string, args []string, env containerEnv) (argv, initEnv []string) {
	for _, v := range env.Engine {
		initEnv = append(initEnv, v.Key+"="+v.Value)
	}
	var b strings.Builder
	// dash sets PS1 itself, and bash (/bin/sh in RHEL's images) TERM=dumb
	// and SHLVL: only the image or the host may set them. PATH starts as
	// dash's default in either shell (bash's ends in ".").
	b.WriteString("unset PS1 TERM SHLVL\nPATH=" + DefaultPath + "\n")
	// The host's values come in the environment, not in the script: one
	// argument holds at most 128 KiB (MAX_ARG_STRLEN), less than an HPC
	// login's environment can be (module systems). Step 1 moves them into
	// shell variables that are not exported, out of the image scripts'
	// environment.
	host := firstOfEach(env.Host)
	if len(host) > 0 {
		names := make([]string, len(host))
		for i, v := range host {
			initEnv = append(initEnv, hostEnvPrefix+v.Key+"="+v.Value)
			names[i] = v.Key
		}
		// The names are listed once, a line each; IFS is the shell's
		// default here (no variable of the host's is set yet), and step 5
		// reads the list by lines, whatever the image made of IFS.
		fmt.Fprintf(&b, `__husk_hk='%s'
for __husk_k in $__husk_hk; do
	eval "__husk_v_$__husk_k=\${%s$__husk_k}; unset %s$__husk_k"
done
unset __husk_k
`, strings.Join(names, "\n"), hostEnvPrefix, hostEnvPrefix)
	}
	b.WriteString(injectFunc(env.Inject))
	if env.App != "" {
		b.WriteString(appFunc)
	} else {
		b.WriteString("__husk_appdone=1\n")
	}
	fmt.Fprintf(&b, `__husk_inj=
if [ -d /.singularity.d/env ]; then
	for __husk_f in /.singularity.d/env/*.sh; do
		[ -f "$__husk_f" ] || continue
		case ${__husk_f##*/} in
		99-runtimevars.sh) continue ;;
		95-apps.sh) [ -z "${SINGULARITY_APPNAME:-}" ] || continue ;;
		99-base.sh) [ -n "$__husk_appdone" ] || __husk_apps ;;
		90-environment.sh) [ -n "${PATH+x}" ] || PATH=%[1]s; export PATH ;;
		esac
		. "$__husk_f"
		case ${__husk_f##*/} in
		10-docker*.sh) __husk_path ;;
		99-base.sh) __husk_inject ;;
		esac
	done
elif [ -f /environment ]; then
	. /environment
fi
[ -n "$__husk_appdone" ] || __husk_apps
[ -n "$__husk_inj" ] || __husk_inject
if [ -n "${SING_USER_DEFINED_PREPEND_PATH:-}" ]; then
	PATH="$SING_USER_DEFINED_PREPEND_PATH:$PATH"
fi
if [ -n "${SING_USER_DEFINED_APPEND_PATH:-}" ]; then
	PATH="$PATH:$SING_USER_DEFINED_APPEND_PATH"
fi
if [ -n "${SING_USER_DEFINED_PATH:-}" ]; then PATH="$SING_USER_DEFINED_PATH"; fi
unset SING_USER_DEFINED_PREPEND_PATH SING_USER_DEFINED_APPEND_PATH SING_USER_DEFINED_PATH
export PATH
`, DefaultPath)

	// Step 5: restore what the image did not set, unset what is empty.
	if len(host) > 0 {
		b.WriteString(`while IFS= read -r __husk_k; do
	[ -n "$__husk_k" ] || continue
	eval "[ -n \"\${$__husk_k+x}\" ] || export $__husk_k=\"\$__husk_v_$__husk_k\"
	unset __husk_v_$__husk_k"
done <<__HUSK_EOF__
$__husk_hk
__HUSK_EOF__
unset __husk_k __husk_hk
`)
	}
	b.WriteString(unsetEmpty)

	b.WriteString(`[ -n "${PS1:-}" ] || PS1='Apptainer> '
export PS1
PROMPT_COMMAND="PS1=\"$PS1\"; unset PROMPT_COMMAND"
export PROMPT_COMMAND
unset __husk_f __husk_inj __husk_appdone
unset -f __husk_inject __husk_path __husk_apps
`)
	if env.App != "" {
		b.WriteString(appBodies[command])
	}
	b.WriteString(actionBodies[command])
	argv = append([]string{"/bin/sh", "-c", b.String(), "husk-" + command}, args...)
	return argv, initEnv
}

// unsetEmpty unsets every exported variable whose value is empty (but
// PS1, which step 6 handles), as Apptainer does after restoring the host
// environment. It reads the names from `export -p` (dash: export NAME=...,
// bash: declare -x NAME=...); a read-only variable is left alone rather
// than ending the shell.
const unsetEmpty = `__husk_e=$(export -p)
while IFS= read -r __husk_l; do
	case $__husk_l in
	"export "*) __husk_n=${__husk_l#export } ;;
	"declare -x "*) __husk_n=${__husk_l#declare -x } ;;
	*) continue ;;
	esac
	__husk_n=${__husk_n%%=*}
	case $__husk_n in ""|[0-9]*|*[!A-Za-z0-9_]*|PS1) continue ;; esac
	if eval "[ -z \"\${$__husk_n:-}\" ]" && __husk_l=$( (unset "$__husk_n") 2>&1); then
		unset "$__husk_n"
	fi
done <<__HUSK_EOF__
$__husk_e
__HUSK_EOF__
unset __husk_e __husk_l __husk_n
`

// injectFunc defines __husk_inject (step 3) and __husk_path (the default
// PATH entries an OCI image's 10-docker2singularity.sh may lack).
func injectFunc(inject []envVar) string {
	var b strings.Builder
	fmt.Fprintf(&b, `__husk_path() {
	__husk_d=
	for __husk_d in %s; do
		case ":$PATH:" in *":$__husk_d:"*) ;; *) PATH="$PATH:$__husk_d" ;; esac
	done
	unset __husk_d
	export PATH
}
__husk_inject() {
	__husk_inj=1
	[ -n "${PATH+x}" ] || PATH=%s
	export PATH
`, strings.ReplaceAll(DefaultPath, ":", " "), DefaultPath)
	for _, v := range inject {
		key, val := v.Key, shellQuote(v.Value)
		if v.Eval {
			val = shellEval(v.Value)
		}
		if k, ok := scriptPathKeys[key]; ok {
			key = k
		}
		fmt.Fprintf(&b, "\texport %s=%s\n", key, val)
		if key == "LD_LIBRARY_PATH" {
			b.WriteString("\tLD_LIBRARY_PATH=\"$LD_LIBRARY_PATH:/.singularity.d/libs\"\n")
		}
	}
	b.WriteString("}\n")
	return b.String()
}
