package main

import (
	"encoding/csv"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
)

// DefaultPath is the container PATH Apptainer sets (COMPAT §7.5).
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// userPathTail is what Apptainer appends to the host PATH for USER_PATH:
// its own default path, in its own order, not DefaultPath's.
const userPathTail = "/bin:/usr/bin:/sbin:/usr/sbin:/usr/local/bin:/usr/local/sbin"

// launchEnv is the host environment as Apptainer's action commands leave
// it before the container's is computed from it: they set USER_PATH (the
// host PATH with the default path after it, for scripts that want the
// host's PATH back) and IMAGE_ARG (the image argument as given), so both
// reach the container as host variables do, and --cleanenv drops them.
func launchEnv(host []string, imageArg string) []string {
	out := make([]string, 0, len(host)+2)
	for _, kv := range host {
		k, _, _ := strings.Cut(kv, "=")
		if k != "USER_PATH" && k != "IMAGE_ARG" {
			out = append(out, kv)
		}
	}
	var path string
	for _, kv := range host {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	return append(out, "USER_PATH="+path+":"+userPathTail, "IMAGE_ARG="+imageArg)
}

// envPrefixes name the host variables that set container variables, lowest
// precedence first: SINGULARITYENV_X < APPTAINERENV_X < HUSKENV_X.
var envPrefixes = []string{"SINGULARITYENV_", "APPTAINERENV_", "HUSKENV_"}

// cleanenvKeep are the host variables --cleanenv still forwards.
var cleanenvKeep = map[string]bool{"TERM": true}

func init() {
	for _, p := range []string{"http_proxy", "https_proxy", "no_proxy", "all_proxy",
		"ftp_proxy"} {
		cleanenvKeep[p] = true
		cleanenvKeep[strings.ToUpper(p)] = true
	}
}

// containerEnv is the environment of the container process in the three
// parts Apptainer's action script handles separately (COMPAT §7.4):
// Engine is set from the start (HOME and the APPTAINER_ variables), Inject
// is applied right after the image's 99-base.sh so that APPTAINERENV_ and
// --env values win over the image, and Host is restored after the image's
// scripts only where the image left a variable unset.
type containerEnv struct {
	Engine []envVar
	Inject []envVar
	Host   []envVar
	// App is the SCIF app of --app, or empty (scif.go).
	App string
}

// envVar is one variable. Eval marks an injected value that the container
// shell expands (APPTAINERENV_ values without --no-eval).
type envVar struct {
	Key, Value string
	Eval       bool
}

// envInput is what the environment is computed from.
type envInput struct {
	Host     []string // os.Environ()
	Cleanenv bool
	NoEnv    []string // --no-env: host variables not to forward
	NoEval   bool
	Home     string   // container home destination
	Image    string   // absolute image path
	Command  string   // exec, run, shell, test or start
	Instance string   // instance name, for APPTAINER_INSTANCE
	Shell    string   // --shell
	App      string   // --app
	Binds    []string // --bind values, for APPTAINER_BIND
	Env      []string
	EnvFiles []string // --env-file paths, evaluated on the host
}

// buildEnv applies Apptainer's forwarding and injection rules.
func buildEnv(in envInput, log *slog.Logger) (containerEnv, error) {
	var out containerEnv
	byPrefix := make([]map[string]string, len(envPrefixes))
	for i := range byPrefix {
		byPrefix[i] = map[string]string{}
	}
	hostMap := map[string]string{}
	noEnv := map[string]bool{}
	for _, k := range in.NoEnv {
		noEnv[k] = true
	}
	for _, kv := range in.Host {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			continue
		}
		hostMap[k] = v
		if i, name := envPrefixOf(k); i >= 0 {
			if name != "" {
				byPrefix[i][name] = v
			}
			continue
		}
		if forwarded(k, in.Cleanenv) && !noEnv[k] && validName(k) {
			out.Host = append(out.Host, envVar{Key: k, Value: v})
		}
	}
	if in.Cleanenv {
		out.Host = append(out.Host, envVar{Key: "LANG", Value: "C"})
	}

	// Later prefixes override earlier ones (COMPAT §7.5 messages).
	inject := map[string]envVar{}
	for k, v := range byPrefix[0] {
		inject[k] = envVar{Key: k, Value: v, Eval: !in.NoEval}
	}
	for i := 1; i < len(byPrefix); i++ {
		for k, v := range byPrefix[i] {
			if prev, ok := inject[k]; ok && i == 1 {
				if prev.Value != v {
					log.Warn(fmt.Sprintf("Environment variable %s%s is set, but %s%s is "+
						"preferred", envPrefixes[0], k, envPrefixes[1], k))
				} else {
					log.Info(fmt.Sprintf("Environment variable %s%s is set, but %s%s is "+
						"preferred", envPrefixes[0], k, envPrefixes[1], k))
				}
			}
			inject[k] = envVar{Key: k, Value: v, Eval: !in.NoEval}
		}
	}
	cli := map[string]bool{}
	for _, arg := range in.Env {
		pairs, err := splitEnvFlag(arg)
		if err != nil {
			return out, err
		}
		for _, kv := range pairs {
			k, v, _ := strings.Cut(kv, "=")
			if k == "" {
				return out, fmt.Errorf("--env %q: want KEY=VALUE", kv)
			}
			inject[k] = envVar{Key: k, Value: v, Eval: !in.NoEval}
			cli[k] = true
		}
	}
	for _, f := range in.EnvFiles {
		vars, err := parseEnvFile(f, hostMap, in.Image)
		if err != nil {
			return out, err
		}
		for _, v := range vars {
			if cli[v.Key] {
				log.Warn(fmt.Sprintf("Ignored environment file variable %s: override "+
					"from --env", v.Key))
				continue
			}
			// Already evaluated on the host: inject verbatim.
			inject[v.Key] = envVar{Key: v.Key, Value: v.Value}
		}
	}

	keys := make([]string, 0, len(inject))
	for k := range inject {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch k {
		case "HOME":
			log.Warn("Overriding HOME environment variable with APPTAINERENV_HOME is not " +
				"permitted")
			continue
		case "APPTAINER_SHELL", "APPTAINER_APPNAME", "SINGULARITY_SHELL",
			"SINGULARITY_APPNAME":
			log.Warn(fmt.Sprintf("Overriding %s environment variable with "+
				"APPTAINERENV_%s is not permitted", k, k))
			continue
		case "UID", "GID":
			continue
		}
		if !validName(k) {
			log.Warn(fmt.Sprintf("Ignoring environment variable %q: not a valid name", k))
			continue
		}
		out.Inject = append(out.Inject, inject[k])
	}

	out.Engine = engineVars(in)
	out.App = in.App
	return out, nil
}

// splitEnvFlag splits one --env value into KEY=VALUE pairs as Apptainer's
// --env (a pflag string-to-string flag) does: a value with one "=" is one
// pair, even with commas in it ("A=1,2"), and has any double quotes at its
// ends dropped; a value with more is one line of CSV, so "A=1,B=2" is two
// pairs and a field in double quotes keeps its commas ("A=1,\"B=2,3\"",
// with "" for a quote inside). Every pair needs an "=".
func splitEnvFlag(val string) ([]string, error) {
	var pairs []string
	switch strings.Count(val, "=") {
	case 0:
		return nil, fmt.Errorf("--env %q: want KEY=VALUE", val)
	case 1:
		pairs = []string{strings.Trim(val, `"`)}
	default:
		r := csv.NewReader(strings.NewReader(val))
		// Only the first line counts, as in pflag.
		rec, err := r.Read()
		if err != nil {
			return nil, fmt.Errorf("--env %q: %w", val, err)
		}
		pairs = rec
	}
	for _, kv := range pairs {
		if !strings.Contains(kv, "=") {
			return nil, fmt.Errorf("--env %q: %q is not KEY=VALUE", val, kv)
		}
	}
	return pairs, nil
}

// engineVars are the variables the runtime sets for the container
// (COMPAT §7.5), with their SINGULARITY_ duplicates.
func engineVars(in envInput) []envVar {
	vars := []envVar{{Key: "HOME", Value: in.Home}}
	add := func(k, v string) {
		vars = append(vars, envVar{Key: "APPTAINER_" + k, Value: v},
			envVar{Key: "SINGULARITY_" + k, Value: v})
	}
	add("CONTAINER", in.Image)
	add("NAME", filepath.Base(in.Image))
	add("COMMAND", in.Command)
	add("ENVIRONMENT", "/.singularity.d/env/91-environment.sh")
	if in.Instance != "" {
		add("INSTANCE", in.Instance)
	}
	if in.Shell != "" {
		add("SHELL", in.Shell)
	}
	if in.App != "" {
		add("APPNAME", in.App)
	}
	if len(in.Binds) > 0 {
		add("BIND", strings.Join(in.Binds, ","))
	}
	return vars
}

// envPrefixOf returns the index in envPrefixes of k's injection prefix
// (-1 for none) and the name it sets.
func envPrefixOf(k string) (int, string) {
	for i, p := range envPrefixes {
		if strings.HasPrefix(k, p) {
			return i, strings.TrimPrefix(k, p)
		}
	}
	return -1, ""
}

// forwarded says whether a host variable reaches the container. Names
// starting with __husk_ are the launcher script's own (script.go).
func forwarded(k string, cleanenv bool) bool {
	if cleanenv {
		return cleanenvKeep[k]
	}
	switch k {
	case "HOME", "PATH", "LD_LIBRARY_PATH":
		return false
	}
	return !strings.HasPrefix(k, "APPTAINER_") && !strings.HasPrefix(k, "SINGULARITY_") &&
		!strings.HasPrefix(k, "HUSK_") && !strings.HasPrefix(k, "_HUSK_") &&
		!strings.HasPrefix(k, "__husk_")
}

func validName(k string) bool {
	for i, c := range k {
		if c != '_' && (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') &&
			(i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return k != ""
}

// shellQuote quotes s for /bin/sh as one word, unevaluated.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shellEval quotes s for /bin/sh as one word that the shell still expands
// ($VAR, $(cmd), `cmd`), as Apptainer writes APPTAINERENV_ values.
//
// A quote is escaped unless a backslash escapes it already, and an odd
// run of backslashes at the end gets one more: either would end the word
// early or leave it open (`a\\\` and `x\"y` made the script a syntax error).
func shellEval(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	run := 0 // backslashes just before
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '"' && run%2 == 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
		if c == '\\' {
			run++
		} else {
			run = 0
		}
	}
	if run%2 == 1 {
		b.WriteByte('\\')
	}
	b.WriteByte('"')
	return b.String()
}
