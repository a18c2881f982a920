// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

// Package gpu finds the host's GPU driver files for --nv and --rocm, as
// Apptainer does in user-namespace mode: the binaries and libraries named
// in its nvliblist.conf and rocmliblist.conf (embedded here), looked up on
// PATH and in the ld.so cache (`ldconfig -p`), and the device nodes
// (/dev/nvidia*, /dev/kfd, /dev/dri). An Apptainer installation's own
// list (/etc/apptainer/nvliblist.conf and the like) replaces the built-in
// one, as its administrator meant it for Apptainer.
//
// Libraries go to /.singularity.d/libs in the container, under their
// ld.so cache name, binaries to /usr/bin; only libraries built for the
// machine husk runs on are taken. Not supported: nvidia-container-cli
// (--nvccli), which needs privileged setup, and the GPU's environment
// variables for it (NVIDIA_VISIBLE_DEVICES ...).
//
// The undocumented variable _HUSK_LDCACHE names another ld.so cache file
// (made with `ldconfig -C FILE -f CONF`), so tests without a GPU can
// exercise the lookup.
package gpu
