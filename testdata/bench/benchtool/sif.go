package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/sylabs/sif/v2/pkg/sif"
)

// launchScript is the first line of every SIF Apptainer builds.
const launchScript = "#!/usr/bin/env run-singularity\n"

// part prints the offset and size of the image's primary system partition,
// the squashfs root filesystem Apptainer mounts.
func part(path string) error {
	f, err := sif.LoadContainerFromPath(path, sif.OptLoadWithFlag(os.O_RDONLY))
	if err != nil {
		return fmt.Errorf("load %s: %w", path, err)
	}
	defer f.UnloadContainer()
	d, err := f.GetDescriptor(sif.WithPartitionType(sif.PartPrimSys))
	if err != nil {
		return fmt.Errorf("primary partition of %s: %w", path, err)
	}
	fs, _, _, err := d.PartitionMetadata()
	if err != nil {
		return fmt.Errorf("primary partition of %s: %w", path, err)
	}
	if fs != sif.FsSquash {
		return fmt.Errorf("primary partition of %s is %v, not squashfs", path, fs)
	}
	fmt.Println(d.Offset(), d.Size())
	return nil
}

// mk writes out as a SIF holding squashfs as its Squashfs/PrimSys partition
// in group 1, aligned to 4096 bytes (the library's defaults), with the
// host's architecture. It writes a temporary file and renames it, so a
// cached SIF is never half written.
func mk(out, squashfs string) error {
	sq, err := os.Open(squashfs)
	if err != nil {
		return err
	}
	defer sq.Close()
	di, err := sif.NewDescriptorInput(sif.DataPartition, sq,
		sif.OptPartitionMetadata(sif.FsSquash, sif.PartPrimSys, runtime.GOARCH))
	if err != nil {
		return fmt.Errorf("partition from %s: %w", squashfs, err)
	}
	tmp := filepath.Join(filepath.Dir(out), "."+filepath.Base(out)+".tmp")
	f, err := sif.CreateContainerAtPath(tmp, sif.OptCreateWithLaunchScript(launchScript),
		sif.OptCreateWithDescriptors(di))
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	if err := f.UnloadContainer(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}
