package main

import (
	"fmt"
	"path"
)

// SCIF apps (--app NAME), as Apptainer runs them (COMPAT §7.1, §7.4): an
// app lives in /scif/apps/NAME with its metadata in scif/ (runscript,
// startscript, test, labels.json, env/*.sh), its programs in bin/ and its
// libraries in lib/. The engine sets APPTAINER_APPNAME and
// SINGULARITY_APPNAME; the image's 94-appsbase.sh exports the SCIF_APP*
// globals of every app; what the image's 95-apps.sh does for the selected
// app is done by __husk_apps at the same point, so that images built
// without it work too; run, test and start then use the app's scripts.

// appFunc defines __husk_apps: Apptainer's 95-apps.sh for the app named by
// SINGULARITY_APPNAME. An app that does not exist ends the container
// with status 1, as there.
const appFunc = `__husk_appdone=
__husk_apps() {
	__husk_appdone=1
	export SINGULARITY_APPNAME
	__husk_a=/scif/apps/$SINGULARITY_APPNAME
	if [ ! -d "$__husk_a/" ]; then
		echo "ERROR:   Could not locate the container application: $SINGULARITY_APPNAME" >&2
		exit 1
	fi
	SCIF_APPS=/scif/apps
	SCIF_APPROOT=$__husk_a
	export SCIF_APPROOT SCIF_APPS
	PATH="$__husk_a:/scif/apps/singularity:$PATH"
	if [ -d "$__husk_a/bin" ]; then
		PATH="$__husk_a/bin:$PATH"
	elif [ -d /scif/apps/singularity/bin ]; then
		PATH="/scif/apps/singularity/bin:$PATH"
	fi
	if [ -d "$__husk_a/lib" ]; then
		LD_LIBRARY_PATH="$__husk_a/lib:${LD_LIBRARY_PATH:-}"
		export LD_LIBRARY_PATH
	fi
	for __husk_e in 01-base.sh 90-environment.sh; do
		if [ -f "$__husk_a/scif/env/$__husk_e" ]; then . "$__husk_a/scif/env/$__husk_e"; fi
	done
	export PATH
	unset __husk_a __husk_e
}
`

// appBodies run before actionBodies when an app is selected: its
// runscript, test or startscript, or Apptainer's error, exit 1.
var appBodies = map[string]string{
	"run":   appScript("runscript", "no runscript for contained app"),
	"test":  appScript("test", "No tests for contained app"),
	"start": appScript("startscript", "No startscript for contained app"),
}

func appScript(file, missing string) string {
	return fmt.Sprintf(`__husk_s="/scif/apps/$SINGULARITY_APPNAME/scif/%s"
if [ -x "$__husk_s" ]; then exec "$__husk_s" "$@"; fi
echo "ERROR:   %s: $SINGULARITY_APPNAME" >&2
exit 1
`, file, missing)
}

// appMeta is the directory of an app's metadata in the image.
func appMeta(app string) string {
	return "/scif/apps/" + app + "/scif"
}

// listApps prints the names of the image's apps, one a line, as
// Apptainer's inspect --list-apps: the directories of /scif/apps with a
// scif/ metadata directory.
func listApps(r imageReader) error {
	names, _ := r.Glob("/scif/apps", "")
	for _, n := range names {
		if _, err := r.Glob(n+"/scif", ""); err == nil {
			fmt.Println(path.Base(n))
		}
	}
	return nil
}
