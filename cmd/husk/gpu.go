// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"log/slog"
	"os"
	"slices"

	"github.com/husk-project/husk/cmd/internal/gpu"
	"github.com/husk-project/husk/sandbox"
)

// GPUFlags are Apptainer's --nv, --nvccli and --rocm.
type GPUFlags struct {
	Nv     bool `help:"${nv}" env:"HUSK_NV,APPTAINER_NV"`
	Nvccli bool `help:"${nvccli}" env:"HUSK_NVCCLI,APPTAINER_NVCCLI"`
	Rocm   bool `help:"${rocm}" env:"HUSK_ROCM,APPTAINER_ROCM"`
}

func init() {
	helpVars["nv"] = "Bind the host's NVIDIA driver (libraries into /.singularity.d/libs, " +
		"nvidia-smi and friends into /usr/bin, /dev/nvidia*)."
	helpVars["nvccli"] = "Set up NVIDIA GPUs with nvidia-container-cli (refused: it " +
		"needs privileged setup; use --nv)."
	helpVars["rocm"] = "Bind the host's ROCm driver (libraries into /.singularity.d/libs, " +
		"rocm-smi and rocminfo into /usr/bin, /dev/kfd and /dev/dri)."
}

// errNvccli is the refusal of --nvccli.
var errNvccli = errors.New("--nvccli: husk cannot run nvidia-container-cli, which needs " +
	"root or a setuid setup to configure the container; use --nv")

// gpuSpec adds the binds of --nv and --rocm to spec, warning as Apptainer
// does when the host has no driver libraries.
func gpuSpec(f *GPUFlags, spec *sandbox.Spec, log *slog.Logger) error {
	if f.Nvccli {
		return errNvccli
	}
	seen := map[string]bool{}
	for _, b := range spec.Binds {
		seen[b.Dst] = true
	}
	for _, k := range []struct {
		on   bool
		kind gpu.Kind
		name string
	}{{f.Nv, gpu.Nvidia, "nvidia"}, {f.Rocm, gpu.ROCm, "rocm"}} {
		if !k.on {
			continue
		}
		files, err := gpu.Find(k.kind, os.Getenv("PATH"))
		if err != nil {
			return err
		}
		if len(files.Libs) == 0 {
			log.Warn("could not find any " + k.name + " libraries on this host!")
		}
		add := func(fs []gpu.File, readOnly bool) {
			for _, fl := range fs {
				if !seen[fl.Dst] {
					seen[fl.Dst] = true
					spec.Binds = append(spec.Binds, sandbox.Bind{Src: fl.Src, Dst: fl.Dst,
						ReadOnly: readOnly})
				}
			}
		}
		add(files.Libs, true)
		add(files.Bins, true)
		// The container's /dev is the host's unless it is a private one.
		if spec.Contain || slices.Contains(spec.NoMount, "dev") {
			add(files.Devices, false)
		}
	}
	return nil
}
