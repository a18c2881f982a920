package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/husk-project/husk/cmd/internal/image"
	"github.com/husk-project/husk/squash"
)

// An image without /bin/sh cannot run the launcher script (script.go).
// Apptainer's embedded interpreter does not need one; husk then runs an
// exec command directly, with the environment computed in Go: the image's
// env scripts are not sourced (they are shell scripts) and APPTAINERENV_
// values are not evaluated.

// rootHasShell reports whether the root filesystem of img has /bin/sh.
// When it cannot tell, it says yes: the script path reports its own
// errors.
func rootHasShell(img string) bool {
	im, err := image.Open(img, false)
	if err != nil {
		return true
	}
	defer im.Close()
	switch {
	case im.Root == nil:
		p, err := resolveInDir(im.Path, "/bin/sh")
		if err != nil {
			return false
		}
		_, err = os.Stat(p)
		return !missing(err)
	case im.Root.FS != image.FSSquashfs:
		return true
	}
	fs, err := squash.Open(io.NewSectionReader(im.File, im.Root.Offset, im.Root.Size),
		im.Root.Size, nil)
	if err != nil {
		return true
	}
	_, err = (&squashReader{fs: fs}).lookup("/bin/sh")
	return !missing(err)
}

// missing reports whether err says a path is not there, as opposed to a
// damaged image that the script path then names in its own error.
func missing(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENOTDIR)
}

// directProcess is the argv and environment of an exec without a shell.
func directProcess(command string, args []string, env containerEnv) ([]string, []string,
	error) {
	if command != "exec" {
		return nil, nil, fmt.Errorf("husk %s needs /bin/sh in the image (it has none); "+
			"use husk exec IMAGE COMMAND", command)
	}
	vals := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			order = append(order, k)
		}
		vals[k] = v
	}
	for _, v := range env.Host {
		set(v.Key, v.Value)
	}
	set("PATH", DefaultPath)
	for _, v := range env.Inject {
		switch v.Key {
		case "PATH":
			set("PATH", v.Value)
		case "PREPEND_PATH":
			set("PATH", v.Value+":"+vals["PATH"])
		case "APPEND_PATH":
			set("PATH", vals["PATH"]+":"+v.Value)
		case "LD_LIBRARY_PATH":
			set(v.Key, v.Value+":/.singularity.d/libs")
		default:
			set(v.Key, v.Value)
		}
	}
	for _, v := range env.Engine {
		set(v.Key, v.Value)
	}
	if vals["PS1"] == "" {
		set("PS1", "Apptainer> ")
	}
	var out []string
	for _, k := range order {
		if vals[k] != "" || k == "PS1" {
			out = append(out, k+"="+vals[k])
		}
	}
	return args, out, nil
}
