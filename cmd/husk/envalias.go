package main

import (
	"os"
	"slices"
	"strings"
)

// envAliases are the other names Apptainer reads for a flag's variable:
// APPTAINER_OVERLAYIMAGE and APPTAINER_BINDPATH, and the legacy
// SINGULARITY_ names (COMPAT §3.2, §7.2). The first one set is copied to
// the name kong reads, unless that is set already.
var envAliases = map[string][]string{
	"APPTAINER_OVERLAY": {"APPTAINER_OVERLAYIMAGE", "SINGULARITY_OVERLAY",
		"SINGULARITY_OVERLAYIMAGE"},
	"APPTAINER_WRITABLE":       {"SINGULARITY_WRITABLE"},
	"APPTAINER_WRITABLE_TMPFS": {"SINGULARITY_WRITABLE_TMPFS"},
	"APPTAINER_FAKEROOT":       {"SINGULARITY_FAKEROOT"},
	"APPTAINER_CLEANENV":       {"SINGULARITY_CLEANENV"},
	"APPTAINER_CONTAIN":        {"SINGULARITY_CONTAIN"},
	"APPTAINER_CONTAINALL":     {"SINGULARITY_CONTAINALL"},
	"APPTAINER_HOME":           {"SINGULARITY_HOME"},
	"APPTAINER_NO_HOME":        {"SINGULARITY_NO_HOME"},
	"APPTAINER_PWD":            {"APPTAINER_TARGET_PWD", "SINGULARITY_PWD"},
	"APPTAINER_HOSTNAME":       {"SINGULARITY_HOSTNAME"},
	"APPTAINER_PID":            {"SINGULARITY_PID"},
	"APPTAINER_IPC":            {"SINGULARITY_IPC"},
	"APPTAINER_UTS":            {"SINGULARITY_UTS"},
	"APPTAINER_NO_MOUNT":       {"SINGULARITY_NO_MOUNT"},
	"APPTAINER_SPARSE":         {"SINGULARITY_SPARSE"},
	"APPTAINER_SHELL":          {"SINGULARITY_SHELL"},
	"APPTAINER_COMPAT":         {"SINGULARITY_COMPAT"},
	"APPTAINER_ENV_FILE":       {"SINGULARITY_ENV_FILE"},
	"APPTAINER_NO_EVAL":        {"SINGULARITY_NO_EVAL"},
	"APPTAINER_NO_UMASK":       {"SINGULARITY_NO_UMASK"},
	"APPTAINER_APP": {"APPTAINER_APPNAME", "SINGULARITY_APP",
		"SINGULARITY_APPNAME"},
	"APPTAINER_SCRATCH": {"APPTAINER_SCRATCHDIR", "SINGULARITY_SCRATCH",
		"SINGULARITY_SCRATCHDIR"},
	"APPTAINER_NET": {"APPTAINER_UNSHARE_NET", "SINGULARITY_NET",
		"SINGULARITY_UNSHARE_NET"},
	"APPTAINER_WORKDIR":      {"SINGULARITY_WORKDIR"},
	"APPTAINER_DNS":          {"SINGULARITY_DNS"},
	"APPTAINER_SECURITY":     {"SINGULARITY_SECURITY"},
	"APPTAINER_ADD_CAPS":     {"SINGULARITY_ADD_CAPS"},
	"APPTAINER_DROP_CAPS":    {"SINGULARITY_DROP_CAPS"},
	"APPTAINER_KEEP_PRIVS":   {"SINGULARITY_KEEP_PRIVS"},
	"APPTAINER_NO_PRIVS":     {"SINGULARITY_NO_PRIVS"},
	"APPTAINER_NETWORK":      {"SINGULARITY_NETWORK"},
	"APPTAINER_NETWORK_ARGS": {"SINGULARITY_NETWORK_ARGS"},
	"APPTAINER_SHARENS":      {"SINGULARITY_SHARENS"},
	"APPTAINER_BOOT":         {"SINGULARITY_BOOT"},
	"APPTAINER_NV":           {"SINGULARITY_NV"},
	"APPTAINER_NVCCLI":       {"SINGULARITY_NVCCLI"},
	"APPTAINER_ROCM":         {"SINGULARITY_ROCM"},
	"APPTAINER_FUSEMOUNT":    {"SINGULARITY_FUSEMOUNT"},
}

// applyEnvAliases copies alias values to the names the flags read. Only
// husk's own process environment changes: APPTAINER_ and SINGULARITY_
// variables never reach the container.
func applyEnvAliases() {
	for name, aliases := range envAliases {
		if _, set := os.LookupEnv(name); set {
			continue
		}
		for _, a := range aliases {
			if v, set := os.LookupEnv(a); set {
				os.Setenv(name, v)
				break
			}
		}
	}
	// An empty overlay variable means no overlay, as it did before
	// --overlay "" became an error (overlayflag.go).
	for _, name := range []string{"HUSK_OVERLAY", "APPTAINER_OVERLAY"} {
		if v, set := os.LookupEnv(name); set && v == "" {
			os.Unsetenv(name)
		}
	}
}

// Variables whose values Apptainer adds to those of a flag instead of
// standing in for it (cmdline.EnvAppendValue): the binds a site sets in
// APPTAINER_BINDPATH stay when a user adds -B. Each group is one
// variable: the first of its names that is set.
var (
	bindEnv = [][]string{{"HUSK_BIND"}, {"APPTAINER_BIND", "SINGULARITY_BIND"},
		{"APPTAINER_BINDPATH", "SINGULARITY_BINDPATH"}}
	mountEnv = [][]string{{"HUSK_MOUNT"}, {"APPTAINER_MOUNT", "SINGULARITY_MOUNT"}}
)

// envValues returns the non-empty values of groups' variables, in order.
func envValues(groups [][]string) []string {
	var out []string
	for _, g := range groups {
		for _, name := range g {
			if v, set := os.LookupEnv(name); set {
				if v != "" {
					out = append(out, v)
				}
				break
			}
		}
	}
	return out
}

// AfterApply adds the binds and mounts of the environment after those of
// the flags, as Apptainer does (kong calls it once the flags are parsed).
func (f *ActionFlags) AfterApply() error {
	for _, v := range envValues(bindEnv) {
		f.Bind = append(f.Bind, strings.Split(v, ",")...)
	}
	f.Mount = append(f.Mount, envValues(mountEnv)...)
	// A site's variable and a user's flag often name the same bind: one
	// mount of it, not one on top of the other.
	f.Bind, f.Mount = lastCopies(f.Bind), lastCopies(f.Mount)
	return nil
}

// lastCopies keeps the last copy of each value, in order: a mount made
// again later lands on top of those between, so the last one is the one
// that counts.
func lastCopies(vals []string) []string {
	seen := make(map[string]bool, len(vals))
	var out []string
	for i := len(vals) - 1; i >= 0; i-- {
		if !seen[vals[i]] {
			seen[vals[i]] = true
			out = append(out, vals[i])
		}
	}
	slices.Reverse(out)
	return out
}
