package main

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
)

// DefaultPath is the container PATH Apptainer sets (COMPAT §7.5).
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

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

// containerEnv is the environment of the container process, in two parts:
// Base is set before the image's /.singularity.d/env scripts run, Inject is
// applied after them, so that APPTAINERENV_ and --env values win over the
// image, which wins over the host (COMPAT §7.5).
type containerEnv struct {
	Base   []string
	Inject []envVar
}

type envVar struct{ Key, Value string }

// envInput is what the environment is computed from.
type envInput struct {
	Host     []string // os.Environ()
	Cleanenv bool
	Home     string // container home destination
	Image    string // absolute image path
	Command  string // exec, run or shell
	Env      []string
}

// buildEnv applies Apptainer's forwarding rules to the host environment.
func buildEnv(in envInput, log *slog.Logger) (containerEnv, error) {
	var out containerEnv
	byPrefix := make([]map[string]string, len(envPrefixes))
	for i := range byPrefix {
		byPrefix[i] = map[string]string{}
	}
	for _, kv := range in.Host {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			continue
		}
		if i, name := envPrefixOf(k); i >= 0 {
			if name != "" {
				byPrefix[i][name] = v
			}
			continue
		}
		if forwarded(k, in.Cleanenv) {
			out.Base = append(out.Base, kv)
		}
	}

	// Later prefixes override earlier ones; a SINGULARITYENV_ value that
	// loses to a different APPTAINERENV_ one is worth a warning.
	inject := map[string]string{}
	for i, m := range byPrefix {
		for k, v := range m {
			if prev, ok := inject[k]; ok && prev != v && i == 1 {
				log.Warn(fmt.Sprintf("Environment variable %s%s is set, but %s%s is "+
					"preferred", envPrefixes[0], k, envPrefixes[1], k))
			}
			inject[k] = v
		}
	}
	for _, kv := range in.Env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return out, fmt.Errorf("--env %q: want KEY=VALUE", kv)
		}
		inject[k] = v
	}

	if in.Cleanenv {
		out.Base = append(out.Base, "LANG=C")
	}
	name := filepath.Base(in.Image)
	out.Base = append(out.Base, "HOME="+in.Home, "PATH="+DefaultPath)
	for _, p := range []string{"APPTAINER_", "SINGULARITY_"} {
		out.Base = append(out.Base, p+"CONTAINER="+in.Image, p+"NAME="+name,
			p+"COMMAND="+in.Command,
			p+"ENVIRONMENT=/.singularity.d/env/91-environment.sh")
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
		case "UID", "GID", "APPTAINER_SHELL", "APPTAINER_APPNAME", "SINGULARITY_SHELL",
			"SINGULARITY_APPNAME":
			continue
		}
		if !validName(k) {
			log.Warn(fmt.Sprintf("Ignoring environment variable %q: not a valid name", k))
			continue
		}
		out.Inject = append(out.Inject, envVar{k, inject[k]})
	}
	return out, nil
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

// forwarded says whether a host variable reaches the container.
func forwarded(k string, cleanenv bool) bool {
	if cleanenv {
		return cleanenvKeep[k]
	}
	switch k {
	case "HOME", "PATH", "LD_LIBRARY_PATH", "PS1", "PROMPT_COMMAND":
		// PS1: Apptainer clears the environment before the image's
		// 99-base.sh sets its prompt, so a host PS1 never survives.
		return false
	}
	return !strings.HasPrefix(k, "APPTAINER_") && !strings.HasPrefix(k, "SINGULARITY_") &&
		!strings.HasPrefix(k, "HUSK_")
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
