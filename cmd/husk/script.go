package main

import "strings"

// The payload runs through /bin/sh so that the image's environment scripts
// are sourced first, as Apptainer's built-in action script does (COMPAT
// §7.4): every /.singularity.d/env/*.sh in lexical order, then the
// APPTAINERENV_/--env values, then the action.
//
// TODO: Apptainer evaluates this with an embedded interpreter and a cleared
// environment, restoring host variables the image did not set afterwards.
// Here the host variables are already set while the scripts run, so
// scripts that keep a value already set (10-docker2singularity.sh) keep the
// host's; APPTAINERENV_ values are not evaluated (as with --no-eval); and an
// image without /bin/sh cannot run.
const envPrologue = `for __husk_f in /.singularity.d/env/*.sh; do
	if [ -f "$__husk_f" ]; then . "$__husk_f"; fi
done
unset __husk_f
`

// actionBodies are the per-command tails of the script; "$@" holds the
// user's arguments.
var actionBodies = map[string]string{
	"exec": `if ! command -v "$1" >/dev/null 2>&1; then
	echo "FATAL:   \"$1\": executable file not found in \$PATH" >&2
	exit 255
fi
exec "$@"
`,
	"run": `if [ -x /.singularity.d/runscript ]; then exec /.singularity.d/runscript "$@"; fi
if [ -x /apptainer ]; then exec /apptainer "$@"; fi
if [ -x /singularity ]; then exec /singularity "$@"; fi
echo 'INFO:    No runscript found in container, executing /bin/sh' >&2
exec /bin/sh "$@"
`,
	"shell": `if [ -z "$PS1" ]; then PS1='Apptainer> '; fi
export PS1
if [ -n "$SINGULARITY_SHELL" ]; then exec "$SINGULARITY_SHELL" "$@"; fi
if [ -x /bin/bash ]; then SHELL=/bin/bash; export SHELL; exec /bin/bash --norc "$@"; fi
SHELL=/bin/sh; export SHELL
exec /bin/sh "$@"
`,
}

// payloadArgs returns the argv of the container process for command.
func payloadArgs(command string, args []string, inject []envVar) []string {
	var b strings.Builder
	b.WriteString(envPrologue)
	for _, v := range inject {
		switch v.Key {
		case "PREPEND_PATH":
			b.WriteString("PATH=" + shellQuote(v.Value) + `:"$PATH"; export PATH` + "\n")
		case "APPEND_PATH":
			b.WriteString(`PATH="$PATH":` + shellQuote(v.Value) + "; export PATH\n")
		default:
			b.WriteString("export " + v.Key + "=" + shellQuote(v.Value) + "\n")
		}
	}
	b.WriteString(actionBodies[command])
	return append([]string{"/bin/sh", "-c", b.String(), "husk-" + command}, args...)
}
