package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/husk-project/husk/cmd/internal/image"
	"github.com/husk-project/husk/sandbox"
)

// runAction opens the images, builds the environment and the sandbox spec
// for exec, run, shell or test, and runs the container, or joins the
// instance for an instance://NAME image. The container's exit status is
// left in g.Code.
func runAction(g *globals, command string, f *ActionFlags, img string, args []string) error {
	if name, ok := strings.CutPrefix(img, instanceScheme); ok {
		return joinInstance(g, command, f, name, args)
	}
	if f.Sharens {
		return runSharens(g, command, f, img, args)
	}
	plan, spec, err := prepareAction(g, command, f, img, "", args)
	if err != nil {
		return err
	}
	defer plan.Close()
	code, err := sandbox.Run(context.Background(), spec, plan.Files, g.Log)
	if err != nil {
		return setupError(err)
	}
	g.Code = code
	return nil
}

// prepareAction opens the images and builds the sandbox spec; the caller
// closes the plan once the container has ended.
func prepareAction(g *globals, command string, f *ActionFlags, img, instance string,
	args []string) (_ *image.Plan, _ *sandbox.Spec, err error) {
	if f.Compat {
		f.Containall, f.NoUmask, f.WritableTmpfs, f.NoEval = true, true, true, true
	}
	if f.Containall {
		f.Contain, f.Pid, f.Ipc, f.Cleanenv = true, true, true, true
	}
	overlays, err := image.ParseOverlayArgs(f.Overlay)
	if err != nil {
		return nil, nil, err
	}
	req := image.Request{
		Image:         img,
		Overlays:      overlays,
		Writable:      f.Writable,
		WritableTmpfs: f.WritableTmpfs,
	}
	plan, err := image.NewPlan(req, g.Log)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			plan.Close()
		}
	}()
	plan.CacheBytes = int64(f.CacheSize)
	g.Log.Debug("layers (top first): " + plan.Describe())
	union, err := json.Marshal(plan)
	if err != nil {
		return nil, nil, err
	}

	binds, err := parseBinds(f.Bind)
	if err != nil {
		return nil, nil, err
	}
	spec := &sandbox.Spec{
		UID:      uint32(os.Getuid()),
		GID:      uint32(os.Getgid()),
		Fakeroot: f.Fakeroot,
		Writable: plan.Upper != nil || plan.WritableTmpfs,
		NoHome:   f.NoHome,
		Home:     f.Home,
		Binds:    binds,
		PID:      f.Pid,
		IPC:      f.Ipc,
		UTS:      f.Uts,
		Contain:  f.Contain,
		NoMount:  f.NoMount,
		Hostname: f.Hostname,
		Union:    union,
		Files:    len(plan.Files),
		Debug:    g.Debug,
		Umask:    umask(f.NoUmask),
	}
	if err := mountSpec(f, spec); err != nil {
		return nil, nil, err
	}
	if err := securitySpec(&f.SecurityFlags, spec, g.Log); err != nil {
		return nil, nil, err
	}
	if err := gpuSpec(&f.GPUFlags, spec, g.Log); err != nil { // gpu.go
		return nil, nil, err
	}
	if err := fuseMountSpec(&f.FuseMountFlags, spec, g.Log); err != nil { // fusemount.go
		return nil, nil, err
	}
	if u, err := user.LookupId(fmt.Sprint(spec.UID)); err == nil {
		spec.Username, spec.HomeDir = u.Username, u.HomeDir
	} else {
		spec.HomeDir = os.Getenv("HOME")
	}
	if f.Pwd != "" {
		spec.Cwd, spec.CwdExplicit = f.Pwd, true
	}

	absImage := img
	if a, err := filepath.Abs(img); err == nil {
		absImage = a
	}
	var argv, env []string
	if rootHasShell(img) {
		argv, env, err = actionProcess(g, command, f, img, absImage, spec.ContainerHome(),
			instance, args)
	} else {
		g.Log.Debug("no /bin/sh in the image: running the command directly")
		var cenv containerEnv
		if cenv, err = buildEnv(envInputFor(command, f, img, absImage,
			spec.ContainerHome(), instance), g.Log); err == nil {
			argv, env, err = directProcess(command, args, cenv)
		}
	}
	if err != nil {
		return nil, nil, err
	}
	spec.Args, spec.Env = argv, env
	spec.Programs = payloadPrograms(command, argv, args)
	return plan, spec, nil
}

// payloadPrograms names the programs the payload starts first: the
// launcher (or the command run directly) and then, for exec, the command,
// or for shell, bash, which the launcher prefers (actionBodies).
func payloadPrograms(command string, argv, args []string) []string {
	progs := []string{argv[0]}
	switch {
	case argv[0] != "/bin/sh":
		// Run directly (no shell in the image): argv[0] is the command.
	case command == "exec" && len(args) > 0:
		progs = append(progs, args[0])
	case command == "shell":
		progs = append(progs, "/bin/bash")
	}
	return progs
}

// actionProcess computes the container's argv and initial environment for
// an action (COMPAT §7.4-7.5).
func actionProcess(g *globals, command string, f *ActionFlags, imageArg, absImage, home,
	instance string, args []string) (argv, env []string, err error) {
	cenv, err := buildEnv(envInputFor(command, f, imageArg, absImage, home, instance), g.Log)
	if err != nil {
		return nil, nil, err
	}
	argv, env = launcher(command, args, cenv)
	// One argument may hold at most 128 KiB (MAX_ARG_STRLEN).
	if len(argv[2]) > 128<<10-1 {
		return nil, nil, fmt.Errorf("the environment to pass is too large: %d KiB of "+
			"script, over the 128 KiB one argument may hold (the values of --env, "+
			"--env-file and APPTAINERENV_ variables, and the names of the host's "+
			"variables, go into it)", len(argv[2])>>10)
	}
	return argv, env, nil
}

func envInputFor(command string, f *ActionFlags, imageArg, absImage, home,
	instance string) envInput {
	return envInput{
		Host:     launchEnv(os.Environ(), imageArg),
		Cleanenv: f.Cleanenv,
		NoEnv:    f.NoEnv,
		NoEval:   f.NoEval,
		Home:     home,
		Image:    absImage,
		Command:  command,
		Instance: instance,
		Shell:    f.Shell,
		App:      f.App,
		Binds:    f.Bind,
		Env:      f.Env,
		EnvFiles: f.EnvFile,
	}
}

// parseBinds parses --bind values: src[:dst[:ro|rw]], dst defaulting to
// src.
func parseBinds(values []string) ([]sandbox.Bind, error) {
	var out []sandbox.Bind
	for _, v := range values {
		if v == "" {
			continue
		}
		parts := strings.Split(v, ":")
		if parts[0] == "" {
			return nil, fmt.Errorf("--bind %s: no source path before the colon", v)
		}
		b := sandbox.Bind{Src: parts[0], Dst: parts[0]}
		if len(parts) > 1 && parts[1] != "" {
			b.Dst = parts[1]
		}
		if len(parts) > 2 {
			switch parts[2] {
			case "ro":
				b.ReadOnly = true
			case "rw":
			default:
				return nil, fmt.Errorf("--bind %s: unknown option %q (want ro or rw)", v,
					parts[2])
			}
		}
		if len(parts) > 3 {
			return nil, fmt.Errorf("--bind %s: want src[:dst[:ro|rw]]", v)
		}
		if abs, err := filepath.Abs(b.Src); err == nil {
			b.Src = abs
		}
		if !filepath.IsAbs(b.Dst) {
			return nil, fmt.Errorf("--bind %s: destination %s is not an absolute path", v, b.Dst)
		}
		// A bind over the kernel file systems hides what the container
		// needs to start (/proc/self/exe, /dev/null) and fails later with
		// a misleading error.
		switch d := filepath.Clean(b.Dst); d {
		case "/proc", "/dev", "/sys":
			return nil, fmt.Errorf("--bind %s: cannot bind over %s, which the container "+
				"needs (bind to a path below it, or use --no-mount)", v, d)
		case "/":
			return nil, fmt.Errorf("--bind %s: cannot bind over /, the container's root "+
				"directory (to run a directory tree, give it as the image)", v)
		}
		out = append(out, b)
	}
	return out, nil
}

// umask is the payload's umask: the caller's, or 0022 with --no-umask.
func umask(noUmask bool) int {
	if noUmask {
		return 0o022
	}
	return currentUmask()
}

// currentUmask reads the process umask (there is no getter; setting it
// twice is the usual way).
func currentUmask() int {
	m := syscall.Umask(0o022)
	syscall.Umask(m)
	return m
}
