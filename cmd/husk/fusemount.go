// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package main

import (
	"debug/elf"
	"fmt"
	"log/slog"
	"os/exec"
	"slices"

	"github.com/husk-project/husk/sandbox"
)

// FuseMountFlags are Apptainer's --fusemount.
type FuseMountFlags struct {
	FuseMount []string `name:"fusemount" sep:"none" placeholder:"TYPE:CMD ARGS MOUNTPOINT" help:"${fusemount}" env:"HUSK_FUSEMOUNT,APPTAINER_FUSEMOUNT"`
}

func init() {
	helpVars["fusemount"] = "Mount a FUSE file system in the container: " +
		"host:CMD ARGS MOUNTPOINT runs CMD on the host side, container:... in the " +
		"container (host-daemon:, container-daemon: for programs that go to the " +
		"background); CMD gets /dev/fd/N for MOUNTPOINT (libfuse 3.3 or later). " +
		"Implies --pid. Repeatable."
}

// fuseMountSpec parses --fusemount into spec. As in Apptainer it implies
// a PID namespace.
func fuseMountSpec(f *FuseMountFlags, spec *sandbox.Spec, log *slog.Logger) error {
	for _, s := range f.FuseMount {
		fm, err := sandbox.ParseFuseMount(s)
		if err != nil {
			return err
		}
		if !fm.InContainer {
			if err := checkFuse3(fm.Args[0]); err != nil {
				return fmt.Errorf("--fusemount %s: %w", fm.Mountpoint, err)
			}
		}
		spec.FuseMounts = append(spec.FuseMounts, fm)
	}
	if len(spec.FuseMounts) > 0 && !spec.PID {
		log.Debug("--fusemount implies --pid")
		spec.PID = true
	}
	return nil
}

// checkFuse3 refuses a host program linked with libfuse 2, which cannot
// take /dev/fd/N as its mount point. One that goes to the background
// exits 0 first, and its mount then hangs every access until the
// container ends (a new-user trial, with Debian's fuse2fs). A program
// that is not found, not ELF or linked statically is left to fail (or
// work) when it runs.
func checkFuse3(name string) error {
	path, err := exec.LookPath(name)
	if err != nil {
		return nil
	}
	f, err := elf.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	libs, err := f.ImportedLibraries()
	if err != nil || !slices.Contains(libs, "libfuse.so.2") {
		return nil
	}
	return fmt.Errorf("%s is linked with libfuse 2 (libfuse.so.2), which cannot mount "+
		"/dev/fd/N; use a build against libfuse 3.3 or later", path)
}
