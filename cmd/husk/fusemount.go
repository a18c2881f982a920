// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package main

import (
	"log/slog"

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
		spec.FuseMounts = append(spec.FuseMounts, fm)
	}
	if len(spec.FuseMounts) > 0 && !spec.PID {
		log.Debug("--fusemount implies --pid")
		spec.PID = true
	}
	return nil
}
